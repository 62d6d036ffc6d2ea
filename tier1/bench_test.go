package tier1

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures the WAL's own ceiling on a real directory with
// FsyncAlways and 16 KiB batches from parallel appenders:
//
//   - ackEach: every appender waits for its ack before the next append, like
//     producers with one request in flight; throughput is bound by how many
//     appends share an fsync.
//   - pipelined: appenders never wait; backpressure (the default profile)
//     is the only brake, so this is the write+fsync bandwidth ceiling.
func BenchmarkAppend(b *testing.B) {
	const batchSize = 16 << 10
	batch := make([]byte, batchSize)
	for i := range batch {
		batch[i] = byte(i)
	}
	run := func(b *testing.B, pipelined bool) {
		w, _, err := Open(Config{Dir: b.TempDir(), Logger: quietLogger()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var part atomic.Int32
		var failed atomic.Int64
		b.SetBytes(batchSize)
		b.ReportAllocs()
		b.SetParallelism(16) // 16 appenders per CPU
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			tp := tpOf(int(part.Add(1)))
			var inflight sync.WaitGroup
			acked := make(chan error, 1)
			done := func(_ Position, err error) {
				if err != nil {
					failed.Add(1)
				}
				if pipelined {
					inflight.Done()
				} else {
					acked <- err
				}
			}
			for pb.Next() {
				if pipelined {
					inflight.Add(1)
				}
				if _, err := w.Append(context.Background(), tp, batch, done); err != nil {
					b.Error(err)
					return
				}
				if !pipelined {
					<-acked
				}
			}
			inflight.Wait()
		})
		b.StopTimer()
		s := w.Stats()
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if failed.Load() > 0 {
			b.Fatalf("%d appends failed", failed.Load())
		}
		if s.Groups > 0 {
			b.ReportMetric(float64(s.Appends)/float64(s.Groups), "appends/fsync")
			b.ReportMetric(float64(s.FsyncNanos)/float64(s.Groups)/1e3, "µs/fsync")
		}
	}
	b.Run("ackEach", func(b *testing.B) { run(b, false) })
	b.Run("pipelined", func(b *testing.B) { run(b, true) })
}
