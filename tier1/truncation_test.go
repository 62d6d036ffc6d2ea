package tier1

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/google/go-cmp/cmp"
)

// truncateWait appends a truncation and waits for done.
func truncateWait(t testing.TB, w *WAL, tp TopicPartition, offset int64) (Position, error) {
	t.Helper()
	ch := make(chan ack, 1)
	if _, err := w.AppendTruncation(context.Background(), tp, offset, func(p Position, err error) { ch <- ack{p, err} }); err != nil {
		return Position{}, err
	}
	a := <-ch
	return a.pos, a.err
}

// appendTruncation is append for a truncation of tpOf(0) to offset id,
// recorded under id.
func (c *collector) appendTruncation(t *testing.T, w *WAL, id uint64) error {
	t.Helper()
	c.wg.Add(1)
	_, err := w.AppendTruncation(context.Background(), tpOf(0), int64(id), func(p Position, err error) {
		c.mu.Lock()
		if _, dup := c.errs[id]; dup {
			t.Errorf("done called twice for entry %d", id)
		}
		c.errs[id], c.pos[id] = err, p
		c.mu.Unlock()
		c.wg.Done()
	})
	if err != nil {
		c.wg.Done()
	}
	return err
}

// Truncations interleaved with batches on several partitions, across
// segment rolls, are acknowledged with the position of their 8-byte body
// and replayed in log order with their offsets; ReadAt refuses their
// positions and still serves the batches around them.
func TestTruncationRoundTrip(t *testing.T) {
	mem := vfs.NewMemFS()
	cfg := testConfig(mem)
	cfg.SegmentBytes = 2048
	w, _, _ := mustOpen(t, cfg)
	var want []replayed
	for i := range 60 {
		p := i % 3
		if i%4 == 3 {
			off := int64(i) << 32 // wide enough to catch a 32-bit body
			pos, err := truncateWait(t, w, tpOf(p), off)
			must(t, err)
			if pos.Len != truncBodySize || (pos.Offset-batchOffset)%frameAlign != 0 {
				t.Fatalf("truncation acknowledged at %+v, want an aligned frame with an 8-byte body", pos)
			}
			want = append(want, replayed{tp: tpOf(p), pos: pos, trunc: true, offset: off})
			continue
		}
		b := batchFor(p, uint64(i), sizeFor(p, uint64(i), 200))
		pos, err := appendWait(t, w, tpOf(p), b)
		must(t, err)
		want = append(want, replayed{tp: tpOf(p), batch: b, pos: pos})
	}
	if _, err := w.AppendTruncation(context.Background(), tpOf(0), -1, func(Position, error) {
		t.Error("done called for a refused truncation")
	}); err == nil {
		t.Fatal("AppendTruncation to a negative offset was accepted")
	}
	if s := w.Stats(); s.Appends != uint64(len(want)) {
		t.Fatalf("Appends = %d, want %d (truncations count)", s.Appends, len(want))
	}
	must(t, w.Close())

	w, rep, rec := mustOpen(t, cfg)
	defer w.Close()
	if rep.Entries != len(want) || rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 || rep.Segments < 3 {
		t.Fatalf("report %+v, want %d entries over several segments, nothing cut", rep, len(want))
	}
	if diff := cmp.Diff(want, rec.entries, cmp.AllowUnexported(replayed{}), bytesEqual); diff != "" {
		t.Fatalf("replay (-want +got):\n%s", diff)
	}
	for _, e := range want {
		dst := []byte("prefix")
		got, err := w.ReadAt(e.pos, dst)
		switch {
		case e.trunc:
			if !errors.Is(err, ErrBadPosition) || string(got) != "prefix" {
				t.Fatalf("ReadAt of truncation %+v = %q, %v; want dst untouched and ErrBadPosition", e.pos, got, err)
			}
		case err != nil || string(got) != "prefix"+string(e.batch):
			t.Fatalf("ReadAt of batch %+v: %v", e.pos, err)
		}
	}
}

