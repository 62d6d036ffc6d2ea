package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// The broker's side of the group coordinator (package group): offsetsLog
// is __consumer_offsets as group.Log, topicsView the data topics as
// group.Topics.

const offsetsTopic = group.OffsetsTopic

// offsetsLog implements group.Log over the local partitions of
// __consumer_offsets (or of topic, another internal topic of the same
// shape, e.g. __transaction_state): appends go through the produce path
// (sharing WAL group commits) and, in a cluster, count once the high
// watermark covers them.
type offsetsLog struct {
	b     *Broker
	topic string // "": __consumer_offsets
}

func (l offsetsLog) name() string {
	if l.topic == "" {
		return offsetsTopic
	}
	return l.topic
}

func (l offsetsLog) partition(p int32) *partition {
	return l.b.partitionOf(l.b.lookupTopic(l.name()), p)
}

func (l offsetsLog) Partitions() int {
	t := l.b.lookupTopic(l.name())
	if t == nil {
		return 0
	}
	return l.b.topicPartitionCount(t)
}

func (l offsetsLog) End(p int32) int64 {
	if pp := l.partition(p); pp != nil {
		return pp.localEnd()
	}
	return 0
}

func (l offsetsLog) Read(p int32, end int64, fn func(group.LogRecord)) error {
	pp := l.partition(p)
	if pp == nil {
		return nil
	}
	var buf []byte
	read := func(next int64) ([]byte, error) {
		var err error
		buf, err = pp.readFrom(l.b.wal, next, 1<<20, buf[:0])
		return buf, err
	}
	return scanOffsetBatches(end, read, func(batch []byte) {
		if err := eachBatchRecord(batch, pp.topic.inflateLimit(), fn); err != nil {
			l.b.log.Warn("skipping unreadable batch in "+l.name(), "partition", p, "offset", batchBaseOffset(batch), "err", err)
		}
	})
}

// Append writes records as one batch to partition p. In a cluster this
// broker must lead p, with enough in-sync replicas.
func (l offsetsLog) Append(ctx context.Context, p int32, records []group.Record) (group.Write, error) {
	return l.append(ctx, p, encodeRecordBatch(records, time.Now().UnixMilli()), len(records))
}

// AppendTxn writes records as one transactional batch of producerID at
// epoch, with no sequence (the partition takes a transactional batch of
// sequence -1 without a sequence check), to partition p.
func (l offsetsLog) AppendTxn(ctx context.Context, p int32, producerID int64, epoch int16, records []group.Record) (group.Write, error) {
	return l.append(ctx, p, encodeBatch(records, time.Now().UnixMilli(), producerID, epoch, attrTransactional), len(records))
}

func (l offsetsLog) append(ctx context.Context, p int32, batch []byte, records int) (group.Write, error) {
	pp := l.partition(p)
	if pp == nil {
		return nil, kerrf(kerr.CoordinatorNotAvailable, "%s partition %d is missing", l.name(), p)
	}
	epoch, isr, minISR, replicated, leads := pp.leadershipForProduce()
	if replicated && !leads {
		return nil, kerrf(kerr.NotCoordinator, "this broker no longer leads %s partition %d", l.name(), p)
	}
	if replicated && isr < minISR {
		return nil, kerrf(kerr.NotEnoughReplicas, "%s partition %d has %d in-sync replicas, min.insync.replicas is %d", l.name(), p, isr, minISR)
	}
	out, _ := pp.append(ctx, l.b.wal, batch, readBatchHeader(batch), false)
	if out.err != nil {
		return nil, out.err
	}
	return &offsetWrite{res: out.wait, base: out.baseOffset, p: pp, end: out.baseOffset + int64(records), epoch: epoch, replicated: replicated}, nil
}

// topicsView implements group.Topics over the broker's topics.
type topicsView struct {
	b *Broker
}

func (v topicsView) Partitions(name string) int32 {
	t := v.b.lookupTopic(name)
	if t == nil {
		return 0
	}
	return int32(v.b.topicPartitionCount(t))
}

func (v topicsView) ID(name string) ([16]byte, bool) {
	if t := v.b.lookupTopic(name); t != nil {
		return t.id, true
	}
	return [16]byte{}, false
}

func (v topicsView) Name(id [16]byte) (string, bool) {
	if t := v.b.lookupTopicID(id); t != nil {
		return t.name, true
	}
	return "", false
}

func (v topicsView) Names() []string {
	ts := v.b.snapshotTopics()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.name
	}
	return out
}

