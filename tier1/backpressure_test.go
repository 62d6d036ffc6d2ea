package tier1

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
)

type appendResult struct {
	waited bool
	err    error
}

// heldWAL opens a WAL with profile p whose first group is held in fsync by
// the returned gate, so the queue behind it fills up.
func heldWAL(t *testing.T, p Profile) (*WAL, *syncGate, *atomic.Int64) {
	t.Helper()
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	cfg := testConfig(efs)
	cfg.Profile = p
	w, _, _ := mustOpen(t, cfg)
	gate := newSyncGate()
	efs.SetHook(gate.hook)
	var acks atomic.Int64
	first := func(_ Position, err error) {
		if err == nil {
			acks.Add(1)
		}
	}
	if waited, err := w.Append(context.Background(), tpOf(0), make([]byte, 100), first); err != nil || waited {
		t.Fatalf("first Append: waited=%v err=%v", waited, err)
	}
	gate.waitEntered(t)
	return w, gate, &acks
}

// drain closes w, releasing the fsync being held and any later one.
func drain(t *testing.T, w *WAL, gate *syncGate) {
	t.Helper()
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	releaseUntilClosed(t, gate, closed)
}

func releaseUntilClosed(t *testing.T, gate *syncGate, closed chan error) {
	t.Helper()
	gate.release <- nil
	gate.openAll()
	for {
		select {
		case <-gate.entered:
			gate.release <- nil
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			return
		}
	}
}

func TestBackpressureQueueDepth(t *testing.T) {
	w, gate, acks := heldWAL(t, Profile{Name: "tiny", QueueDepth: 2, MaxGroup: 10, MemoryBytes: 1 << 20})
	count := func(_ Position, err error) {
		if err == nil {
			acks.Add(1)
		}
	}
	for i := range 2 {
		if waited, err := w.Append(context.Background(), tpOf(0), make([]byte, 100), count); err != nil || waited {
			t.Fatalf("append %d into a queue with room: waited=%v err=%v", i, waited, err)
		}
	}
	res := make(chan appendResult)
	go func() {
		waited, err := w.Append(context.Background(), tpOf(0), make([]byte, 100), count)
		res <- appendResult{waited, err}
	}()
	waitFor(t, "the third queued append to block", func() bool { return w.Stats().BackpressureWait == 1 })
	if s := w.Stats(); s.QueueDepth != 2 {
		t.Fatalf("QueueDepth = %d while blocked, want 2", s.QueueDepth)
	}
	select {
	case r := <-res:
		t.Fatalf("Append returned %+v while the queue was full", r)
	default:
	}
	gate.release <- nil // the first group completes; the queue moves into the next group
	if r := <-res; r.err != nil || !r.waited {
		t.Fatalf("blocked Append = %+v, want waited=true and no error", r)
	}
	gate.waitEntered(t)
	drain(t, w, gate)
	if n := acks.Load(); n != 4 {
		t.Fatalf("%d appends acked, want 4", n)
	}
}

func TestBackpressureHonoursContext(t *testing.T) {
	w, gate, _ := heldWAL(t, Profile{Name: "tiny", QueueDepth: 1, MaxGroup: 10, MemoryBytes: 1 << 20})
	if _, err := w.Append(context.Background(), tpOf(0), []byte("fills the queue"), nil); err != nil {
		t.Fatal(err)
	}
	var called atomic.Bool
	never := func(Position, error) { called.Store(true) }

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if waited, err := w.Append(cancelled, tpOf(0), []byte("x"), never); !errors.Is(err, context.Canceled) || !waited {
		t.Fatalf("Append with a cancelled context = %v, %v; want waited and context.Canceled", waited, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan appendResult)
	go func() {
		waited, err := w.Append(ctx, tpOf(0), []byte("y"), never)
		res <- appendResult{waited, err}
	}()
	waitFor(t, "Append to block", func() bool { return w.Stats().BackpressureWait == 2 })
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) || !r.waited {
		t.Fatalf("Append cancelled while blocked = %+v", r)
	}

	// Close wakes a blocked appender with ErrClosed.
	go func() {
		waited, err := w.Append(context.Background(), tpOf(0), []byte("z"), never)
		res <- appendResult{waited, err}
	}()
	waitFor(t, "Append to block", func() bool { return w.Stats().BackpressureWait == 3 })
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	if r := <-res; !errors.Is(r.err, ErrClosed) { // the fsync is still held
		t.Fatalf("Append blocked across Close = %+v, want ErrClosed", r)
	}
	releaseUntilClosed(t, gate, closed)
	if called.Load() {
		t.Fatal("done called for an append that returned an error")
	}
}

func TestBackpressureMemoryBound(t *testing.T) {
	const limit = 1000
	w, gate, _ := heldWAL(t, Profile{Name: "tiny", QueueDepth: 1000, MaxGroup: 1000, MemoryBytes: limit})
	for i := range 3 {
		if waited, err := w.Append(context.Background(), tpOf(0), make([]byte, 300), nil); err != nil || waited {
			t.Fatalf("append %d: waited=%v err=%v", i, waited, err)
		}
	}
	res := make(chan appendResult)
	go func() {
		waited, err := w.Append(context.Background(), tpOf(0), make([]byte, 300), nil)
		res <- appendResult{waited, err}
	}()
	waitFor(t, "the append over the memory bound to block", func() bool { return w.Stats().BackpressureWait == 1 })
	if s := w.Stats(); s.QueueBytes != 900 || s.QueueDepth != 3 {
		t.Fatalf("queue %d entries / %d bytes while blocked, want 3 / 900", s.QueueDepth, s.QueueBytes)
	}
	gate.release <- nil
	if r := <-res; r.err != nil || !r.waited {
		t.Fatalf("blocked Append = %+v", r)
	}
	// The next group is capped by the memory bound too: 3 entries (900 of
	// 1000 bytes), leaving the fourth queued.
	gate.waitEntered(t)
	if s := w.Stats(); s.QueueBytes > limit {
		t.Fatalf("QueueBytes %d over MemoryBytes %d", s.QueueBytes, limit)
	}
	drain(t, w, gate)
	if s := w.Stats(); s.Appends != 5 || s.Groups != 3 {
		t.Fatalf("stats %+v: want 5 appends in 3 groups (1, 3, 1)", s)
	}
}

func TestOversizedBatchAdmittedIntoEmptyQueue(t *testing.T) {
	w, _, _ := mustOpen(t, Config{Dir: memDir, FS: vfs.NewMemFS(), Logger: quietLogger(),
		Profile: Profile{Name: "tiny", QueueDepth: 1, MaxGroup: 1, MemoryBytes: 100}})
	defer w.Close()
	big := batchFor(0, 1, 5000)
	pos, err := appendWait(t, w, tpOf(0), big)
	if err != nil {
		t.Fatalf("a batch over MemoryBytes into an empty queue: %v", err)
	}
	if b, err := w.ReadAt(pos, nil); err != nil || len(b) != len(big) {
		t.Fatalf("ReadAt = %d bytes, %v", len(b), err)
	}
}
