package txn

import (
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// maxConcurrentAdds bounds the transactions of one v4+ AddPartitionsToTxn
// served at once.
const maxConcurrentAdds = 16

// AddPartitionsToTxn: v0-5
//
// Behavior:
//   - v0-3: one transaction, from a producer. A partition of a topic
//     mayWrite refuses, or of an internal topic, is
//     TOPIC_AUTHORIZATION_FAILED; of an unknown topic or partition,
//     UNKNOWN_TOPIC_OR_PARTITION; if any is, the others are
//     OPERATION_NOT_ATTEMPTED and nothing is added. The caller checks WRITE
//     on the transactional ID.
//   - v4+: batched transactions from partition leaders (the caller checks
//     CLUSTER_ACTION); mayWrite is not asked. VerifyOnly (KIP-890 part 1)
//     adds nothing: a partition in the ongoing transaction is NONE, one not
//     in it INVALID_TXN_STATE on v4 (as Kafka 3.6 and 3.7 answer) and
//     TRANSACTION_ABORTABLE on v5, the version that adds the code (Kafka
//     3.8+; the leader answers INVALID_TXN_STATE to Produce below v11).
//   - Adding partitions all in the ongoing transaction is answered without
//     a write. Otherwise the transaction becomes Ongoing (starting its
//     timeout if it was not) once the record is durable.
//   - Unknown transactional ID or another producer ID:
//     INVALID_PRODUCER_ID_MAPPING; another epoch: PRODUCER_FENCED
//     (INVALID_PRODUCER_EPOCH below v2); while the transaction is being
//     ended or changed: CONCURRENT_TRANSACTIONS.
func (c *Coordinator) AddPartitionsToTxn(ctx context.Context, r *kmsg.AddPartitionsToTxnRequest, mayWrite func(topic string) bool) *kmsg.AddPartitionsToTxnResponse {
	resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if r.Version < 4 {
		topics := make([]reqTopic, len(r.Topics))
		for i, t := range r.Topics {
			topics[i] = reqTopic{t.Topic, t.Partitions}
		}
		for _, tr := range c.addTxnPartitions(ctx, r.Version, r.TransactionalID, r.ProducerID, r.ProducerEpoch, false, topics, mayWrite) {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = tr.topic
			for _, pr := range tr.parts {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = pr.partition, pr.code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	resp.Transactions = make([]kmsg.AddPartitionsToTxnResponseTransaction, len(r.Transactions))
	sem := make(chan struct{}, maxConcurrentAdds)
	var wg sync.WaitGroup
	for i := range r.Transactions {
		rt := &r.Transactions[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			topics := make([]reqTopic, len(rt.Topics))
			for j, t := range rt.Topics {
				topics[j] = reqTopic{t.Topic, t.Partitions}
			}
			out := kmsg.NewAddPartitionsToTxnResponseTransaction()
			out.TransactionalID = rt.TransactionalID
			for _, tr := range c.addTxnPartitions(ctx, r.Version, rt.TransactionalID, rt.ProducerID, rt.ProducerEpoch, rt.VerifyOnly, topics, nil) {
				ot := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
				ot.Topic = tr.topic
				for _, pr := range tr.parts {
					op := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
					op.Partition, op.ErrorCode = pr.partition, pr.code
					ot.Partitions = append(ot.Partitions, op)
				}
				out.Topics = append(out.Topics, ot)
			}
			resp.Transactions[i] = out
		})
	}
	wg.Wait()
	return resp
}

type reqTopic struct {
	topic      string
	partitions []int32
}

type topicResult struct {
	topic string
	parts []partResult
}

type partResult struct {
	partition int32
	code      int16
}

// addTxnPartitions serves one transaction of an AddPartitionsToTxn and
// returns a code for each of its partitions (duplicates once), in request
// order.
func (c *Coordinator) addTxnPartitions(ctx context.Context, version int16, id string, producerID int64, epoch int16, verifyOnly bool, topics []reqTopic, mayWrite func(string) bool) []topicResult {
	var parts []TopicPartition
	codes := make(map[TopicPartition]int16)
	seen := make(map[TopicPartition]bool)
	for _, t := range topics {
		for _, p := range t.partitions {
			if tp := (TopicPartition{t.topic, p}); !seen[tp] {
				seen[tp] = true
				parts = append(parts, tp)
			}
		}
	}
	writable := make(map[string]bool)
	failed := false
	for _, tp := range parts {
		ok, asked := writable[tp.Topic]
		if !asked {
			ok = version >= 4 || (!internal(tp.Topic) && (mayWrite == nil || mayWrite(tp.Topic)))
			writable[tp.Topic] = ok
		}
		switch {
		case !ok:
			codes[tp], failed = kerr.TopicAuthorizationFailed.Code, true
		case tp.Partition < 0 || tp.Partition >= c.topics.Partitions(tp.Topic):
			codes[tp], failed = kerr.UnknownTopicOrPartition.Code, true
		}
	}
	switch {
	case failed:
		for _, tp := range parts {
			if _, ok := codes[tp]; !ok {
				codes[tp] = kerr.OperationNotAttempted.Code
			}
		}
	case verifyOnly:
		for _, tp := range parts {
			err := c.Verify(id, producerID, epoch, tp)
			if version < 5 && errors.Is(err, kerr.TransactionAbortable) {
				err = kerr.InvalidTxnState
			}
			codes[tp] = errCode(err, version, 2)
		}
	default:
		code := errCode(c.addPartitions(ctx, id, producerID, epoch, parts), version, 2)
		for _, tp := range parts {
			codes[tp] = code
		}
	}

	var out []topicResult
	index := make(map[string]int)
	for _, tp := range parts {
		i, ok := index[tp.Topic]
		if !ok {
			i = len(out)
			index[tp.Topic] = i
			out = append(out, topicResult{topic: tp.Topic})
		}
		out[i].parts = append(out[i].parts, partResult{tp.Partition, codes[tp]})
	}
	return out
}

// internal: a topic no producer adds to a transaction itself (Kafka
// refuses them as unauthorized): offsets go through AddOffsetsToTxn.
func internal(topic string) bool {
	return topic == group.OffsetsTopic || topic == StateTopic
}

// AddOffsetsToTxn: v0-4
//
// Behavior:
//   - Adds offsetsPartition, the group's partition of __consumer_offsets
//     (computed by the caller), to the transaction, as AddPartitionsToTxn
//     adds a partition, with its errors (INVALID_PRODUCER_EPOCH for
//     PRODUCER_FENCED below v2). The caller checks WRITE on the
//     transactional ID and READ on the group.
func (c *Coordinator) AddOffsetsToTxn(ctx context.Context, r *kmsg.AddOffsetsToTxnRequest, offsetsPartition TopicPartition) *kmsg.AddOffsetsToTxnResponse {
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	err := c.addPartitions(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, []TopicPartition{offsetsPartition})
	if err != nil {
		c.log.Debug("AddOffsetsToTxn refused", "transactional_id", r.TransactionalID, "group", r.Group, "err", err)
	}
	resp.ErrorCode = errCode(err, r.Version, 2)
	return resp
}

// addPartitions adds parts to the transaction of id, which becomes
// Ongoing.
func (c *Coordinator) addPartitions(ctx context.Context, id string, producerID int64, epoch int16, parts []TopicPartition) error {
	if id == "" {
		return errorf(kerr.InvalidRequest, "empty transactional ID")
	}
	t, err := c.lookup(id)
	if err != nil {
		return err
	}
	if t == nil {
		return errorf(kerr.InvalidProducerIDMapping, "unknown transactional ID %q", id)
	}
	t.mu.Lock()
	tr, noop, err := t.addLocked(producerID, epoch, parts, nowMillis())
	t.mu.Unlock()
	if err != nil || noop {
		return err
	}
	return c.commit(ctx, t, tr, false)
}

// Verify is KIP-890 part 1's check by a partition leader, before it
// appends a transactional batch of producerID at epoch to tp, that tp is in
// transactionalID's ongoing transaction. It returns nil, or an *Error
// whose code is TRANSACTION_ABORTABLE (not in it: Kafka's leader answers
// INVALID_TXN_STATE to Produce below v11), PRODUCER_FENCED (the leader
// answers INVALID_PRODUCER_EPOCH), INVALID_PRODUCER_ID_MAPPING,
// CONCURRENT_TRANSACTIONS (being ended), INVALID_REQUEST (empty ID), or
// why this coordinator does not serve the ID (NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE).
func (c *Coordinator) Verify(transactionalID string, producerID int64, epoch int16, tp TopicPartition) error {
	if transactionalID == "" {
		return errorf(kerr.InvalidRequest, "empty transactional ID")
	}
	t, err := c.lookup(transactionalID)
	if err != nil {
		return err
	}
	if t == nil {
		return errorf(kerr.InvalidProducerIDMapping, "unknown transactional ID %q", transactionalID)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.verifyLocked(producerID, epoch, tp)
}
