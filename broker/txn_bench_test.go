package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkProduceTransactional measures 100-byte records produced by one
// franz-go client to one partition, fsync before ack, idempotent or in
// transactions committed every 100 ms (each commit flushes what is in
// flight, then EndTxn, whose markers and completion are fsynced too).
// The aim is transactional ≥ 0.8 × idempotent:
//
//	go test ./broker -run '^$' -bench BenchmarkProduceTransactional -benchtime 2000000x -count 5
func BenchmarkProduceTransactional(b *testing.B) {
	for _, interval := range []time.Duration{0, 100 * time.Millisecond} {
		name := "idempotent"
		if interval > 0 {
			name = "commit-every-" + interval.String()
		}
		b.Run(name, func(b *testing.B) {
			br := testBroker(b, b.TempDir(), nil)
			topic := fmt.Sprintf("bench-%d", interval)
			if _, err := br.createTopic(topic, 1, 1, nil, false); err != nil {
				b.Fatal(err)
			}
			opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.MaxBufferedRecords(50000)}
			if interval > 0 {
				opts = append(opts, kgo.TransactionalID(topic))
			}
			cl := testClient(b, br, opts...)
			ctx := context.Background()
			payload := make([]byte, 100)
			ends := time.Time{}
			commit := func() {
				if err := cl.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(100)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if interval > 0 && i&63 == 0 && time.Now().After(ends) {
					commit()
					if err := cl.BeginTransaction(); err != nil {
						b.Fatal(err)
					}
					ends = time.Now().Add(interval)
				}
				cl.Produce(ctx, &kgo.Record{Value: payload}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			if interval > 0 {
				commit()
			} else if err := cl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
