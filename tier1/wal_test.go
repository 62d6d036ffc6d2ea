package tier1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/google/go-cmp/cmp"
)

func TestProfileByName(t *testing.T) {
	for _, tc := range []struct {
		name      string
		queue     int
		group     int
		wait      time.Duration
		memory    int64
		wantError bool
	}{
		{name: "low", queue: 2_500, group: 5_000, wait: 20 * time.Millisecond, memory: 25 << 20},
		{name: "medium", queue: 10_000, group: 15_000, wait: 10 * time.Millisecond, memory: 100 << 20},
		{name: "high", queue: 50_000, group: 50_000, wait: 100 * time.Millisecond, memory: 500 << 20},
		{name: " Ultra ", queue: 100_000, group: 100_000, wait: 100 * time.Millisecond, memory: 1 << 30},
		{name: "extreme", wantError: true},
		{name: "", wantError: true},
	} {
		p, err := ProfileByName(tc.name)
		if tc.wantError {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "low, medium, high, ultra") {
				t.Errorf("ProfileByName(%q) error = %v, want ErrConfig naming the valid profiles", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ProfileByName(%q): %v", tc.name, err)
		}
		want := Profile{Name: strings.ToLower(strings.TrimSpace(tc.name)), QueueDepth: tc.queue,
			MaxGroup: tc.group, MaxWait: tc.wait, MemoryBytes: tc.memory}
		if diff := cmp.Diff(want, p); diff != "" {
			t.Errorf("ProfileByName(%q) (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Dir: "d"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("zero-valued config with a Dir: %v", err)
	}
	for name, c := range map[string]Config{
		"no dir":        {},
		"fsync mode":    {Dir: "d", Fsync: 7},
		"tiny segment":  {Dir: "d", SegmentBytes: 100},
		"queue depth":   {Dir: "d", Profile: Profile{Name: "x", MaxGroup: 1, MemoryBytes: 1}},
		"max group":     {Dir: "d", Profile: Profile{Name: "x", QueueDepth: 1, MemoryBytes: 1}},
		"memory":        {Dir: "d", Profile: Profile{Name: "x", QueueDepth: 1, MaxGroup: 1}},
		"negative wait": {Dir: "d", MaxWait: -time.Second},
	} {
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
		if _, _, err := Open(c, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Open = %v, want ErrConfig", name, err)
		}
	}
	w, _, _ := mustOpen(t, Config{Dir: memDir, FS: vfs.NewMemFS(), MaxWait: 3 * time.Millisecond, Logger: quietLogger()})
	defer w.Close()
	if p := w.Profile(); p.Name != DefaultProfileName || p.MaxWait != 3*time.Millisecond {
		t.Fatalf("effective profile %+v: want %s with MaxWait overridden", p, DefaultProfileName)
	}
}

// TestRoundTrip appends from many goroutines and partitions, then checks
// that ReadAt and replay after reopening return exactly what was acked, in
// order per partition.
func TestRoundTrip(t *testing.T) {
	for _, fsName := range []string{"memfs", "os"} {
		t.Run(fsName, func(t *testing.T) {
			cfg := testConfig(vfs.NewMemFS())
			if fsName == "os" {
				cfg = Config{Dir: t.TempDir(), Logger: quietLogger()}
			}
			const goroutines, partsPer, perPart = 8, 3, 40
			w, rep, _ := mustOpen(t, cfg)
			if rep.Entries != 0 || rep.Segments != 1 {
				t.Fatalf("fresh dir report %+v", rep)
			}
			type acked struct {
				batch []byte
				pos   Position
			}
			var mu sync.Mutex
			got := map[int][]acked{} // per partition, in ack order
			var wg, done sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perPart {
						for k := range partsPer {
							p := g*partsPer + k
							b := batchFor(p, uint64(i), sizeFor(p, uint64(i), 3000))
							done.Add(1)
							_, err := w.Append(context.Background(), tpOf(p), b, func(pos Position, err error) {
								defer done.Done()
								if err != nil {
									t.Errorf("append p%d/%d failed: %v", p, i, err)
									return
								}
								mu.Lock()
								got[p] = append(got[p], acked{b, pos})
								mu.Unlock()
							})
							if err != nil {
								done.Done()
								t.Errorf("Append: %v", err)
							}
						}
					}
				}()
			}
			wg.Wait()
			done.Wait()
			total := goroutines * partsPer * perPart
			if s := w.Stats(); s.Appends != uint64(total) || s.Groups == 0 || s.Groups > s.Appends || s.QueueDepth != 0 {
				t.Fatalf("stats after %d appends: %+v", total, s)
			}
			for p, list := range got {
				for i, a := range list {
					if pid, id := idOf(a.batch); pid != p || id != uint64(i) {
						t.Fatalf("partition %d acked entry %d/%d at index %d: per-partition order broken", p, pid, id, i)
					}
					b, err := w.ReadAt(a.pos, nil)
					if err != nil || !bytes.Equal(b, a.batch) {
						t.Fatalf("ReadAt(%+v) = %d bytes, %v", a.pos, len(b), err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}

			w, rep, rec := mustOpen(t, cfg)
			defer w.Close()
			if rep.Entries != total || rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 {
				t.Fatalf("reopen report %+v, want %d clean entries", rep, total)
			}
			replayedBy := map[int][]acked{}
			for _, e := range rec.entries {
				p := int(e.tp.Partition)
				if e.tp != tpOf(p) {
					t.Fatalf("replayed topic partition %+v, want %+v", e.tp, tpOf(p))
				}
				replayedBy[p] = append(replayedBy[p], acked{e.batch, e.pos})
			}
			if diff := cmp.Diff(got, replayedBy, cmp.AllowUnexported(acked{}), bytesEqual); diff != "" {
				t.Fatalf("replay differs from acks (-acked +replayed):\n%s", diff)
			}
			dst := []byte("prefix")
			for _, e := range rec.entries {
				b, err := w.ReadAt(e.pos, dst)
				if err != nil || string(b[:6]) != "prefix" || !bytes.Equal(b[6:], e.batch) {
					t.Fatalf("ReadAt after reopen(%+v): %v", e.pos, err)
				}
			}
		})
	}
}

func TestSegmentRoll(t *testing.T) {
	mem := vfs.NewMemFS()
	cfg := testConfig(mem)
	cfg.SegmentBytes = 4096
	w, _, _ := mustOpen(t, cfg)
	var want []replayed
	for i := range 60 {
		size := sizeFor(0, uint64(i), 700)
		if i == 30 {
			size = 10_000 // larger than a segment: gets one of its own
		}
		b := batchFor(0, uint64(i), size)
		pos, err := appendWait(t, w, tpOf(0), b)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, replayed{tp: tpOf(0), batch: b, pos: pos})
	}
	big, after := want[30].pos, want[31].pos
	if big.Offset != segHeaderSize+batchOffset || after.Segment != big.Segment+1 || want[29].pos.Segment != big.Segment-1 {
		t.Fatalf("oversized entry not alone in its segment: before %+v, big %+v, after %+v", want[29].pos, big, after)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, mem, memDir)
	if len(files) < 5 {
		t.Fatalf("only %d segments after %d bytes with 4 KiB segments", len(files), 60*350)
	}
	for _, name := range files {
		data, _ := mem.ReadFile(name)
		seq, _ := parseSegmentName(name[len(memDir)+1:])
		if int64(len(data)) > cfg.SegmentBytes && seq != big.Segment {
			t.Errorf("%s is %d bytes, over SegmentBytes", name, len(data))
		}
	}

	w, rep, rec := mustOpen(t, cfg)
	defer w.Close()
	if rep.Segments != len(files) || rep.Entries != len(want) {
		t.Fatalf("report %+v, want %d segments and %d entries", rep, len(files), len(want))
	}
	if diff := cmp.Diff(want, rec.entries, cmp.AllowUnexported(replayed{}), bytesEqual); diff != "" {
		t.Fatalf("replay across segments (-want +got):\n%s", diff)
	}
	for _, e := range want {
		if b, err := w.ReadAt(e.pos, nil); err != nil || !bytes.Equal(b, e.batch) {
			t.Fatalf("ReadAt(%+v) in sealed segment: %v", e.pos, err)
		}
	}
	// Appends continue in the last segment, not a new one.
	pos, err := appendWait(t, w, tpOf(0), []byte("after reopen"))
	if err != nil || pos.Segment != want[len(want)-1].pos.Segment {
		t.Fatalf("append after reopen at %+v, %v", pos, err)
	}
}

func TestFsyncNeverAcksWithoutFsync(t *testing.T) {
	mem := vfs.NewMemFS()
	efs := vfs.NewErrorFS(mem)
	cfg := testConfig(efs)
	cfg.Fsync = FsyncNever
	w, _, _ := mustOpen(t, cfg)
	var syncs atomic.Int64
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync {
			syncs.Add(1)
		}
		return nil
	})
	for i := range 20 {
		if _, err := appendWait(t, w, tpOf(1), batchFor(1, uint64(i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n := syncs.Load(); n != 0 {
		t.Fatalf("FsyncNever issued %d fsyncs for 20 appends", n)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 1 {
		t.Fatalf("Close issued %d fsyncs, want 1", n)
	}
	_, rep, _ := mustOpen(t, testConfig(mem))
	if rep.Entries != 20 {
		t.Fatalf("replayed %d entries, want 20", rep.Entries)
	}
}

func TestCloseCommitsQueuedAndRejectsLaterAppends(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	w, _, _ := mustOpen(t, testConfig(efs))
	gate := newSyncGate()
	efs.SetHook(gate.hook)

	results := make(chan error, 10)
	done := func(_ Position, err error) { results <- err }
	for i := range 5 {
		if _, err := w.Append(context.Background(), tpOf(0), batchFor(0, uint64(i), 50), done); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	// Close cannot return while a group is held in fsync; release each one.
	var cerr error
release:
	for {
		select {
		case <-gate.entered:
			gate.release <- nil
		case cerr = <-closed:
			break release
		}
	}
	if cerr != nil {
		t.Fatalf("Close: %v", cerr)
	}
	for range 5 {
		if err := <-results; err != nil {
			t.Fatalf("queued append failed on Close: %v", err)
		}
	}
	called := false
	if _, err := w.Append(context.Background(), tpOf(0), []byte("late"), func(Position, error) { called = true }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if _, err := w.ReadAt(Position{Segment: 1, Offset: 68, Len: 1}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAt after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if called {
		t.Fatal("done called for a rejected append")
	}
}

func TestReadAtRejectsPositionsNeverHandedOut(t *testing.T) {
	w, _, _ := mustOpen(t, testConfig(vfs.NewMemFS()))
	defer w.Close()
	pos, err := appendWait(t, w, tpOf(0), []byte("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Position{
		{Segment: 99, Offset: pos.Offset, Len: pos.Len},
		{Segment: pos.Segment, Offset: pos.Offset + 1000, Len: pos.Len},
		{Segment: pos.Segment, Offset: pos.Offset + 4, Len: 2},
		{Segment: pos.Segment, Offset: pos.Offset, Len: -1},
		{Segment: pos.Segment, Offset: 3, Len: 1},
	} {
		if _, err := w.ReadAt(p, nil); !errors.Is(err, ErrBadPosition) {
			t.Errorf("ReadAt(%+v) = %v, want ErrBadPosition", p, err)
		}
	}
	if _, err := w.ReadAt(Position{Segment: pos.Segment, Offset: pos.Offset, Len: pos.Len - 1}, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAt with a wrong length = %v, want ErrCorrupt", err)
	}
}

func TestAppendTooLarge(t *testing.T) {
	w, _, _ := mustOpen(t, testConfig(vfs.NewMemFS()))
	defer w.Close()
	huge := make([]byte, MaxBatchBytes+1) // untouched pages: virtual memory only
	if _, err := w.Append(context.Background(), tpOf(0), huge, func(Position, error) { t.Error("done called") }); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append(%d bytes) = %v, want ErrTooLarge", len(huge), err)
	}
}

func ExampleWAL_Append() {
	w, _, err := Open(Config{Dir: "/wal", FS: vfs.NewMemFS(), Logger: quietLogger()}, nil)
	if err != nil {
		panic(err)
	}
	defer w.Close()
	acked := make(chan error, 1)
	batch := []byte("a complete Kafka record batch")
	if _, err := w.Append(context.Background(), TopicPartition{Partition: 0}, batch, func(pos Position, err error) {
		acked <- err
	}); err != nil {
		panic(err)
	}
	fmt.Println(<-acked)
	// Output: <nil>
}

func TestOpenSyncsNewDirectories(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	var synced []string
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSyncDir {
			synced = append(synced, path)
		}
		return nil
	})
	w, _, _ := mustOpen(t, Config{Dir: "/a/b/wal", FS: efs, Logger: quietLogger()})
	defer w.Close()
	// Each created directory in its parent, then the first segment.
	want := []string{"/a/b", "/a", "/", "/a/b/wal"}
	if diff := cmp.Diff(want, synced); diff != "" {
		t.Fatalf("SyncDir calls (-want +got):\n%s", diff)
	}
}

func TestReplayErrorAbortsOpen(t *testing.T) {
	mem := vfs.NewMemFS()
	writeEntries(t, mem, 0, 3)
	stop := errors.New("broker refuses entry")
	calls := 0
	_, _, err := Open(testConfig(mem), func(Entry) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("Open = %v after %d replay calls, want the replay error after 2", err, calls)
	}
	// Nothing was modified: a later Open replays everything.
	_, rep, _ := mustOpen(t, testConfig(mem))
	if rep.Entries != 3 {
		t.Fatalf("replayed %d entries, want 3", rep.Entries)
	}
}
