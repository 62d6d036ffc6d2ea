package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Committed offsets live in the internal topic __consumer_offsets as keyed
// records in Kafka's own formats (kmsg.OffsetCommitKey v1 /
// OffsetCommitValue v3), so compaction keeps the latest per group, topic and
// partition and a nil value is a tombstone. A commit is appended through the
// same partition path as Produce and answered only after the WAL has
// fsynced it; concurrent commits share the WAL's group commit. The in-memory
// map is rebuilt from the topic on start.

const (
	offsetsTopic = "__consumer_offsets"
	// maxOffsetMetadata is Kafka's offset.metadata.max.bytes default.
	maxOffsetMetadata  = 4096
	offsetWriteTimeout = 30 * time.Second
)

type committedOffset struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTime  int64 // unix millis
	logOffset   int64 // where in __consumer_offsets it was written; later wins
}

// offsetEntry is one commit or (deleted) tombstone to write.
type offsetEntry struct {
	tp      topicPart
	value   committedOffset
	deleted bool
}

// offsetLog appends to partition 0 of __consumer_offsets.
type offsetLog struct {
	b *Broker
	t *topic
}

// ensureOffsetsTopic creates __consumer_offsets if it is missing.
func (b *Broker) ensureOffsetsTopic() (*topic, error) {
	if t := b.lookupTopic(offsetsTopic); t != nil {
		return t, nil
	}
	policy := "compact"
	t, err := b.createTopic(offsetsTopic, 1, -1, map[string]*string{"cleanup.policy": &policy}, false)
	if err != nil && kafkaErr(err) == kerr.TopicAlreadyExists {
		return b.lookupTopic(offsetsTopic), nil
	}
	return t, err
}

// encodeOffsetBatch builds one uncompressed v2 record batch of entries.
func encodeOffsetBatch(group string, entries []offsetEntry, nowMillis int64) []byte {
	var records []byte
	var kbuf, vbuf, scratch []byte
	for i, e := range entries {
		k := kmsg.OffsetCommitKey{Version: 1, Group: group, Topic: e.tp.topic, Partition: e.tp.partition}
		kbuf = k.AppendTo(kbuf[:0])
		var val []byte
		if !e.deleted {
			v := kmsg.OffsetCommitValue{Version: 3, Offset: e.value.offset, LeaderEpoch: e.value.leaderEpoch,
				Metadata: e.value.metadata, CommitTimestamp: e.value.commitTime}
			vbuf = v.AppendTo(vbuf[:0])
			val = vbuf
		}
		r := kmsg.Record{OffsetDelta: int32(i), Key: kbuf, Value: val}
		// AppendTo writes Length as given: size the body (after a
		// one-byte zero length) first.
		scratch = r.AppendTo(scratch[:0])
		r.Length = int32(len(scratch) - 1)
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(entries) - 1),
		FirstTimestamp:       nowMillis,
		MaxTimestamp:         nowMillis,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(entries)),
		Records:              records,
	}
	batch := rb.AppendTo(make([]byte, 0, batchHeaderLen+len(records)))
	binary.BigEndian.PutUint32(batch[offBatchLength:], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[offCRC:], crc32.Checksum(batch[offAttributes:], crc32c))
	return batch
}

// write appends entries for group and returns the result to wait on and the
// __consumer_offsets offset of the first entry.
func (l *offsetLog) write(ctx context.Context, group string, entries []offsetEntry) (*appendResult, int64, error) {
	if len(entries) == 0 {
		return closedResult, 0, nil
	}
	p := l.b.partitionOf(l.t, 0)
	if p == nil {
		return nil, 0, kerrf(kerr.CoordinatorNotAvailable, "%s is missing", offsetsTopic)
	}
	batch := encodeOffsetBatch(group, entries, time.Now().UnixMilli())
	out, _ := p.append(ctx, l.b.wal, batch, readBatchHeader(batch), false)
	if out.err != nil {
		return nil, 0, out.err
	}
	return out.wait, out.baseOffset, nil
}

// writeAndWait writes entries and waits until they are durable.
func (l *offsetLog) writeAndWait(ctx context.Context, group string, entries []offsetEntry) error {
	ctx, cancel := context.WithTimeout(ctx, offsetWriteTimeout)
	defer cancel()
	res, _, err := l.write(ctx, group, entries)
	if err != nil {
		return err
	}
	select {
	case <-res.done:
		return res.err
	case <-ctx.Done():
		return kerrf(kerr.RequestTimedOut, "offsets were not durable in time")
	}
}

// applyLocked installs entries written at logBase unless a later write of
// the same partition is already applied.
func (g *group) applyLocked(entries []offsetEntry, logBase int64) {
	for i, e := range entries {
		lo := logBase + int64(i)
		if cur, ok := g.offsets[e.tp]; ok && cur.logOffset > lo {
			continue
		}
		if e.deleted {
			delete(g.offsets, e.tp)
			continue
		}
		v := e.value
		v.logOffset = lo
		g.offsets[e.tp] = v
	}
}

// replayOffsets rebuilds committed offsets from __consumer_offsets. It runs
// in New, before the broker serves.
func (c *coordinator) replayOffsets() error {
	p := c.b.partitionOf(c.offsets.t, 0)
	if p == nil {
		return nil
	}
	_, hw := p.offsets()
	var buf []byte
	records := 0
	for next := int64(0); next < hw; {
		var err error
		buf, err = p.readFrom(c.b.wal, next, 1<<20, buf[:0])
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
			base := batchBaseOffset(batch)
			next = base + int64(h.LastOffsetDelta) + 1
			err := eachBatchRecord(batch, func(off int64, key, value []byte) {
				records++
				c.replayRecord(off, key, value)
			})
			if err != nil {
				c.b.log.Warn("skipping unreadable batch in "+offsetsTopic, "offset", base, "err", err)
			}
		}
	}
	c.b.log.Info("recovered committed offsets", "records", records, "groups", len(c.groups))
	return nil
}

