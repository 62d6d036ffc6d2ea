package tier3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3/miniotest"
)

func TestTmpGetPatterns(t *testing.T) {
	srv := miniotest.Start(t)
	st := srv.Store(t, srv.NewBucket(t))
	ctx := context.Background()
	const objs, size = 7, 16 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for i := range objs {
		if _, err := st.Put(ctx, fmt.Sprintf("o%d", i), bytes.NewReader(data), size); err != nil {
			t.Fatal(err)
		}
	}
	run := func(streams int, rng int64) float64 {
		type job struct {
			key string
			off int64
		}
		work := make(chan job, 1000)
		for i := range objs {
			for off := int64(0); off < size; off += rng {
				work <- job{fmt.Sprintf("o%d", i), off}
			}
		}
		close(work)
		start := time.Now()
		var wg sync.WaitGroup
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, rng)
				for j := range work {
					rc, err := st.GetRange(ctx, j.key, j.off, rng)
					if err != nil {
						t.Error(err)
						return
					}
					io.ReadFull(rc, buf)
					rc.Close()
				}
			}()
		}
		wg.Wait()
		return float64(objs*size) / time.Since(start).Seconds() / 1e6
	}
	for rep := 0; rep < 3; rep++ {
		for _, c := range []struct {
			s int
			r int64
		}{{1, 16 << 20}, {4, 16 << 20}, {1, 4 << 20}, {4, 4 << 20}, {8, 4 << 20}, {2, 8 << 20}, {4, 8 << 20}, {4, 1 << 20}} {
			t.Logf("streams %d range %d MiB: %.0f MB/s", c.s, c.r>>20, run(c.s, c.r))
		}
	}
}
