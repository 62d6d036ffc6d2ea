package tier3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/chronik-go/chronik/tier3/miniotest"
)

// BenchmarkRangedGET reads 7 objects of 16 MiB (a catch-up benchmark's
// archive) from a real MinIO by ranged GETs of different sizes and
// numbers of streams: what read-ahead's GET size and parallelism cost.
//
//	go test ./tier3 -run '^$' -bench RangedGET
func BenchmarkRangedGET(b *testing.B) {
	srv := miniotest.Start(b)
	st := srv.Store(b, srv.NewBucket(b))
	ctx := context.Background()
	const objs, size = 7, 16 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	for i := range objs {
		if _, err := st.Put(ctx, fmt.Sprintf("o%d", i), bytes.NewReader(data), size); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		streams int
		rng     int64
	}{{1, 16 << 20}, {4, 16 << 20}, {2, 16 << 20}, {4, 8 << 20}, {4, 4 << 20}, {4, 1 << 20}} {
		b.Run(fmt.Sprintf("streams=%d/range=%dMiB", c.streams, c.rng>>20), func(b *testing.B) {
			b.SetBytes(objs * size)
			for range b.N {
				work := make(chan [2]int64, objs*size/c.rng)
				for i := range objs {
					for off := int64(0); off < size; off += c.rng {
						work <- [2]int64{int64(i), off}
					}
				}
				close(work)
				var wg sync.WaitGroup
				for range c.streams {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, c.rng)
						for j := range work {
							rc, err := st.GetRange(ctx, fmt.Sprintf("o%d", j[0]), j[1], c.rng)
							if err != nil {
								b.Error(err)
								return
							}
							if _, err := io.ReadFull(rc, buf); err != nil {
								b.Error(err)
							}
							rc.Close()
						}
					}()
				}
				wg.Wait()
			}
		})
	}
}
