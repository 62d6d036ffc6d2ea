package tier1

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// OnGroup sees every committed entry once, with its bytes, and the fsync
// time of each group; groups that cross a segment roll count both fsyncs.
func TestOnGroup(t *testing.T) {
	for _, mode := range []FsyncMode{FsyncAlways, FsyncNever} {
		var mu sync.Mutex
		var entries, calls int
		var bytes int64
		var fsync time.Duration
		cfg := testConfig(vfs.NewMemFS())
		cfg.Fsync = mode
		cfg.SegmentBytes = 4 << 10 // rolls every few entries
		cfg.OnGroup = func(n int, b int64, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			entries += n
			bytes += b
			fsync += d
		}
		w, _, _ := mustOpen(t, cfg)
		const n = 40
		var want int64
		for i := range n {
			batch := batchFor(i%3, uint64(i), 300)
			want += int64(len(batch))
			if _, err := appendWait(t, w, tpOf(i%3), batch); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if entries != n || bytes != want || uint64(calls) != w.Stats().Groups {
			t.Errorf("fsync %d: OnGroup saw %d entries, %d bytes in %d calls; want %d entries, %d bytes in %d groups",
				mode, entries, bytes, calls, n, want, w.Stats().Groups)
		}
		if mode == FsyncAlways && (fsync <= 0 || fsync > time.Duration(w.Stats().FsyncNanos)) {
			t.Errorf("OnGroup fsync total %v; Stats says %v", fsync, time.Duration(w.Stats().FsyncNanos))
		}
		mu.Unlock()
	}
}

// OnFailed hears of a WAL failing for good, once; a full disk is not that.
func TestOnFailed(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.NewMemFS())
	cfg := testConfig(efs)
	var calls []error
	cfg.OnFailed = func(err error) { calls = append(calls, err) }
	w, _, _ := mustOpen(t, cfg)
	efs.FailNextSync(syscall.EIO)
	if _, err := appendWait(t, w, tpOf(0), []byte("a")); !errors.Is(err, ErrFailed) {
		t.Fatalf("append whose fsync failed = %v, want ErrFailed", err)
	}
	w.Append(context.Background(), tpOf(0), []byte("b"), nil)
	w.Close()
	if len(calls) != 1 || !errors.Is(calls[0], ErrFailed) || !errors.Is(calls[0], syscall.EIO) {
		t.Fatalf("OnFailed calls %v; want one, wrapping ErrFailed and EIO", calls)
	}
}
