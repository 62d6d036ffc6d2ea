package compat_test

import (
	"context"
	"fmt"
	"testing"

	ibm "github.com/IBM/sarama"
)

var saramaCodecs = map[string]ibm.CompressionCodec{
	"none":   ibm.CompressionNone,
	"gzip":   ibm.CompressionGZIP,
	"snappy": ibm.CompressionSnappy,
	"lz4":    ibm.CompressionLZ4,
	"zstd":   ibm.CompressionZSTD,
}

// sarama is IBM/sarama with its default protocol version: an idempotent async
// producer at acks=all and one partition consumer per partition.
var sarama = client{
	name: "sarama",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		cfg := ibm.NewConfig()
		cfg.ClientID = "chronik-compat"
		cfg.Producer.RequiredAcks = ibm.WaitForAll
		cfg.Producer.Idempotent = true
		cfg.Net.MaxOpenRequests = 1 // required by sarama's idempotent producer
		cfg.Producer.Compression = saramaCodecs[r.codec.name]
		cfg.Producer.Partitioner = ibm.NewManualPartitioner
		cfg.Producer.Return.Successes = true
		cfg.Producer.Return.Errors = true
		p, err := ibm.NewAsyncProducer([]string{r.addr}, cfg)
		if err != nil {
			return err
		}
		defer func() {
			// Close waits for in-flight messages, whose successes must be
			// read for it to return after an early error return.
			go func() {
				for range p.Successes() {
				}
			}()
			p.Close()
		}()

		go func() {
			for i := range r.n {
				msg := &ibm.ProducerMessage{
					Topic:     r.topic,
					Partition: partitionOf(i),
					Key:       ibm.ByteEncoder(key(i)),
					Value:     ibm.ByteEncoder(value(i)),
					Metadata:  i,
				}
				for _, h := range goHeaders(r, i) {
					msg.Headers = append(msg.Headers, ibm.RecordHeader{Key: []byte(h.Key), Value: []byte(h.Value)})
				}
				select {
				case p.Input() <- msg:
				case <-ctx.Done():
					return
				}
			}
		}()
		for acked := 0; acked < r.n; acked++ {
			select {
			case msg := <-p.Successes():
				if err := checkAck(msg.Metadata.(int), msg.Partition, msg.Offset); err != nil {
					return err
				}
			case perr := <-p.Errors():
				return fmt.Errorf("record %v: %w", perr.Msg.Metadata, perr.Err)
			case <-ctx.Done():
				return fmt.Errorf("%d of %d records acknowledged: %w", acked, r.n, ctx.Err())
			}
		}
		return nil
	},
	consume: func(ctx context.Context, t *testing.T, r run, c *checker) error {
		cfg := ibm.NewConfig()
		cfg.ClientID = "chronik-compat"
		cfg.Consumer.Return.Errors = true
		consumer, err := ibm.NewConsumer([]string{r.addr}, cfg)
		if err != nil {
			return err
		}
		defer consumer.Close()

		var pcs [partitions]ibm.PartitionConsumer
		for p := range int32(partitions) {
			if pcs[p], err = consumer.ConsumePartition(r.topic, p, ibm.OffsetOldest); err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
			defer pcs[p].Close()
		}
		// Read all partitions at once: sarama stops fetching for a partition
		// whose channel stays full.
		for !c.done() {
			var msg *ibm.ConsumerMessage
			var err error
			select {
			case msg = <-pcs[0].Messages():
			case msg = <-pcs[1].Messages():
			case msg = <-pcs[2].Messages():
			case err = <-pcs[0].Errors():
			case err = <-pcs[1].Errors():
			case err = <-pcs[2].Errors():
			case <-ctx.Done():
				return ctx.Err()
			}
			if err != nil {
				return err
			}
			got := record{Partition: msg.Partition, Offset: msg.Offset, Key: string(msg.Key), Value: string(msg.Value)}
			for _, h := range msg.Headers {
				got.Headers = append(got.Headers, header{string(h.Key), string(h.Value)})
			}
			if err := c.add(got); err != nil {
				return err
			}
		}
		return nil
	},
}
