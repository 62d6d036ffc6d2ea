package tier1

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
)

// RemoveSegmentsBefore deletes whole sealed segments from the front, never
// the active one; reads of removed positions fail with ErrBadPosition, the
// rest still read, and a reopen replays only what remains without
// reporting the missing prefix as a gap.
func TestRemoveSegmentsBefore(t *testing.T) {
	mem := vfs.NewMemFS()
	cfg := testConfig(mem)
	cfg.SegmentBytes = 4 << 10
	w, _, _ := mustOpen(t, cfg)
	var pos []Position
	for i := 0; i < 200; i++ {
		done := make(chan Position, 1)
		if _, err := w.Append(context.Background(), tpOf(1), batchFor(1, uint64(i), 100), func(p Position, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- p
		}); err != nil {
			t.Fatal(err)
		}
		pos = append(pos, <-done)
	}
	active := w.ActiveSegment()
	if active < 4 {
		t.Fatalf("active segment %d; want several rolls", active)
	}
	n, err := w.RemoveSegmentsBefore(3)
	if err != nil || n != 2 {
		t.Fatalf("RemoveSegmentsBefore(3) = %d, %v; want 2 removed", n, err)
	}
	if n, err := w.RemoveSegmentsBefore(active + 10); err != nil || n != int(active)-3 {
		t.Fatalf("RemoveSegmentsBefore(past the end) = %d, %v; want every sealed one (%d)", n, err, active-3)
	}
	if w.ActiveSegment() != active {
		t.Fatalf("active segment moved to %d", w.ActiveSegment())
	}
	kept := 0
	for i, p := range pos {
		b, err := w.ReadAt(p, nil)
		switch {
		case p.Segment < active && !errors.Is(err, ErrBadPosition):
			t.Fatalf("entry %d in removed segment %d: err %v", i, p.Segment, err)
		case p.Segment == active && err != nil:
			t.Fatalf("entry %d in the active segment: %v", i, err)
		case p.Segment == active:
			if _, id := idOf(b); id != uint64(i) {
				t.Fatalf("entry %d reads back as %d", i, id)
			}
			kept++
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, rep, rec := mustOpen(t, cfg)
	if len(rep.Corruptions) != 0 || len(rec.entries) != kept {
		t.Fatalf("reopen: %d entries, corruptions %v; want %d and none", len(rec.entries), rep.Corruptions, kept)
	}
}

// A group that rolls into a new segment half-way must not let a trimmer
// remove the old segment before the group's callbacks have run: while any
// entry is being acknowledged, ActiveSegment is at or below its segment, and
// RemoveSegmentsBefore cannot go past it.
func TestActiveSegmentTrailsUnacknowledgedEntries(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	cfg := testConfig(efs)
	cfg.SegmentBytes = 4 << 10
	w, _, _ := mustOpen(t, cfg)
	defer w.Close()
	release := make(chan struct{})
	var held atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync && held.CompareAndSwap(false, true) {
			<-release // hold the first group so the next one queues up
		}
		return nil
	})

	var wg sync.WaitGroup
	var violations atomic.Int64
	var segs sync.Map
	for i := 0; i < 40; i++ {
		wg.Add(1)
		if _, err := w.Append(context.Background(), tpOf(1), batchFor(1, uint64(i), 500), func(p Position, err error) {
			defer wg.Done()
			if err != nil {
				t.Error(err)
				return
			}
			segs.Store(p.Segment, true)
			if w.ActiveSegment() > p.Segment {
				violations.Add(1)
			}
			if _, err := w.RemoveSegmentsBefore(p.Segment + 1); err != nil {
				t.Error(err)
			}
			if _, err := w.ReadAt(p, nil); err != nil {
				t.Errorf("entry at %+v unreadable while being acknowledged: %v", p, err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for !held.Load() {
				runtime.Gosched()
			}
		}
	}
	close(release)
	wg.Wait()
	n := 0
	segs.Range(func(any, any) bool { n++; return true })
	if n < 3 {
		t.Fatalf("entries landed in %d segments; the test needs groups that roll", n)
	}
	if v := violations.Load(); v > 0 {
		t.Fatalf("ActiveSegment ran ahead of an entry being acknowledged %d times", v)
	}
}
