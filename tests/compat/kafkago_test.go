package compat_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	segkafka "github.com/segmentio/kafka-go"
)

var kafkaGoCodecs = map[string]segkafka.Compression{
	"none":   0,
	"gzip":   segkafka.Gzip,
	"snappy": segkafka.Snappy,
	"lz4":    segkafka.Lz4,
	"zstd":   segkafka.Zstd,
}

// kafkaGo is segmentio/kafka-go: a synchronous Writer at RequireAll (it has
// no idempotent mode) and one Reader pinned to each partition, no group.
var kafkaGo = client{
	name: "kafka-go",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		var mu sync.Mutex
		var ackErr error
		// A Transport of its own: the shared default one caches metadata
		// for seconds and reports a topic created since as unknown.
		tr := &segkafka.Transport{}
		defer tr.CloseIdleConnections()
		w := &segkafka.Writer{
			Addr:         segkafka.TCP(r.addr),
			Transport:    tr,
			Topic:        r.topic,
			RequiredAcks: segkafka.RequireAll,
			Compression:  kafkaGoCodecs[r.codec.name],
			BatchSize:    1000,
			BatchTimeout: 10 * time.Millisecond,
			// Each message carries its partition; kafka-go's Writer asks the
			// balancer rather than reading Message.Partition.
			Balancer: segkafka.BalancerFunc(func(m segkafka.Message, _ ...int) int { return m.Partition }),
			Completion: func(msgs []segkafka.Message, err error) {
				if err != nil {
					return // WriteMessages returns it
				}
				for _, m := range msgs {
					var i int
					if _, err := fmt.Sscanf(string(m.Key), "key-%d", &i); err == nil {
						err = checkAck(i, int32(m.Partition), m.Offset)
					}
					if err != nil {
						mu.Lock()
						ackErr = errors.Join(ackErr, err)
						mu.Unlock()
						return
					}
				}
			},
		}
		defer w.Close()

		// Writes are sequential chunks, so per-partition order holds even
		// though one chunk's batches go out in parallel.
		const chunk = 3000
		msgs := make([]segkafka.Message, 0, chunk)
		for start := 0; start < r.n; start += chunk {
			msgs = msgs[:0]
			for i := start; i < min(start+chunk, r.n); i++ {
				m := segkafka.Message{Partition: int(partitionOf(i)), Key: key(i), Value: value(i)}
				for _, h := range goHeaders(r, i) {
					m.Headers = append(m.Headers, segkafka.Header{Key: h.Key, Value: []byte(h.Value)})
				}
				msgs = append(msgs, m)
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return fmt.Errorf("records %d..%d: %w", start, start+len(msgs)-1, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return ackErr
	},
	consume: func(ctx context.Context, t *testing.T, r run, c *checker) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			m   segkafka.Message
			err error
		}
		results := make(chan result, 1024)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel() // runs before wg.Wait
		for p := range partitions {
			rd := segkafka.NewReader(segkafka.ReaderConfig{
				Brokers:   []string{r.addr},
				Topic:     r.topic,
				Partition: p,
				MinBytes:  1,
				MaxBytes:  4 << 20,
				MaxWait:   250 * time.Millisecond,
			})
			if err := rd.SetOffset(segkafka.FirstOffset); err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer rd.Close()
				for range countIn(int32(p), r.n) {
					m, err := rd.ReadMessage(ctx)
					select {
					case results <- result{m, err}:
					case <-ctx.Done():
						return
					}
					if err != nil {
						return
					}
				}
			}()
		}
		for !c.done() {
			var res result
			select {
			case res = <-results:
			case <-ctx.Done():
				return ctx.Err()
			}
			if res.err != nil {
				return res.err
			}
			got := record{Partition: int32(res.m.Partition), Offset: res.m.Offset, Key: string(res.m.Key), Value: string(res.m.Value)}
			for _, h := range res.m.Headers {
				got.Headers = append(got.Headers, header{h.Key, string(h.Value)})
			}
			if err := c.add(got); err != nil {
				return err
			}
		}
		return nil
	},
}
