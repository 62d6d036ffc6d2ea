package tier1

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

func TestGroupCommitUsesFewFsyncs(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	w, _, _ := mustOpen(t, testConfig(efs))
	defer w.Close()
	var syncs atomic.Int64
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync {
			syncs.Add(1)
			time.Sleep(2 * time.Millisecond) // a slow disk
		}
		return nil
	})
	const producers, each = 32, 20
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := appendWait(t, w, tpOf(p), batchFor(p, uint64(i), 200)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s := w.Stats()
	t.Logf("%d appends in %d groups, %d fsyncs", s.Appends, s.Groups, syncs.Load())
	if s.Appends != producers*each {
		t.Fatalf("Appends = %d, want %d", s.Appends, producers*each)
	}
	if s.Groups*4 > s.Appends {
		t.Fatalf("%d groups for %d appends: group commit is not batching", s.Groups, s.Appends)
	}
	if uint64(syncs.Load()) != s.Groups {
		t.Fatalf("%d fsyncs for %d groups: want exactly one per group", syncs.Load(), s.Groups)
	}
	if s.FsyncNanos < s.Groups*uint64(2*time.Millisecond) {
		t.Fatalf("FsyncNanos %v below %d slow fsyncs", time.Duration(s.FsyncNanos), s.Groups)
	}
}

// collector records DoneFunc results by entry id.
type collector struct {
	mu   sync.Mutex
	errs map[uint64]error
	pos  map[uint64]Position
	wg   sync.WaitGroup
}

func newCollector() *collector {
	return &collector{errs: map[uint64]error{}, pos: map[uint64]Position{}}
}

func (c *collector) append(t *testing.T, w *WAL, id uint64) error {
	t.Helper()
	c.wg.Add(1)
	_, err := w.Append(context.Background(), tpOf(0), batchFor(0, id, 100), func(p Position, err error) {
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

func TestFsyncErrorFailsGroupAndIsSticky(t *testing.T) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	w, _, _ := mustOpen(t, testConfig(efs))
	gate := newSyncGate()
	efs.SetHook(gate.hook)
	c := newCollector()

	// Entry 0 is fsynced on its own; 1-3 queue behind it and form the next
	// group; 4-5 queue behind that one.
	must(t, c.append(t, w, 0))
	gate.waitEntered(t)
	for id := uint64(1); id <= 3; id++ {
		must(t, c.append(t, w, id))
	}
	gate.release <- nil
	gate.waitEntered(t) // group 1-3 is in fsync
	for id := uint64(4); id <= 5; id++ {
		must(t, c.append(t, w, id))
	}
	eio := syscall.EIO
	gate.release <- eio
	c.wg.Wait()

	if c.errs[0] != nil {
		t.Fatalf("entry 0 was fsynced before the failure but got %v", c.errs[0])
	}
	for id := uint64(1); id <= 5; id++ {
		if err := c.errs[id]; !errors.Is(err, ErrFailed) || !errors.Is(err, eio) {
			t.Fatalf("entry %d: done(%v), want ErrFailed wrapping EIO", id, err)
		}
	}
	if s := w.Stats(); s.Appends != 1 || s.Groups != 1 || s.QueueDepth != 0 {
		t.Fatalf("stats after failure: %+v, want exactly the first group counted", s)
	}
	called := false
	if _, err := w.Append(context.Background(), tpOf(0), []byte("x"), func(Position, error) { called = true }); !errors.Is(err, ErrFailed) || !errors.Is(err, eio) {
		t.Fatalf("Append after failure = %v, want the sticky error", err)
	}
	gate.openAll()
	if err := w.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close of a failed WAL = %v, want the sticky error", err)
	}
	if called {
		t.Fatal("done called for an append rejected by a failed WAL")
	}

	// Reopening is the way back; the acked entry is there.
	w, _, rec := mustOpen(t, testConfig(mem))
	defer w.Close()
	if len(rec.entries) == 0 || !bytes.Equal(rec.entries[0].batch, batchFor(0, 0, 100)) {
		t.Fatalf("acked entry 0 not replayed first after reopen")
	}
	if _, err := appendWait(t, w, tpOf(0), []byte("works again")); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
}

func TestWriteErrorFailsGroupAndIsSticky(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	w, _, _ := mustOpen(t, testConfig(efs))
	gate := newSyncGate()
	var failWrites atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && failWrites.Load() {
			return syscall.EIO
		}
		return gate.hook(op, path)
	})
	c := newCollector()
	must(t, c.append(t, w, 0))
	gate.waitEntered(t) // entry 0 is in fsync; 1-3 queue behind it
	for id := uint64(1); id <= 3; id++ {
		must(t, c.append(t, w, id))
	}
	failWrites.Store(true)
	gate.release <- nil
	c.wg.Wait()
	if c.errs[0] != nil {
		t.Fatalf("entry 0: %v", c.errs[0])
	}
	for id := uint64(1); id <= 3; id++ {
		if err := c.errs[id]; !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("entry %d: done(%v), want ErrFailed wrapping EIO", id, err)
		}
	}
	failWrites.Store(false) // the disk works again, but the WAL stays failed
	if _, err := w.Append(context.Background(), tpOf(0), []byte("x"), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a write error = %v, want ErrFailed", err)
	}
	gate.openAll()
	if err := w.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close = %v, want the sticky EIO", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A full disk fails the group and the appends queued behind it, undoes
