package txn

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// The records of __transaction_state are Kafka's (TransactionLogKey and
// TransactionLogValue; kmsg.TxnMetadataKey and TxnMetadataValue), so
// Kafka's tools read them and compaction keeps each ID's latest one:
//
//	key (version 0):
//	  int16  version = 0
//	  string transactional ID
//
//	value (version 0; nil: a tombstone, the ID expired):
//	  int16  version
//	  int64  producer ID
//	  int16  producer epoch
//	  int32  transaction timeout, ms
//	  int8   state (Empty 0, Ongoing 1, PrepareCommit 2, PrepareAbort 3,
//	         CompleteCommit 4, CompleteAbort 5; Dead 6 and
//	         PrepareEpochFence 7 are never written)
//	  [topic string, [partition int32]]  the transaction's partitions;
//	         null when Empty, as Kafka writes it
//	  int64  last update, unix ms
//	  int64  transaction start, unix ms (-1: none)
//
//	value (version 1, KIP-915): the same fields in the flexible encoding
//	  (compact strings and arrays, tagged fields), and tag 0, the
//	  previous producer ID.
//
// Version 1 is written only when the previous producer ID differs from the
// current one (after a rotation on an exhausted epoch), so that a retried
// InitProducerId of the old producer is recognized across a move of the
// coordinator; otherwise version 0, which every Kafka since 0.11 reads.
// The epoch before the last InitProducerId is not written (nor is it in
// Kafka). Records are replayed in offset order, the later winning; keys of
// other versions are skipped, as Kafka skips them, and so are values that
// do not parse (with a warning).

// encodeRecord returns tr as the record of transactional ID id; to Dead,
// its tombstone.
func encodeRecord(id string, tr transit) group.Record {
	k := kmsg.TxnMetadataKey{Version: 0, TransactionalID: id}
	rec := group.Record{Key: k.AppendTo(nil)}
	if tr.to == stateDead {
		return rec
	}
	v := kmsg.NewTxnMetadataValue()
	v.ProducerID = tr.producerID
	v.ProducerEpoch = tr.epoch
	v.TimeoutMillis = tr.timeoutMs
	v.State = tr.to
	if tr.to != stateEmpty {
		v.Topics = topicsOf(tr.parts)
	}
	v.LastUpdateTimestamp = tr.lastUpdateMs
	v.StartTimestamp = tr.startMs
	if tr.prevProducerID >= 0 && tr.prevProducerID != tr.producerID {
		v.Version = 1
		v.PreviousProducerID = tr.prevProducerID
	}
	rec.Value = v.AppendTo(nil)
	return rec
}

// topicsOf groups sorted partitions by topic; never nil.
func topicsOf(parts []TopicPartition) []kmsg.TxnMetadataValueTopic {
	out := []kmsg.TxnMetadataValueTopic{}
	for _, tp := range parts {
		if n := len(out); n == 0 || out[n-1].Topic != tp.Topic {
			out = append(out, kmsg.TxnMetadataValueTopic{Topic: tp.Topic})
		}
		last := &out[len(out)-1]
		last.Partitions = append(last.Partitions, tp.Partition)
	}
	return out
}

// decodeRecord parses a record of __transaction_state. skip: not a
// transaction record (another key version). A nil transit with a nil
// error is a tombstone.
func decodeRecord(key, value []byte) (id string, tr *transit, skip bool, err error) {
	if len(key) < 2 || int16(binary.BigEndian.Uint16(key)) != 0 {
		return "", nil, true, nil
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return "", nil, false, fmt.Errorf("key: %w", err)
	}
	if value == nil {
		return k.TransactionalID, nil, false, nil
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return k.TransactionalID, nil, false, fmt.Errorf("value: %w", err)
	}
	switch {
	case v.Version < 0 || v.Version > 1:
		return k.TransactionalID, nil, false, fmt.Errorf("value version %d", v.Version)
	case v.State == stateDead:
		return k.TransactionalID, nil, false, nil
	case v.State < stateEmpty || v.State > stateCompleteAbort:
		return k.TransactionalID, nil, false, fmt.Errorf("state %d", v.State)
	}
	tr = &transit{
		to:             v.State,
		producerID:     v.ProducerID,
		prevProducerID: v.PreviousProducerID,
		epoch:          v.ProducerEpoch,
		lastEpoch:      -1,
		timeoutMs:      v.TimeoutMillis,
		startMs:        v.StartTimestamp,
		lastUpdateMs:   v.LastUpdateTimestamp,
	}
	if v.State != stateEmpty {
		set := make(map[TopicPartition]struct{})
		for _, topic := range v.Topics {
			for _, p := range topic.Partitions {
				set[TopicPartition{topic.Topic, p}] = struct{}{}
			}
		}
		tr.parts = sortedParts(set)
	}
	return k.TransactionalID, tr, false, nil
}

// replayPartition rebuilds the transactional IDs of partition p of
// __transaction_state from everything this broker holds of it, as of
// ownership gen. It returns them with the number of records read.
func (c *Coordinator) replayPartition(p int32, gen uint64) (map[string]*txn, int, error) {
	txns := make(map[string]*txn)
	records, bad := 0, 0
	err := c.stateLog.Read(p, c.stateLog.End(p), func(rec group.LogRecord) {
		if rec.Control {
			return
		}
		records++
		id, tr, skip, err := decodeRecord(rec.Key, rec.Value)
		switch {
		case skip:
		case err != nil:
			bad++
			if bad <= 10 {
				c.log.Warn("skipping an unreadable record of "+StateTopic, "partition", p, "offset", rec.Offset, "transactional_id", id, "err", err)
			}
		case tr == nil:
			delete(txns, id)
		default:
			t := newTxn(id, p, gen)
			t.applyLocked(*tr) // not shared yet
			txns[id] = t
		}
	})
	if bad > 10 {
		c.log.Warn("skipped unreadable records of "+StateTopic, "partition", p, "records", bad)
	}
	return txns, records, err
}
