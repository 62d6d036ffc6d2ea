package compat_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

var franzCodecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

// franzGo is franz-go's kgo: an idempotent producer (its default) at
// acks=all, and a direct partition consumer.
var franzGo = client{
	name: "franz-go",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(r.addr),
			kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerBatchCompression(franzCodecs[r.codec.name]),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.DefaultProduceTopic(r.topic),
		)
		if err != nil {
			return err
		}
		defer cl.Close()

		var mu sync.Mutex
		var firstErr error
		fail := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if firstErr == nil {
				firstErr = err
			}
		}
		for i := range r.n {
			rec := &kgo.Record{Partition: partitionOf(i), Key: key(i), Value: value(i)}
			for _, h := range goHeaders(r, i) {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
			}
			cl.Produce(ctx, rec, func(rec *kgo.Record, err error) {
				if err != nil {
					fail(fmt.Errorf("record %d: %w", i, err))
					return
				}
				if err := checkAck(i, rec.Partition, rec.Offset); err != nil {
					fail(err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		return firstErr
	},
	consume: func(ctx context.Context, t *testing.T, r run, c *checker) error {
		offsets := map[int32]kgo.Offset{}
		for p := range int32(partitions) {
			offsets[p] = kgo.NewOffset().AtStart()
		}
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(r.addr),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: offsets}),
		)
		if err != nil {
			return err
		}
		defer cl.Close()
		for !c.done() {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return err
			}
			for _, fe := range fs.Errors() {
				return fmt.Errorf("fetch partition %d: %w", fe.Partition, fe.Err)
			}
			for it := fs.RecordIter(); !it.Done(); {
				rec := it.Next()
				got := record{Partition: rec.Partition, Offset: rec.Offset, Key: string(rec.Key), Value: string(rec.Value)}
				for _, h := range rec.Headers {
					got.Headers = append(got.Headers, header{h.Key, string(h.Value)})
				}
				if err := c.add(got); err != nil {
					return err
				}
			}
		}
		return nil
	},
}
