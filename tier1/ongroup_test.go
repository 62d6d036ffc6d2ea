package tier1

import (
	"sync"
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