// ensureOffsetsTopic creates the standalone broker's __consumer_offsets if
// it is missing, with offsets.topic.num.partitions partitions, so that a
// standalone broker grown into a cluster keeps Kafka's coordinator rule. A
// data directory of an earlier release keeps the partition count it has.
func (b *Broker) ensureOffsetsTopic() (*topic, error) {
	if t := b.lookupTopic(offsetsTopic); t != nil {
		return t, nil
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if t := b.lookupTopic(offsetsTopic); t != nil {
		return t, nil
	}
	return b.addTopicLocked(offsetsTopic, newTopicID(), b.offsetsTopicPartitions(), offsetsTopicConfigs())
}

// offsetsTopicConfigs are the configs __consumer_offsets is created with:
// compacted, as in Kafka, with Kafka's offsets.topic.segment.bytes.
func offsetsTopicConfigs() map[string]string {
	return map[string]string{"cleanup.policy": "compact", "segment.bytes": "104857600"}
}

func (b *Broker) offsetsTopicPartitions() int32 {
	if n := b.cfg.OffsetsTopicNumPartitions; n > 0 {
		return n
	}
	return 50
}

// encodeRecordBatch builds one uncompressed v2 record batch of records.
func encodeRecordBatch(recs []group.Record, nowMillis int64) []byte {
	return encodeBatch(recs, nowMillis, -1, -1, 0)
}

// encodeBatch builds one uncompressed v2 record batch of records, of
// producerID at epoch (-1: none) with attributes attrs; its base sequence
// is -1.
func encodeBatch(recs []group.Record, nowMillis, producerID int64, epoch int16, attrs int16) []byte {
	var records, scratch []byte
	for i, rec := range recs {
		r := kmsg.Record{OffsetDelta: int32(i), Key: rec.Key, Value: rec.Value}
		// AppendTo writes Length as given: size the body (after a
		// one-byte zero length) first.
		scratch = r.AppendTo(scratch[:0])
		r.Length = int32(len(scratch) - 1)
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       nowMillis,
		MaxTimestamp:         nowMillis,
		ProducerID:           producerID,
		ProducerEpoch:        epoch,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
		Records:              records,
	}
	batch := rb.AppendTo(make([]byte, 0, batchHeaderLen+len(records)))
	binary.BigEndian.PutUint32(batch[offBatchLength:], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[offCRC:], crc32.Checksum(batch[offAttributes:], crc32c))
	return batch
}

// offsetWrite is an append to __consumer_offsets on its way to
// durability.
type offsetWrite struct {
	res  *appendResult
	base int64 // the __consumer_offsets offset of the first entry
	// replicated: in a cluster the write counts once the partition's high
	// watermark reaches end under the leader epoch it was written in.
	p          *partition
	end        int64
	epoch      int32
	replicated bool
}

func (w *offsetWrite) Base() int64 { return w.base }

// Wait waits until w is durable: fsynced, and in a cluster replicated to
// min.insync.replicas. It fails when leadership of the partition moves.
func (w *offsetWrite) Wait(ctx context.Context) error {
	select {
	case <-w.res.done:
	case <-ctx.Done():
		return kerrf(kerr.RequestTimedOut, "offsets were not durable in time")
	}
	if w.res.err != nil {
		return w.res.err
	}
	if !w.replicated {
		return nil
	}
	return w.p.replicationWait(ctx, w.end, w.epoch)
}

// scanOffsetBatches calls fn for each record batch read (by read, from an
// offset) below hw. A read that yields no whole batch advancing past the
// offset asked for is an error, never a retry of the same offset.
func scanOffsetBatches(hw int64, read func(next int64) ([]byte, error), fn func(batch []byte)) error {
	for next := int64(0); next < hw; {
		start := next
		buf, err := read(next)
		if err != nil {
			return fmt.Errorf("broker: read %s: %w", offsetsTopic, err)
		}
		if len(buf) == 0 {
			break
		}
		for rest := buf; len(rest) >= batchHeaderLen; {
			n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
			if n < batchHeaderLen || n > len(rest) {
				break
			}
			batch := rest[:n]
			rest = rest[n:]
			h := readBatchHeader(batch)
			next = max(next, batchBaseOffset(batch)+int64(h.LastOffsetDelta)+1)
			fn(batch)
		}
		if next <= start {
			return fmt.Errorf("broker: read %s: no valid record batch at offset %d", offsetsTopic, start)
		}
	}
	return nil
}

// eachBatchRecord decodes a batch's records (decompressing a copy, under
// limit), each with its batch's producer and transactional and control
// bits.
func eachBatchRecord(batch []byte, limit int, fn func(group.LogRecord)) error {
	if len(batch) < batchHeaderLen {
		return errors.New("broker: short record batch")
	}
	h := readBatchHeader(batch)
	return eachStoredRecord(batch, limit, func(r *kmsg.Record, off, _ int64) bool {
		fn(group.LogRecord{Offset: off, Key: r.Key, Value: r.Value, ProducerID: h.ProducerID,
			Transactional: h.Attributes&attrTransactional != 0, Control: h.Attributes&attrControl != 0})
		return true
	})
}

// startGroups starts the group coordinator; it runs in New after WAL
// recovery. Standalone, the broker coordinates every group: it creates
// __consumer_offsets if needed and the coordinator rebuilds every group's
// committed offsets from it now. In a cluster it coordinates the groups of
// the partitions of __consumer_offsets it leads, loaded as the controller
// hands them to it (syncCoordinator).
func (b *Broker) startGroups() (*group.Coordinator, error) {
	if b.cfg.Cluster == nil {
		if _, err := b.ensureOffsetsTopic(); err != nil {
			return nil, fmt.Errorf("broker: create %s: %w", offsetsTopic, err)
		}
	}
	cfg := b.cfg
	return group.New(group.Config{
		Cluster:                        cfg.Cluster != nil,
		GroupMinSessionTimeout:         cfg.GroupMinSessionTimeout,
		GroupMaxSessionTimeout:         cfg.GroupMaxSessionTimeout,
		GroupInitialRebalanceDelay:     cfg.GroupInitialRebalanceDelay,
		ConsumerGroupHeartbeatInterval: cfg.ConsumerGroupHeartbeatInterval,
		ConsumerGroupSessionTimeout:    cfg.ConsumerGroupSessionTimeout,
		OffsetsRetention:               cfg.OffsetsRetention,
		OffsetsRetentionCheckInterval:  cfg.OffsetsRetentionCheckInterval,
		Logger:                         b.log,
	}, offsetsLog{b: b}, topicsView{b})
}
