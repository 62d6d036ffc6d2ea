package tier3test

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// RawGet reads every object of keys whole and discards it, streams GETs
// at once: the baseline a benchmark compares archived reads with. It
// returns how long that took.
func RawGet(ctx context.Context, store tier3.Store, keys []string, streams int) (time.Duration, error) {
	start := time.Now()
	work := make(chan string, len(keys))
	for _, k := range keys {
		work <- k
	}
	close(work)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range max(streams, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range work {
				rc, err := store.GetRange(ctx, key, 0, 1<<40)
				if err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}