// what the group wrote, and fences its partitions until Reset; once space
// returns the same WAL appends again, and a reopen replays exactly the
// acknowledged entries.
func TestDiskFullUndoesTheGroupAndRecovers(t *testing.T) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	w, _, _ := mustOpen(t, testConfig(efs))
	c := newCollector()
	for id := range uint64(10) {
		must(t, c.append(t, w, id))
		c.wg.Wait()
	}
	// Room for one and a half more frames: the write tears a frame.
	efs.FailWritesAfter(frameSize(100)*3/2, syscall.ENOSPC)
	var fenced error
	for id := uint64(10); id < 30; id++ {
		if fenced = c.append(t, w, id); fenced != nil {
			break
		}
		c.wg.Wait() // one entry a group, so the fence comes from a failed one
	}
	c.wg.Wait()
	if !errors.Is(fenced, ErrDiskFull) || !errors.Is(fenced, syscall.ENOSPC) || errors.Is(fenced, ErrFailed) {
		t.Fatalf("Append after a failed one = %v, want ErrDiskFull wrapping ENOSPC, not ErrFailed", fenced)
	}
	var acked, failed int
	for id, err := range c.errs {
		switch {
		case err == nil:
			acked++
		case errors.Is(err, ErrDiskFull) && errors.Is(err, syscall.ENOSPC):
			failed++
		default:
			t.Fatalf("entry %d: %v, want ErrDiskFull wrapping ENOSPC", id, err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d appends failed, want the one that met the full disk", failed)
	}
	// Another partition is not fenced; with the disk still full, its append
	// fails the same way.
	if _, err := appendWait(t, w, tpOf(1), batchFor(1, 0, 100)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("another partition's append on a full disk = %v, want ErrDiskFull", err)
	}

	// Space is back: after Reset, the same WAL appends again.
	efs.FailWritesAfter(0, nil)
	if _, err := w.Append(context.Background(), tpOf(0), []byte("x"), nil); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Append before Reset = %v, want the fence", err)
	}
	w.Reset(tpOf(0))
	for id := uint64(100); id < 110; id++ {
		must(t, c.append(t, w, id))
	}
	c.wg.Wait()
	for id := uint64(100); id < 110; id++ {
		if err := c.errs[id]; err != nil {
			t.Fatalf("entry %d after space returned: %v", id, err)
		}
	}
	w.Close()

	// The undone frames are gone for good: the reopen truncates nothing and
	// replays the acknowledged entries only, in order.
	w, rep, rec := mustOpen(t, testConfig(efs))
	defer w.Close()
	if rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 {
		t.Fatalf("report %+v: want nothing to truncate and no corruption", rep)
	}
	var got []uint64
	for _, e := range rec.entries {
		if e.tp != tpOf(0) {
			t.Fatalf("replayed an entry of %v, whose only append failed", e.tp)
		}
		_, id := idOf(e.batch)
		got = append(got, id)
	}
	var want []uint64
	for id := range uint64(110) {
		if err, ok := c.errs[id]; ok && err == nil {
			want = append(want, id)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want the acknowledged %v", got, want)
	}
}

// fillUntil appends 100-byte entries (the collector's size) to tpOf(0), one
// group each, until only room more such frames fit in the active segment,
// and returns their ids.
func fillUntil(t *testing.T, w *WAL, room int64) []uint64 {
	t.Helper()
	var ids []uint64
	for id := uint64(0); w.active.size+(room+1)*frameSize(100) <= w.segBytes; id++ {
		if _, err := appendWait(t, w, tpOf(0), batchFor(0, id, 100)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// replayedIDs reopens the WAL and returns the ids it replays, checking that
// recovery found nothing to truncate.
func replayedIDs(t *testing.T, cfg Config) []uint64 {
	t.Helper()
	w, rep, rec := mustOpen(t, cfg)
	defer w.Close()
	if rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 {
		t.Fatalf("report %+v: want nothing to truncate and no corruption", rep)
	}
	var ids []uint64
	for _, e := range rec.entries {
		_, id := idOf(e.batch)
		ids = append(ids, id)
	}
	return ids
}

// A group that meets a full disk in the segment it rolled to is undone in
// both: the new segment is removed and the frames it had sealed into the
// old one are truncated away.
func TestDiskFullUndoesARoll(t *testing.T) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	cfg := testConfig(efs)
	cfg.SegmentBytes = 4 << 10
	w, _, _ := mustOpen(t, cfg)
	acked := fillUntil(t, w, 2)

	// Entry 100 takes one of the two frames left and is held in its fsync
	// while 101 and 102 queue behind it; they then form one group: 101
	// fills segment 1, which is sealed, and 102 goes to segment 2, whose
	// first frame write fails.
	gate := newSyncGate()
	second := segmentName(2)
	var writes atomic.Int64
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && filepath.Base(path) == second && writes.Add(1) == 2 {
			return syscall.ENOSPC
		}
		return gate.hook(op, path)
	})
	c := newCollector()
	must(t, c.append(t, w, 100))
	gate.waitEntered(t)
	must(t, c.append(t, w, 101))
	must(t, c.append(t, w, 102))
	gate.mu.Lock()
	gate.open = true
	gate.mu.Unlock()
	gate.release <- nil
	c.wg.Wait()
	if c.errs[100] != nil || !errors.Is(c.errs[101], ErrDiskFull) || !errors.Is(c.errs[102], ErrDiskFull) {
		t.Fatalf("entries 100-102: %v, %v, %v; want the first acknowledged and the group failing with ErrDiskFull",
			c.errs[100], c.errs[101], c.errs[102])
	}
	if w.ActiveSegment() != 1 {
		t.Fatalf("active segment %d after the undo, want 1 again", w.ActiveSegment())
	}
	if _, err := mem.OpenFile(filepath.Join(memDir, second), os.O_RDONLY, 0); err == nil {
		t.Fatal("the segment the failed group created is still there")
	}
	acked = append(acked, 100)
	efs.SetHook(nil)
	w.Reset(tpOf(0))
	for _, id := range []uint64{101, 102} { // the producer's retries
		if _, err := appendWait(t, w, tpOf(0), batchFor(0, id, 100)); err != nil {
			t.Fatalf("append after the undone roll: %v", err)
		}
		acked = append(acked, id)
	}
	w.Close()
	if got := replayedIDs(t, cfg); !slices.Equal(got, acked) {
		t.Fatalf("replayed %v, want the acknowledged %v", got, acked)
	}
}

// A roll that cannot create its segment for want of space (or inodes) is
// undone like a write that finds the disk full.
func TestDiskFullCreatingASegment(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	cfg := testConfig(efs)
	cfg.SegmentBytes = 4 << 10
	w, _, _ := mustOpen(t, cfg)
	acked := fillUntil(t, w, 0)
	second := segmentName(2)
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpOpen && filepath.Base(path) == second {
			return syscall.ENOSPC
		}
		return nil
	})
	if _, err := appendWait(t, w, tpOf(0), batchFor(0, 100, 100)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append that rolls onto a full disk: %v, want ErrDiskFull", err)
	}
	efs.SetHook(nil)
	w.Reset(tpOf(0))
	if _, err := appendWait(t, w, tpOf(0), batchFor(0, 100, 100)); err != nil {
		t.Fatalf("append once space returned: %v", err)
	}
	w.Close()
	if got := replayedIDs(t, cfg); !slices.Equal(got, append(acked, 100)) {
		t.Fatalf("replayed %v, want the acknowledged %v", got, append(acked, 100))
	}
}

