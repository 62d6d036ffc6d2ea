package broker

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// The cost of taking request bytes as they arrive (readBody: per-chunk
// budget, a growing buffer) against reserving the whole frame up front and
// reading it in one go, as the reader did before. From memory, so only the
// reader's own work shows.
func BenchmarkReadBody(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20, 16 << 20} {
		frame := bytes.Repeat([]byte{1}, size)
		src := bytes.NewReader(frame)
		br := bufio.NewReaderSize(src, readChunk)
		c := &conn{b: &Broker{reqBytes: semaphore.NewWeighted(1 << 30)}, ctx: context.Background()}
		b.Run(fmt.Sprintf("chunked/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				src.Reset(frame)
				br.Reset(src)
				body, err := c.readBody(br, size, time.Time{})
				if err != nil || len(body) != size {
					b.Fatal(err)
				}
				c.b.reqBytes.Release(int64(size))
			}
		})
		b.Run(fmt.Sprintf("upfront/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				src.Reset(frame)
				br.Reset(src)
				if err := c.b.reqBytes.Acquire(c.ctx, int64(size)); err != nil {
					b.Fatal(err)
				}
				body := make([]byte, size)
				if _, err := io.ReadFull(br, body); err != nil {
					b.Fatal(err)
				}
				c.b.reqBytes.Release(int64(size))
			}
		})
	}
}