// A verified frame this release cannot interpret stops Open with
// ErrUnsupported instead of being skipped: an unknown type, and a
// truncation that breaks doc.go's rules. A truncation that keeps them
// opens.
func TestUnsupportedEntriesRefuseToOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    any
		ok   bool
	}{
		{name: "truncation", e: truncTo(42), ok: true},
		{name: "type 3", e: rawEntry{3, []byte("a later release's entry")}},
		{name: "type 0", e: rawEntry{0, nil}},
		{name: "truncation with a 16-byte body", e: rawEntry{entryTypeTrunc, []byte("CHRTRUNC\x00\x00\x00\x00\x00\x00\x00\x05")}},
		{name: "truncation with an empty body", e: rawEntry{entryTypeTrunc, nil}},
		{name: "truncation to a negative offset", e: rawEntry{entryTypeTrunc, appendTruncBody(nil, -5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMemFS()
			must(t, mem.MkdirAll(memDir, 0o755))
			f, err := mem.OpenFile(segPath(1), os.O_RDWR|os.O_CREATE, 0o644)
			must(t, err)
			_, err = f.Write(segmentWith(fuzzSalt, "before", tc.e, "after"))
			must(t, err)
			must(t, f.Close())
			w, rep, err := Open(testConfig(mem), nil)
			if tc.ok {
				must(t, err)
				defer w.Close()
				if rep.Entries != 3 || len(rep.Corruptions) != 0 {
					t.Fatalf("report %+v, want 3 entries", rep)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open = %v, want ErrUnsupported", err)
			}
		})
	}
}

// A full disk undoes a group holding a truncation like any other: the
// truncation fails with ErrDiskFull with the batches around it, fences its
// partition until Reset, and leaves no frame for recovery to find; retried
// once there is space, it is acknowledged and replayed in its place.
func TestDiskFullUndoesAGroupWithATruncation(t *testing.T) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	w, _, _ := mustOpen(t, testConfig(efs))
	gate := newSyncGate()
	var full atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && full.Load() {
			return syscall.ENOSPC
		}
		return gate.hook(op, path)
	})
	c := newCollector()
	// Batch 0 is held in its fsync; batch 1, the truncation 2 and batch 3
	// queue behind it and form the next group, whose write fails.
	must(t, c.append(t, w, 0))
	gate.waitEntered(t)
	must(t, c.append(t, w, 1))
	must(t, c.appendTruncation(t, w, 2))
	must(t, c.append(t, w, 3))
	full.Store(true)
	gate.openAll()
	gate.release <- nil
	c.wg.Wait()
	if c.errs[0] != nil {
		t.Fatalf("entry 0: %v", c.errs[0])
	}
	for id := uint64(1); id <= 3; id++ {
		if err := c.errs[id]; !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrFailed) {
			t.Fatalf("entry %d: %v, want ErrDiskFull wrapping ENOSPC", id, err)
		}
	}
	data, err := mem.ReadFile(segPath(1))
	must(t, err)
	if end := alignUp(c.pos[0].Offset + int64(c.pos[0].Len)); int64(len(data)) != end {
		t.Fatalf("segment is %d bytes after the undo, want %d (up to entry 0)", len(data), end)
	}
	// The partition is fenced for truncations too, and done is not called.
	if _, err := w.AppendTruncation(context.Background(), tpOf(0), 2, func(Position, error) {
		t.Error("done called for a fenced truncation")
	}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("AppendTruncation before Reset = %v, want the fence", err)
	}

	full.Store(false)
	w.Reset(tpOf(0))
	must(t, c.appendTruncation(t, w, 102))
	must(t, c.append(t, w, 103))
	c.wg.Wait()
	if c.errs[102] != nil || c.errs[103] != nil {
		t.Fatalf("retries once there is space: %v, %v", c.errs[102], c.errs[103])
	}
	must(t, w.Close())

	w, rep, rec := mustOpen(t, testConfig(mem))
	defer w.Close()
	if rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 {
		t.Fatalf("report %+v: want nothing to truncate and no corruption", rep)
	}
	want := []replayed{
		{tp: tpOf(0), batch: batchFor(0, 0, 100), pos: c.pos[0]},
		{tp: tpOf(0), pos: c.pos[102], trunc: true, offset: 102},
		{tp: tpOf(0), batch: batchFor(0, 103, 100), pos: c.pos[103]},
	}
	if diff := cmp.Diff(want, rec.entries, cmp.AllowUnexported(replayed{}), bytesEqual); diff != "" {
		t.Fatalf("replay (-want +got):\n%s", diff)
	}
}

// A failed fsync of a group holding a truncation fails it with the sticky
// error, and every later truncation is refused with it, as batches are.
func TestTruncationFsyncErrorIsSticky(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	w, _, _ := mustOpen(t, testConfig(efs))
	if _, err := truncateWait(t, w, tpOf(0), 1); err != nil {
		t.Fatal(err)
	}
	efs.FailNextSync(syscall.EIO)
	if _, err := truncateWait(t, w, tpOf(0), 2); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("truncation whose fsync failed = %v, want ErrFailed wrapping EIO", err)
	}
	if _, err := w.AppendTruncation(context.Background(), tpOf(1), 3, nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("later truncation = %v, want the sticky ErrFailed", err)
	}
	if _, err := w.Append(context.Background(), tpOf(1), []byte("x"), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("later append = %v, want the sticky ErrFailed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close = %v, want the sticky ErrFailed", err)
	}
	if _, err := w.AppendTruncation(context.Background(), tpOf(0), 4, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("truncation after Close = %v, want ErrClosed", err)
	}
}