// TestCrashNeverLosesAckedEntries runs many power-loss rounds: appenders on
// several partitions race a crash injected at a random filesystem operation
// (mid-group, mid-roll, mid-recovery), and every later reopen must replay
// every entry whose done reported success, in order, without corruption.
// Every fifth entry of a partition is a truncation, so truncations are torn,
// rolled and recovered among the batches.
func TestCrashNeverLosesAckedEntries(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 20
	}
	var total crashStats
	for round := range rounds {
		s := crashRound(t, uint64(round))
		total.acked += s.acked
		total.truncations += s.truncations
		total.recoveryCrashes += s.recoveryCrashes
		total.rolls += s.rolls
		total.truncEntries += s.truncEntries
	}
	t.Logf("%d rounds: %+v", rounds, total)
	// The rounds must exercise what they claim to.
	if total.acked < rounds*50 || total.truncations < rounds/10 || total.recoveryCrashes == 0 || total.rolls < rounds ||
		total.truncEntries < rounds*5 {
		t.Fatalf("crash rounds too tame: %+v", total)
	}
}

type crashStats struct {
	acked           int // acked entries checked after the last reopen
	truncations     int // reopens that cut a torn tail
	recoveryCrashes int // crashes injected while Open was recovering
	rolls           int // segments beyond the first at the end
	truncEntries    int // truncation entries replayed after the last reopen
}

