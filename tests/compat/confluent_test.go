package compat_test

import (
	"context"
	"fmt"
	"testing"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// confluent is confluent-kafka-go (librdkafka, cgo): an idempotent producer
// at acks=all, and a consumer with a group.id (librdkafka requires one) that
// never joins the group: it assigns the partitions itself and commits
// nothing.
var confluent = client{
	name: "confluent",
	produce: func(ctx context.Context, t *testing.T, r run) error {
		p, err := ckafka.NewProducer(&ckafka.ConfigMap{
			"bootstrap.servers":  r.addr,
			"acks":               "all",
			"enable.idempotence": true,
			"compression.type":   r.codec.name,
			"linger.ms":          5,
			"log_level":          4, // warnings and errors only
		})
		if err != nil {
			return err
		}
		defer p.Close()

		// The reader keeps draining delivery reports after a failure:
		// librdkafka's poller blocks on a full channel, and Close waits for it.
		deliveries := make(chan ckafka.Event, 4096)
		errc := make(chan error, 1)
		go func() {
			var first error
			for range r.n {
				var ev ckafka.Event
				select {
				case ev = <-deliveries:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
				if first == nil {
					first = checkDelivery(ev)
				}
			}
			errc <- first
		}()

		for i := range r.n {
			msg := &ckafka.Message{
				TopicPartition: ckafka.TopicPartition{Topic: &r.topic, Partition: partitionOf(i)},
				Key:            key(i),
				Value:          value(i),
				Opaque:         i,
			}
			for _, h := range goHeaders(r, i) {
				msg.Headers = append(msg.Headers, ckafka.Header{Key: h.Key, Value: []byte(h.Value)})
			}
			for {
				err := p.Produce(msg, deliveries)
				if err == nil {
					break
				}
				if kerr, ok := err.(ckafka.Error); !ok || kerr.Code() != ckafka.ErrQueueFull {
					return fmt.Errorf("record %d: %w", i, err)
				}
				// The local queue is full: wait for deliveries to drain it.
				p.Flush(100)
				select {
				case err := <-errc:
					return fmt.Errorf("before record %d was queued: %v", i, err)
				default:
				}
			}
		}
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	},
	consume: func(ctx context.Context, t *testing.T, r run, c *checker) error {
		cons, err := ckafka.NewConsumer(&ckafka.ConfigMap{
			"bootstrap.servers":    r.addr,
			"group.id":             "compat-" + r.topic,
			"enable.auto.commit":   false,
			"enable.partition.eof": false,
			"log_level":            4,
		})
		if err != nil {
			return err
		}
		defer cons.Close()
		var tps []ckafka.TopicPartition
		for p := range int32(partitions) {
			tps = append(tps, ckafka.TopicPartition{Topic: &r.topic, Partition: p, Offset: ckafka.OffsetBeginning})
		}
		if err := cons.Assign(tps); err != nil {
			return err
		}
		for !c.done() {
			if err := ctx.Err(); err != nil {
				return err
			}
			switch ev := cons.Poll(100).(type) {
			case *ckafka.Message:
				if ev.TopicPartition.Error != nil {
					return ev.TopicPartition.Error
				}
				got := record{Partition: ev.TopicPartition.Partition, Offset: int64(ev.TopicPartition.Offset), Key: string(ev.Key), Value: string(ev.Value)}
				for _, h := range ev.Headers {
					got.Headers = append(got.Headers, header{h.Key, string(h.Value)})
				}
				if err := c.add(got); err != nil {
					return err
				}
			case ckafka.Error:
				// librdkafka reports transient conditions (such as a group
				// coordinator it looks up but never needs here) as errors
				// and recovers by itself; only fatal ones end the run.
				if ev.IsFatal() {
					return ev
				}
				t.Logf("librdkafka: %v", ev)
			}
		}
		return nil
	},
}

func checkDelivery(ev ckafka.Event) error {
	m, ok := ev.(*ckafka.Message)
	if !ok {
		return fmt.Errorf("unexpected delivery event %T: %v", ev, ev)
	}
	i := m.Opaque.(int)
	if m.TopicPartition.Error != nil {
		return fmt.Errorf("record %d: %w", i, m.TopicPartition.Error)
	}
	return checkAck(i, m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
}
