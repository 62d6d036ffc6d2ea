package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	// Always broker-local (in a cluster too, see cluster.go): created here,
	// never through the controller.
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if t := b.lookupTopic(offsetsTopic); t != nil {
		return t, nil
	}
	return b.addTopicLocked(offsetsTopic, newTopicID(), 1, map[string]string{"cleanup.policy": "compact"})
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

// applyLocked installs entries written at logBase unless a later write of
// the same partition is already applied.
func (g *group) applyLocked(entries []offsetEntry, logBase int64) {
	for i, e := range entries {
		lo := logBase + int64(i)
		if cur, ok := g.offsets[e.tp]; ok && cur.logOffset > lo {
			continue
		}
		if d, ok := g.deletedAt[e.tp]; ok && d > lo {
			continue
		}
		if e.deleted {
			delete(g.offsets, e.tp)
			if g.inflight[e.tp] > 0 {
				g.deletedAt[e.tp] = lo
			}
			continue
		}
		v := e.value
		v.logOffset = lo
		g.offsets[e.tp] = v
	}
}

// beginInflightLocked records entries as enqueued against g.
func (g *group) beginInflightLocked(entries []offsetEntry) {
	for _, e := range entries {
		g.inflight[e.tp]++
	}
}

// endInflightLocked undoes beginInflightLocked.
func (g *group) endInflightLocked(entries []offsetEntry) {
	for _, e := range entries {
		if g.inflight[e.tp]--; g.inflight[e.tp] <= 0 {
			delete(g.inflight, e.tp)
			delete(g.deletedAt, e.tp)
		}
	}
}

// finishOffsets ends a write of entries that was checked against (and
// registered in-flight on) g0. When durable is set the entries, written at
// base, are applied to the group now registered under g0's name, created
// if needed: g0 may have been replaced since the check. Nothing is applied
// if g0 was deleted by DeleteGroups, whose tombstones were enqueued after
// these entries and cover them.
func (c *coordinator) finishOffsets(g0 *group, entries []offsetEntry, base int64, durable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g0.mu.Lock()
	defer g0.mu.Unlock()
	if durable && !g0.deleted && !c.closed {
		// c.mu is held, so the map cannot change under us and no other
		// goroutine holds two group locks: locking g after g0 is safe.
		g := c.groups[g0.name]
		if g == nil {
			g = c.newGroupLocked(g0.name)
		}
		if g != g0 {
			g.mu.Lock()
		}
		g.applyLocked(entries, base)
		if g != g0 {
			g.mu.Unlock()
		}
	}
	g0.endInflightLocked(entries)
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
	read := func(next int64) ([]byte, error) {
		var err error
		buf, err = p.readFrom(c.b.wal, next, 1<<20, buf[:0])
		return buf, err
	}
	err := scanOffsetBatches(hw, read, func(batch []byte) {
		err := eachBatchRecord(batch, c.offsets.t.inflateLimit(), func(off int64, key, value []byte) {
			records++
			c.replayRecord(off, key, value)
		})
		if err != nil {
			c.b.log.Warn("skipping unreadable batch in "+offsetsTopic, "offset", batchBaseOffset(batch), "err", err)
		}
	})
	if err != nil {
		return err
	}
	c.b.log.Info("recovered committed offsets", "records", records, "groups", len(c.groups))
	return nil
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

// eachBatchRecord decodes a batch's records (decompressing a copy, under
// limit).
func eachBatchRecord(batch []byte, limit int, fn func(offset int64, key, value []byte)) error {
	return eachStoredRecord(batch, limit, func(r *kmsg.Record, off, _ int64) bool {
		fn(off, r.Key, r.Value)
		return true
	})
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
	for _, g := range c.snapshot() {
		c.expireGroup(g, now)
		c.forgetIfUnused(g)
	}
}

// expireGroup tombstones g's expired offsets. The choice and the enqueue
// are made under the group's append lock, so a commit either is applied
// before the choice (and seen by it) or is ordered after the tombstones.
func (c *coordinator) expireGroup(g *group, now time.Time) {
	retention := c.b.cfg.OffsetsRetention
	al := c.appendLock(g.name)
	al.Lock()
	g.mu.Lock()
	if g.state == groupDead || g.activeLocked() || len(g.inflight) > 0 {
		// Dead: replaced or deleted. In flight: a commit not yet
		// applied could be the one we would tombstone; retry later.
		g.mu.Unlock()
		al.Unlock()
		return
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
	g.beginInflightLocked(expired)
	g.mu.Unlock()
	if len(expired) == 0 {
		al.Unlock()
		return
	}
	ctx, cancel := c.b.ctxUntilClose(context.Background())
	res, base, err := c.offsets.write(ctx, g.name, expired)
	cancel()
	al.Unlock()
	if err != nil {
		c.finishOffsets(g, expired, 0, false)
		c.b.log.Warn("expire offsets failed", "group", g.name, "err", err)
		return
	}
	<-res.done
	c.finishOffsets(g, expired, base, res.err == nil)
	if res.err == nil {
		c.b.log.Info("expired committed offsets", "group", g.name, "partitions", len(expired))
	}
}

// forgetIfUnused drops an Empty group with no offsets from the coordinator.
func (c *coordinator) forgetIfUnused(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropExpiredPendingLocked(time.Now())
	if !g.activeLocked() && len(g.offsets) == 0 && len(g.pending) == 0 && len(g.inflight) == 0 && c.groups[g.name] == g {
		g.state = groupDead
		delete(c.groups, g.name)
	}
}

// deleteGroup removes an empty group and tombstones its offsets. The check,
// the removal and the enqueue of the tombstones happen under the group's
// append lock, so a commit that recreates the group is ordered after the
// tombstones, and the tombstones cover every commit enqueued before them.
func (c *coordinator) deleteGroup(ctx context.Context, name string) error {
	al := c.appendLock(name)
	al.Lock()
	c.mu.Lock()
	g := c.groups[name]
	if g == nil || c.closed {
		c.mu.Unlock()
		al.Unlock()
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
		al.Unlock()
		return kerrf(kerr.NonEmptyGroup, "group %q has %d active members", name, n)
	}
	var entries []offsetEntry
	for tp := range g.offsets {
		entries = append(entries, offsetEntry{tp: tp, deleted: true})
	}
	for tp := range g.inflight {
		// Enqueued (before us) but not applied yet: tombstone it too.
		if _, ok := g.offsets[tp]; !ok {
			entries = append(entries, offsetEntry{tp: tp, deleted: true})
		}
	}
	g.stopGroupTimersLocked()
	g.state = groupDead
	g.deleted = true
	delete(c.groups, name)
	g.mu.Unlock()
	c.mu.Unlock()
	// No commit for name can be checked until al is released, so one that
	// recreates the group is enqueued after these tombstones.
	ctx, cancel := context.WithTimeout(ctx, offsetWriteTimeout)
	defer cancel()
	res, _, err := c.offsets.write(ctx, name, entries)
	al.Unlock()
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