func crashRound(t *testing.T, seed uint64) (stats crashStats) {
	const parts, perGen, generations = 4, 40, 3
	rng := newRand(seed)
	mem := vfs.NewMemFS()
	var mu sync.Mutex
	acked := map[[2]uint64]bool{}      // {partition, id}
	nextID := make([]uint64, parts)    // next id per partition
	appended := map[[2]uint64][]byte{} // everything ever appended; nil for a truncation

	check := func(rec *recorder, rep RecoveryReport, gen int) {
		t.Helper()
		if len(rep.Corruptions) != 0 {
			t.Fatalf("seed %d gen %d: crash reported as corruption: %+v", seed, gen, rep.Corruptions)
		}
		last := map[int]int64{}
		seen := map[[2]uint64]bool{}
		for _, e := range rec.entries {
			var p int
			var id uint64
			if e.trunc {
				// A truncation's offset is its id.
				p, id = int(e.tp.Partition), uint64(e.offset)
			} else {
				p, id = idOf(e.batch)
			}
			k := [2]uint64{uint64(p), id}
			if want, ok := appended[k]; !ok || (want == nil) != e.trunc || !bytes.Equal(want, e.batch) || e.tp != tpOf(p) {
				t.Fatalf("seed %d gen %d: replayed an entry never appended (p%d id %d, truncation %v)", seed, gen, p, id, e.trunc)
			}
			if prev, ok := last[p]; ok && int64(id) <= prev {
				t.Fatalf("seed %d gen %d: partition %d replayed id %d after %d", seed, gen, p, id, prev)
			}
			last[p] = int64(id)
			seen[k] = true
		}
		for k := range acked {
			if !seen[k] {
				t.Fatalf("seed %d gen %d: acked entry p%d id %d lost", seed, gen, k[0], k[1])
			}
		}
	}

	for gen := range generations {
		efs := vfs.NewErrorFS(mem)
		var dead atomic.Bool
		var ops atomic.Int64
		crashAt := 1 + rng.Int64N(60)
		crashRng := newRand(rng.Uint64())
		efs.SetHook(func(op vfs.Op, path string) error {
			if dead.Load() {
				return errDead
			}
			switch op {
			case vfs.OpWrite, vfs.OpSync, vfs.OpSyncDir, vfs.OpTruncate, vfs.OpRemove:
				if ops.Add(1) == crashAt {
					dead.Store(true)
					mem.Crash(crashRng)
					return errDead
				}
			}
			return nil
		})
		cfg := testConfig(efs)
		cfg.SegmentBytes = 2048
		rec := &recorder{}
		w, rep, err := Open(cfg, rec.replay)
		if err != nil {
			if dead.Load() {
				stats.recoveryCrashes++
				continue
			}
			t.Fatalf("seed %d gen %d: Open: %v", seed, gen, err)
		}
		if rep.TruncatedBytes > 0 {
			stats.truncations++
		}
		check(rec, rep, gen)

		var wg sync.WaitGroup
		for p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perGen {
					mu.Lock()
					id := nextID[p]
					nextID[p]++
					var b []byte
					if id%5 != 4 {
						b = batchFor(p, id, sizeFor(p, id, 300))
					}
					appended[[2]uint64{uint64(p), id}] = b
					mu.Unlock()
					done := func(_ Position, err error) {
						if err == nil {
							mu.Lock()
							acked[[2]uint64{uint64(p), id}] = true
							mu.Unlock()
						}
					}
					var err error
					if b == nil {
						_, err = w.AppendTruncation(context.Background(), tpOf(p), int64(id), done)
					} else {
						_, err = w.Append(context.Background(), tpOf(p), b, done)
					}
					if err != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		w.Close()
		if !dead.Load() {
			dead.Store(true)
			mem.Crash(crashRng) // power loss after a clean close loses nothing
		}
	}
	w, rep, rec := mustOpen(t, testConfig(mem))
	defer w.Close()
	check(rec, rep, generations)
	for _, e := range rec.entries {
		b, err := w.ReadAt(e.pos, nil)
		switch {
		case e.trunc:
			stats.truncEntries++
			if !errors.Is(err, ErrBadPosition) || len(b) != 0 {
				t.Fatalf("seed %d: ReadAt of truncation %+v after crashes = %d bytes, %v; want ErrBadPosition", seed, e.pos, len(b), err)
			}
		case err != nil || !bytes.Equal(b, e.batch):
			t.Fatalf("seed %d: ReadAt(%+v) after crashes: %v", seed, e.pos, err)
		}
	}
	if rep.TruncatedBytes > 0 {
		stats.truncations++
	}
	stats.acked = len(acked)
	stats.rolls = rep.Segments - 1
	return stats
}

// writeEntries appends n 100-byte entries to a fresh WAL and closes it.
func writeEntries(t *testing.T, mem *vfs.MemFS, segBytes int64, n int) []replayed {
	t.Helper()
	cfg := testConfig(mem)
	cfg.SegmentBytes = segBytes
	w, _, _ := mustOpen(t, cfg)
	var out []replayed
	for i := range n {
		b := batchFor(0, uint64(i), 100)
		pos, err := appendWait(t, w, tpOf(0), b)
		must(t, err)
		out = append(out, replayed{tp: tpOf(0), batch: b, pos: pos})
	}
	must(t, w.Close())
	return out
}

func segPath(seq uint64) string { return filepath.Join(memDir, segmentName(seq)) }

func TestTornTailIsTruncated(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(lastFrame []byte) []byte
	}{
		{"partial frame", func(f []byte) []byte { return f[:30] }},
		{"partial header", func(f []byte) []byte { return f[:5] }},
		{"frame with a garbled end", func(f []byte) []byte {
			g := bytes.Clone(f)
			g[len(g)-20] ^= 0xFF
			return g
		}},
		{"zero-filled blocks", func([]byte) []byte { return make([]byte, 4096) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMemFS()
			want := writeEntries(t, mem, 0, 10)
			data, err := mem.ReadFile(segPath(1))
			must(t, err)
			last := want[len(want)-1].pos
			frame := data[last.Offset-batchOffset : last.Offset+int64(last.Len)]
			tail := tc.tail(frame)
			must(t, mem.WriteFile(segPath(1), append(bytes.Clone(data), tail...)))

			w, rep, rec := mustOpen(t, testConfig(mem))
			if rep.TruncatedBytes != int64(len(tail)) || len(rep.Corruptions) != 0 || rep.Entries != 10 {
				t.Fatalf("report %+v, want %d bytes truncated and 10 entries", rep, len(tail))
			}
			if after, _ := mem.ReadFile(segPath(1)); !bytes.Equal(after, data) {
				t.Fatalf("segment is %d bytes after recovery, want %d", len(after), len(data))
			}
			pos, err := appendWait(t, w, tpOf(0), batchFor(0, 10, 100))
			must(t, err)
			if pos.Offset != int64(len(data))+batchOffset {
				t.Fatalf("append after truncation at %+v, want right after the last good frame", pos)
			}
			must(t, w.Close())
			if len(rec.entries) != 10 {
				t.Fatalf("replayed %d entries", len(rec.entries))
			}
			_, rep, _ = mustOpen(t, testConfig(mem))
			if rep.TruncatedBytes != 0 || rep.Entries != 11 {
				t.Fatalf("second reopen %+v, want 11 entries, nothing truncated", rep)
			}
		})
	}
}

