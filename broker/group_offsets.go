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

// offsetLog writes a group's records to its partition of
// __consumer_offsets: abs(javaStringHash(group)) % partitions, as Kafka.
type offsetLog struct {
	b *Broker
}

// topic returns the local __consumer_offsets, or nil.
func (l *offsetLog) topic() *topic { return l.b.lookupTopic(offsetsTopic) }

// partitionFor returns group's partition of __consumer_offsets, or nil when
// the topic is missing.
func (l *offsetLog) partitionFor(group string) *partition {
	t := l.topic()
	if t == nil {
		return nil
	}
	n := l.b.topicPartitionCount(t)
	if n == 0 {
		return nil
	}
	return l.b.partitionOf(t, offsetsPartition(group, n))
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

// wait waits until w is durable: fsynced, and in a cluster replicated to
// min.insync.replicas. It fails when leadership of the partition moves.
func (w *offsetWrite) wait(ctx context.Context) error {
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

// write appends entries for group to its partition of __consumer_offsets.
// In a cluster this broker must lead the partition, with enough in-sync
// replicas.
func (l *offsetLog) write(ctx context.Context, group string, entries []offsetEntry) (*offsetWrite, error) {
	if len(entries) == 0 {
		return &offsetWrite{res: closedResult}, nil
	}
	p := l.partitionFor(group)
	if p == nil {
		return nil, kerrf(kerr.CoordinatorNotAvailable, "%s is missing", offsetsTopic)
	}
	epoch, isr, minISR, replicated, leads := p.leadershipForProduce()
	if replicated && !leads {
		return nil, kerrf(kerr.NotCoordinator, "this broker no longer leads %s partition %d", offsetsTopic, p.index)
	}
	if replicated && isr < minISR {
		return nil, kerrf(kerr.NotEnoughReplicas, "%s partition %d has %d in-sync replicas, min.insync.replicas is %d", offsetsTopic, p.index, isr, minISR)
	}
	batch := encodeOffsetBatch(group, entries, time.Now().UnixMilli())
	out, _ := p.append(ctx, l.b.wal, batch, readBatchHeader(batch), false)
	if out.err != nil {
		return nil, out.err
	}
	return &offsetWrite{res: out.wait, base: out.baseOffset, p: p, end: out.baseOffset + int64(len(entries)), epoch: epoch, replicated: replicated}, nil
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
	if durable && !g0.deleted && !c.closed && c.ownsLocked(g0.part, g0.gen) {
		// c.mu is held, so the map cannot change under us and no other
		// goroutine holds two group locks: locking g after g0 is safe.
		// Not owned any more (leadership of the partition moved): the
		// new coordinator loads the entries from the log.
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

// replayPartition rebuilds the groups whose offsets live in partition p of
// __consumer_offsets, reading everything this broker holds of it, into
// groups (by name). It returns the number of records read.
func (c *coordinator) replayPartition(p *partition, groups map[string]*group) (int, error) {
	end := p.localEnd()
	var buf []byte
	records := 0
	read := func(next int64) ([]byte, error) {
		var err error
		buf, err = p.readFrom(c.b.wal, next, 1<<20, buf[:0])
		return buf, err
	}
	get := func(name string) *group {
		g := groups[name]
		if g == nil {
			g = c.newGroup(name)
			groups[name] = g
		}
		return g
	}
	err := scanOffsetBatches(end, read, func(batch []byte) {
		err := eachBatchRecord(batch, p.topic.inflateLimit(), func(off int64, key, value []byte) {
			records++
			replayRecord(get, off, key, value)
		})
		if err != nil {
			c.b.log.Warn("skipping unreadable batch in "+offsetsTopic, "partition", p.index, "offset", batchBaseOffset(batch), "err", err)
		}
	})
	return records, err
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

// replayRecord applies one __consumer_offsets record to the group get
// returns (created if needed).
func replayRecord(get func(name string) *group, off int64, key, value []byte) {
	if len(key) < 2 {
		return
	}
	if v := int16(binary.BigEndian.Uint16(key)); v != 0 && v != 1 {
		return // group metadata (v2) is not kept: members rejoin after a move or a restart
	}
	var k kmsg.OffsetCommitKey
	if k.ReadFrom(key) != nil {
		return
	}
	g := get(k.Group)
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

// expireGroup tombstones g's expired offsets. The choice is made in the
// check of appendOffsets, so a commit either is applied before the choice
// (and seen by it) or is ordered after the tombstones.
func (c *coordinator) expireGroup(g *group, now time.Time) {
	retention := c.b.cfg.OffsetsRetention
	check := func() (*group, []offsetEntry, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.state == groupDead || g.activeLocked() || len(g.inflight) > 0 {
			// Dead: replaced, deleted or unloaded. In flight: a commit
			// not yet applied could be the one we would tombstone;
			// retry later.
			return g, nil, nil
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
		return g, expired, nil
	}
	ctx, cancel := c.b.ctxUntilClose(context.Background())
	defer cancel()
	w, n, err := c.appendOffsets(ctx, g.name, check)
	if err == nil {
		err = w.wait(ctx)
	}
	switch {
	case err != nil:
		c.b.log.Warn("expire offsets failed", "group", g.name, "err", err)
	case n > 0:
		c.b.log.Info("expired committed offsets", "group", g.name, "partitions", n)
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
// the removal and the enqueue of the tombstones are the check and enqueue
// of appendOffsets, so a commit that recreates the group is ordered after
// the tombstones, and the tombstones cover every commit enqueued before
// them.
func (c *coordinator) deleteGroup(ctx context.Context, name string) error {
	check := func() (*group, []offsetEntry, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		g := c.groups[name]
		if g == nil || c.closed {
			return nil, nil, kerrf(kerr.GroupIDNotFound, "group %q does not exist", name)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.activeLocked() {
			n := len(g.members)
			if g.cg != nil {
				n += len(g.cg.members)
			}
			return nil, nil, kerrf(kerr.NonEmptyGroup, "group %q has %d active members", name, n)
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
		g.beginInflightLocked(entries)
		return g, entries, nil
	}
	ctx, cancel := context.WithTimeout(ctx, offsetWriteTimeout)
	defer cancel()
	w, _, err := c.appendOffsets(ctx, name, check)
	if err != nil {
		return err
	}
	return w.wait(ctx)
}

// pendingOffsets is a __consumer_offsets write whose entries are applied
// to their group once durable, whether or not anyone waits for it.
type pendingOffsets struct {
	applied chan struct{}
	err     error // set before applied is closed
}

var appliedOffsets = func() *pendingOffsets {
	w := &pendingOffsets{applied: make(chan struct{})}
	close(w.applied)
	return w
}()

// wait waits until the write is applied (or failed) and returns its error.
func (w *pendingOffsets) wait(ctx context.Context) error {
	select {
	case <-w.applied:
		return w.err
	case <-ctx.Done():
		return kerrf(kerr.RequestTimedOut, "offsets were not durable in time")
	}
}

// appendOffsets is the one way committed offsets are written: commits,
// OffsetDelete, DeleteGroups and expiry all go through it. Under the
// group's append lock (coordinator.appendLocks) it runs check, which
// validates the request against the group and returns the group the
// entries were registered in flight on (beginInflightLocked) and the
// entries, and enqueues them to the group's partition of
// __consumer_offsets; so the log order of a group's writes is the order of
// their checks. The wait for durability (fsync, and replication in a
// cluster) is not under the lock: a goroutine applies the entries once
// durable, so they are applied even if the caller is gone. It returns the
// number of entries written.
func (c *coordinator) appendOffsets(ctx context.Context, name string, check func() (*group, []offsetEntry, error)) (*pendingOffsets, int, error) {
	al := c.appendLock(name)
	al.Lock()
	g, entries, cerr := check()
	if cerr != nil {
		al.Unlock()
		return nil, 0, cerr
	}
	if len(entries) == 0 {
		al.Unlock()
		if g != nil {
			c.finishOffsets(g, nil, 0, false)
		}
		return appliedOffsets, 0, nil
	}
	ow, err := c.offsets.write(ctx, name, entries)
	al.Unlock()
	if err != nil {
		c.finishOffsets(g, entries, 0, false)
		return nil, 0, err
	}
	w := &pendingOffsets{applied: make(chan struct{})}
	go func() {
		wctx, cancel := c.b.ctxUntilClose(context.Background())
		wctx, cancelTimeout := context.WithTimeout(wctx, offsetWriteTimeout)
		err := ow.wait(wctx)
		cancelTimeout()
		cancel()
		c.finishOffsets(g, entries, ow.base, err == nil)
		w.err = err
		close(w.applied)
	}()
	return w, len(entries), nil
}

// startGroups starts the group coordinator; it runs in New after WAL
// recovery. Standalone, the broker coordinates every group: it creates
// __consumer_offsets if needed and rebuilds every group's committed offsets
// from it now. In a cluster it coordinates the groups of the partitions of
// __consumer_offsets it leads, loaded as the controller hands them to it
// (syncCoordinator).
func (b *Broker) startGroups() (*coordinator, error) {
	c := newCoordinator(b)
	c.offsets = &offsetLog{b: b}
	if b.cfg.Cluster == nil {
		t, err := b.ensureOffsetsTopic()
		if err != nil {
			return nil, fmt.Errorf("broker: create %s: %w", offsetsTopic, err)
		}
		records := 0
		b.mu.RLock()
		parts := t.partitions
		b.mu.RUnlock()
		for _, p := range parts {
			n, err := c.replayPartition(p, c.groups)
			if err != nil {
				return nil, err
			}
			records += n
		}
		b.log.Info("recovered committed offsets", "records", records, "groups", len(c.groups))
	}
	go c.expiryLoop()
	return c, nil
}