func (c *coordinator) replayRecord(off int64, key, value []byte) {
	if len(key) < 2 {
		return
	}
	if v := int16(binary.BigEndian.Uint16(key)); v != 0 && v != 1 {
		return // group metadata (v2) is not kept: members rejoin after a restart
	}
	var k kmsg.OffsetCommitKey
	if k.ReadFrom(key) != nil {
		return
	}
	g := c.group(k.Group, true)
	tp := topicPart{k.Topic, k.Partition}
	if value == nil {
		g.applyLocked([]offsetEntry{{tp: tp, deleted: true}}, off)
		return
	}
	var v kmsg.OffsetCommitValue
	if v.ReadFrom(value) != nil {
		return
	}
	epoch := v.LeaderEpoch
	if v.Version < 3 {
		epoch = -1
	}
	g.applyLocked([]offsetEntry{{tp: tp, value: committedOffset{offset: v.Offset, leaderEpoch: epoch, metadata: v.Metadata, commitTime: v.CommitTimestamp}}}, off)
	if ts := time.UnixMilli(v.CommitTimestamp); ts.After(g.emptySince) {
		g.emptySince = ts
	}
}

// eachBatchRecord decodes a batch's records (decompressing a copy).
func eachBatchRecord(batch []byte, fn func(offset int64, key, value []byte)) error {
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	raw := batch[batchHeaderLen:]
	if codec := h.Attributes & attrCompressionMask; codec != 0 {
		var err error
		if raw, err = decompressor.Decompress(raw, kgo.CompressionCodecType(codec)); err != nil {
			return err
		}
	}
	for i := int32(0); i < h.NumRecords && len(raw) > 0; i++ {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || int64(len(raw)-n) < l {
			return errors.New("broker: malformed record in batch")
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(raw[:n+int(l)]); err != nil {
			return err
		}
		raw = raw[n+int(l):]
		fn(base+int64(rec.OffsetDelta), rec.Key, rec.Value)
	}
	return nil
}

// expiryLoop expires the offsets of empty groups older than
// offsets.retention.minutes, and forgets empty groups with no offsets.
func (c *coordinator) expiryLoop() {
	defer close(c.expiryDone)
	interval := c.b.cfg.OffsetsRetentionCheckInterval
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stopExpiry:
			return
		case <-t.C:
			c.expireOffsets(time.Now())
		}
	}
}

func (c *coordinator) expireOffsets(now time.Time) {
	retention := c.b.cfg.OffsetsRetention
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if g.activeLocked() {
			g.mu.Unlock()
			continue
		}
		var expired []offsetEntry
		for tp, o := range g.offsets {
			base := time.UnixMilli(o.commitTime)
			if g.emptySince.After(base) {
				base = g.emptySince
			}
			if now.Sub(base) >= retention {
				expired = append(expired, offsetEntry{tp: tp, deleted: true})
			}
		}
		g.mu.Unlock()
		if len(expired) > 0 {
			ctx, cancel := c.b.ctxUntilClose(context.Background())
			res, base, err := c.offsets.write(ctx, g.name, expired)
			cancel()
			if err != nil {
				c.b.log.Warn("expire offsets failed", "group", g.name, "err", err)
				continue
			}
			<-res.done
			if res.err == nil {
				g.mu.Lock()
				g.applyLocked(expired, base)
				g.mu.Unlock()
				c.b.log.Info("expired committed offsets", "group", g.name, "partitions", len(expired))
			}
		}
		c.forgetIfUnused(g)
	}
}

// forgetIfUnused drops an Empty group with no offsets from the coordinator.
func (c *coordinator) forgetIfUnused(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.activeLocked() && len(g.offsets) == 0 && len(g.pending) == 0 && c.groups[g.name] == g {
		g.state = groupDead
		delete(c.groups, g.name)
	}
}

// deleteGroup removes an empty group and tombstones its offsets.
func (c *coordinator) deleteGroup(ctx context.Context, name string) error {
	c.mu.Lock()
	g := c.groups[name]
	if g == nil || c.closed {
		c.mu.Unlock()
		return kerrf(kerr.GroupIDNotFound, "group %q does not exist", name)
	}
	g.mu.Lock()
	if g.activeLocked() {
		n := len(g.members)
		if g.cg != nil {
			n += len(g.cg.members)
		}
		g.mu.Unlock()
		c.mu.Unlock()
		return kerrf(kerr.NonEmptyGroup, "group %q has %d active members", name, n)
	}
	var entries []offsetEntry
	for tp := range g.offsets {
		entries = append(entries, offsetEntry{tp: tp, deleted: true})
	}
	g.stopGroupTimersLocked()
	g.state = groupDead
	delete(c.groups, name)
	g.mu.Unlock()
	c.mu.Unlock()
	return c.offsets.writeAndWait(ctx, name, entries)
}

// startGroups creates __consumer_offsets if needed, rebuilds the committed
// offsets from it and starts offset expiry. It runs in New after WAL
// recovery.
func (b *Broker) startGroups() (*coordinator, error) {
	t, err := b.ensureOffsetsTopic()
	if err != nil {
		return nil, fmt.Errorf("broker: create %s: %w", offsetsTopic, err)
	}
	c := newCoordinator(b)
	c.offsets = &offsetLog{b: b, t: t}
	if err := c.replayOffsets(); err != nil {
		return nil, err
	}
	go c.expiryLoop()
	return c, nil
}