func TestMidLogCorruptionIsReportedAndNeverServed(t *testing.T) {
	mem := vfs.NewMemFS()
	cfg := testConfig(mem)
	cfg.SegmentBytes = 2048 // 13 entries per segment
	want := writeEntries(t, mem, cfg.SegmentBytes, 40)
	lastSeg := want[len(want)-1].pos.Segment
	firstOfLast := 0
	for firstOfLast < len(want) && want[firstOfLast].pos.Segment != lastSeg {
		firstOfLast++
	}
	// Mid sealed segment 1 (a batch bit), mid sealed segment 2 (the length
	// field), and mid active segment (a batch bit), in log order.
	victims := []int{3, 20, firstOfLast}
	if want[3].pos.Segment != 1 || want[20].pos.Segment == 1 || want[20].pos.Segment == lastSeg || firstOfLast+2 >= len(want) {
		t.Fatalf("layout changed; pick other victims: %+v %+v %d", want[3].pos, want[20].pos, firstOfLast)
	}

	w, _, _ := mustOpen(t, cfg)
	for k, i := range victims {
		p := want[i].pos
		name := segPath(p.Segment)
		data, err := mem.ReadFile(name)
		must(t, err)
		if k == 1 {
			data[p.Offset-batchOffset+5] ^= 0x40 // the length field
		} else {
			data[p.Offset+int64(p.Len)/2] ^= 0x01 // one bit of the batch
		}
		must(t, mem.WriteFile(name, data))
		if _, err := w.ReadAt(p, nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadAt of corrupted entry %d on the open WAL = %v, want ErrCorrupt", i, err)
		}
	}
	must(t, w.Close())

	w, rep, rec := mustOpen(t, cfg)
	defer w.Close()
	if rep.TruncatedBytes != 0 {
		t.Fatalf("mid-log corruption truncated %d bytes", rep.TruncatedBytes)
	}
	if len(rep.Corruptions) != len(victims) {
		t.Fatalf("Corruptions = %+v, want %d", rep.Corruptions, len(victims))
	}
	isVictim := map[int]bool{}
	for k, i := range victims {
		isVictim[i] = true
		p, c := want[i].pos, rep.Corruptions[k]
		if c.Segment != p.Segment || c.Offset != p.Offset-batchOffset {
			t.Fatalf("corruption %d = %+v, want segment %d offset %d", k, c, p.Segment, p.Offset-batchOffset)
		}
	}
	var wantReplay []replayed
	for i, e := range want {
		if !isVictim[i] {
			wantReplay = append(wantReplay, e)
		}
	}
	if len(rec.entries) != len(wantReplay) {
		t.Fatalf("replayed %d entries, want %d", len(rec.entries), len(wantReplay))
	}
	for i := range wantReplay {
		if rec.entries[i].pos != wantReplay[i].pos || !bytes.Equal(rec.entries[i].batch, wantReplay[i].batch) {
			t.Fatalf("replay entry %d = %+v, want %+v", i, rec.entries[i].pos, wantReplay[i].pos)
		}
	}
	for _, i := range victims {
		if b, err := w.ReadAt(want[i].pos, nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadAt of corrupted entry %d after reopen = %d bytes, %v; want ErrCorrupt", i, len(b), err)
		}
	}
}

func TestSealedSegmentDamage(t *testing.T) {
	t.Run("bad tail of a sealed segment is not truncated", func(t *testing.T) {
		mem := vfs.NewMemFS()
		want := writeEntries(t, mem, 2048, 30)
		var lastOfFirst replayed
		for _, e := range want {
			if e.pos.Segment == 1 {
				lastOfFirst = e
			}
		}
		data, _ := mem.ReadFile(segPath(1))
		data[lastOfFirst.pos.Offset] ^= 0xFF
		must(t, mem.WriteFile(segPath(1), data))
		w, rep, _ := mustOpen(t, testConfig(mem))
		defer w.Close()
		if rep.TruncatedBytes != 0 || len(rep.Corruptions) != 1 || rep.Corruptions[0].Segment != 1 ||
			rep.Corruptions[0].Offset != lastOfFirst.pos.Offset-batchOffset || rep.Entries != len(want)-1 {
			t.Fatalf("report %+v", rep)
		}
		if after, _ := mem.ReadFile(segPath(1)); len(after) != len(data) {
			t.Fatal("sealed segment was modified")
		}
	})
	t.Run("bad header skips the segment", func(t *testing.T) {
		mem := vfs.NewMemFS()
		want := writeEntries(t, mem, 2048, 30)
		data, _ := mem.ReadFile(segPath(1))
		data[3] ^= 1
		must(t, mem.WriteFile(segPath(1), data))
		w, rep, rec := mustOpen(t, testConfig(mem))
		defer w.Close()
		if len(rep.Corruptions) != 1 || rep.Corruptions[0].Segment != 1 || rep.Corruptions[0].Offset != 0 {
			t.Fatalf("Corruptions %+v", rep.Corruptions)
		}
		for _, e := range rec.entries {
			if e.pos.Segment == 1 {
				t.Fatal("entry replayed from a segment whose header failed")
			}
		}
		if _, err := w.ReadAt(want[0].pos, nil); !errors.Is(err, ErrBadPosition) {
			t.Fatalf("ReadAt in a skipped segment = %v", err)
		}
	})
	t.Run("missing segment is reported", func(t *testing.T) {
		mem := vfs.NewMemFS()
		writeEntries(t, mem, 2048, 40)
		must(t, mem.Remove(segPath(2)))
		w, rep, _ := mustOpen(t, testConfig(mem))
		defer w.Close()
		if len(rep.Corruptions) != 1 || rep.Corruptions[0].Segment != 2 || !strings.Contains(rep.Corruptions[0].Reason, "missing") {
			t.Fatalf("Corruptions %+v", rep.Corruptions)
		}
	})
	t.Run("torn segment creation is removed and reused", func(t *testing.T) {
		mem := vfs.NewMemFS()
		want := writeEntries(t, mem, 2048, 30)
		next := want[len(want)-1].pos.Segment + 1
		f, err := mem.OpenFile(segPath(next), os.O_RDWR|os.O_CREATE, 0o644)
		must(t, err)
		_, err = f.Write([]byte("CHRNKW"))
		must(t, err)
		w, rep, rec := mustOpen(t, testConfig(mem))
		defer w.Close()
		if rep.TruncatedBytes != 6 || len(rep.Corruptions) != 0 || len(rec.entries) != 30 {
			t.Fatalf("report %+v", rep)
		}
		pos, err := appendWait(t, w, tpOf(0), []byte("x"))
		must(t, err)
		if pos.Segment != next {
			t.Fatalf("append went to segment %d, want a fresh segment %d reusing the number", pos.Segment, next)
		}
		must(t, w.Close())
		w, rep, _ = mustOpen(t, testConfig(mem))
		if len(rep.Corruptions) != 0 || rep.Entries != 31 {
			t.Fatalf("reopen %+v, want 31 entries and no gap", rep)
		}
	})
	t.Run("verified header of a newer version refuses to open", func(t *testing.T) {
		mem := vfs.NewMemFS()
		writeEntries(t, mem, 0, 3)
		data, _ := mem.ReadFile(segPath(1))
		data[8] = 2 // version
		le.PutUint32(data[12:], segHeaderCRC(data))
		must(t, mem.WriteFile(segPath(1), data))
		if _, _, err := Open(testConfig(mem), nil); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("Open = %v, want ErrUnsupported", err)
		}
	})
}

func TestOpenSurvivesGarbageFiles(t *testing.T) {
	rng := newRand(42)
	for round := range 200 {
		mem := vfs.NewMemFS()
		must(t, mem.MkdirAll(memDir, 0o755))
		for seq := uint64(1); seq <= uint64(1+rng.IntN(3)); seq++ {
			var data []byte
			if rng.IntN(2) == 0 {
				data = appendSegHeader(nil, seq, rng.Uint64())
			}
			junk := make([]byte, rng.IntN(300))
			for i := range junk {
				junk[i] = byte(rng.UintN(256))
				if rng.IntN(4) == 0 {
					junk[i] = 0
				}
			}
			f, err := mem.OpenFile(segPath(seq), os.O_RDWR|os.O_CREATE, 0o644)
			must(t, err)
			_, err = f.Write(append(data, junk...))
			must(t, err)
		}
		w, _, err := Open(testConfig(mem), func(Entry) error {
			return errors.New("garbage must never verify")
		})
		if err != nil {
			t.Fatalf("round %d: Open on garbage: %v", round, err)
		}
		pos, err := appendWait(t, w, tpOf(1), []byte("still works"))
		must(t, err)
		if b, err := w.ReadAt(pos, nil); err != nil || string(b) != "still works" {
			t.Fatalf("round %d: ReadAt = %q, %v", round, b, err)
		}
		must(t, w.Close())
	}
}

// ENOSPC from fsync is not undone: the kernel may have dropped dirty pages
// of earlier groups with it, so the WAL fails for good, as on any fsync
// error.
func TestDiskFullAtFsyncIsSticky(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	w, _, _ := mustOpen(t, testConfig(efs))
	defer w.Close()
	if _, err := appendWait(t, w, tpOf(0), batchFor(0, 0, 100)); err != nil {
		t.Fatal(err)
	}
	efs.FailNextSync(syscall.ENOSPC)
	if _, err := appendWait(t, w, tpOf(0), batchFor(0, 1, 100)); !errors.Is(err, ErrFailed) || errors.Is(err, ErrDiskFull) {
		t.Fatalf("append whose fsync met ENOSPC = %v, want ErrFailed", err)
	}
	if _, err := w.Append(context.Background(), tpOf(1), []byte("x"), nil); !errors.Is(err, ErrFailed) {
		t.Fatalf("later append on another partition = %v, want the sticky ErrFailed", err)
	}
}
