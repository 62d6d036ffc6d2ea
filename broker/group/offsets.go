package group

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Committed offsets live in the internal topic __consumer_offsets as keyed
// records in Kafka's own formats (kmsg.OffsetCommitKey v1 /
// OffsetCommitValue v3), so compaction keeps the latest per group, topic and
// partition and a nil value is a tombstone. A write is answered only once
// the Log says it is durable. The in-memory map is rebuilt from the log
// when the coordinator starts (standalone) or takes up a partition.

const (
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

// offsetEntry is one commit or (deleted) tombstone to write; or, with
// metaKey set, the tombstone of the group's membership record of that key
// version (DeleteGroups), which carries no offset.
type offsetEntry struct {
	tp      topicPart
	value   committedOffset
	deleted bool
	metaKey int16
	member  string // of a consumerMemberKeyVersion tombstone
}

// write appends entries for group to its partition of __consumer_offsets.
func (c *Coordinator) write(ctx context.Context, group string, entries []offsetEntry) (Write, error) {
	p := c.partitionOf(group)
	if p < 0 {
		return nil, errorf(kerr.CoordinatorNotAvailable, "%s is missing", OffsetsTopic)
	}
	return c.olog.Append(ctx, p, encodeOffsets(group, entries, time.Now().UnixMilli()))
}

// encodeOffsets returns entries as records: kmsg.OffsetCommitKey v1 and
// OffsetCommitValue v3, or a nil value for a tombstone.
func encodeOffsets(group string, entries []offsetEntry, nowMillis int64) []Record {
	out := make([]Record, len(entries))
	for i, e := range entries {
		if e.metaKey == consumerMemberKeyVersion {
			out[i] = Record{Key: memberKey(group, e.member)}
			continue
		}
		if e.metaKey != 0 {
			out[i] = metadataTombstone(group, e.metaKey)
			continue
		}
		k := kmsg.OffsetCommitKey{Version: 1, Group: group, Topic: e.tp.topic, Partition: e.tp.partition}
		out[i].Key = k.AppendTo(nil)
		if !e.deleted {
			commitTime := e.value.commitTime
			if commitTime == 0 {
				commitTime = nowMillis
			}
			v := kmsg.OffsetCommitValue{Version: 3, Offset: e.value.offset, LeaderEpoch: e.value.leaderEpoch,
				Metadata: e.value.metadata, CommitTimestamp: commitTime}
			out[i].Value = v.AppendTo(nil)
		}
	}
	return out
}

// applyLocked installs entries written at logBase unless a later write of
// the same partition is already applied.
func (g *group) applyLocked(entries []offsetEntry, logBase int64) {
	for i, e := range entries {
		if e.metaKey == 0 {
			g.applyOffsetLocked(e, logBase+int64(i))
		}
	}
}

// applyOffsetLocked installs one commit or tombstone written at log offset
// lo unless a later write of its partition is already applied. A
// tombstone also drops the partition's transactional offsets pending from
// before it, as Kafka's replay does, and is remembered while writes of the
// partition are in flight so that none written before it is applied
// after it.
func (g *group) applyOffsetLocked(e offsetEntry, lo int64) {
	if e.deleted {
		g.dropTxnOffsetsLocked(e.tp, lo)
		if d, ok := g.deletedAt[e.tp]; g.inflight[e.tp] > 0 && (!ok || d < lo) {
			g.deletedAt[e.tp] = lo
		}
		if cur, ok := g.offsets[e.tp]; ok && cur.logOffset < lo {
			delete(g.offsets, e.tp)
		}
		return
	}
	if cur, ok := g.offsets[e.tp]; ok && cur.logOffset > lo {
		return
	}
	if d, ok := g.deletedAt[e.tp]; ok && d > lo {
		return
	}
	v := e.value
	v.logOffset = lo
	g.offsets[e.tp] = v
}

// beginInflightLocked records entries as enqueued against g.
func (g *group) beginInflightLocked(entries []offsetEntry) {
	for _, e := range entries {
		if e.metaKey != 0 {
			continue
		}
		g.inflight[e.tp]++
	}
}

// endInflightLocked undoes beginInflightLocked.
func (g *group) endInflightLocked(entries []offsetEntry) {
	for _, e := range entries {
		if e.metaKey != 0 {
			continue
		}
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
func (c *Coordinator) finishOffsets(g0 *group, entries []offsetEntry, base int64, durable bool) {
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
func (c *Coordinator) replayPartition(p int32, groups map[string]*group) (int, error) {
	get := func(name string) *group {
		g := groups[name]
		if g == nil {
			g = c.newGroup(name)
			groups[name] = g
		}
		return g
	}
	// open: the groups with transactional offsets pending, by producer,
	// for the producer's next marker.
	open := map[int64]map[*group]struct{}{}
	records := 0
	err := c.olog.Read(p, c.olog.End(p), func(r LogRecord) {
		records++
		replayRecord(get, open, r)
	})
	for name, g := range groups {
		if g.part != p {
			continue
		}
		g.mu.Lock()
		// A group is of one protocol at a time: the later record says
		// which.
		switch {
		case g.loadedCg != nil && g.loadedCgAt >= g.loadedMetaAt:
			g.restoreConsumerLocked(g.loadedCg)
		case g.loadedMeta != nil:
			g.restoreLocked(g.loadedMeta)
		}
		g.loadedMeta, g.loadedCg = nil, nil
		if !g.activeLocked() && len(g.offsets) == 0 && len(g.txnOffsets) == 0 {
			// Deleted, or emptied with nothing committed: as if
			// forgotten (forgetIfUnused).
			delete(groups, name)
		}
		g.mu.Unlock()
	}
	return records, err
}

// replayRecord applies one __consumer_offsets record to the group get
// returns (created if needed): a transactional offset commit is pending
// until its producer's marker, which open finds its groups by.
func replayRecord(get func(name string) *group, open map[int64]map[*group]struct{}, r LogRecord) {
	key, value, off := r.Key, r.Value, r.Offset
	if r.Control {
		if commit, ok := parseMarker(key); ok {
			for g := range open[r.ProducerID] {
				g.endTxnLocked(r.ProducerID, txnMarker{offset: off, commit: commit})
			}
			delete(open, r.ProducerID)
		}
		return
	}
	if len(key) < 2 {
		return
	}
	switch v := int16(binary.BigEndian.Uint16(key)); v {
	case 0, 1:
	case consumerMemberKeyVersion: // a KIP-848 member (metadata.go)
		group, member, ok := parseMemberKey(key)
		if !ok {
			return
		}
		g := get(group)
		g.replayConsumer(v, member, value)
		g.loadedCgAt = off
		return
	case classicKeyVersion, consumerKeyVersion: // membership (metadata.go); the latest wins
		var k kmsg.GroupMetadataKey
		if k.ReadFrom(key) != nil {
			return
		}
		g := get(k.Group)
		if v == consumerKeyVersion {
			g.replayConsumer(v, "", value)
			g.loadedCgAt = off
			return
		}
		g.loadedMeta, g.loadedMetaAt = nil, off
		if value != nil {
			var md kmsg.GroupMetadataValue
			if md.ReadFrom(value) == nil {
				g.loadedMeta = &md
			}
		}
		return
	default:
		return
	}
	var k kmsg.OffsetCommitKey
	if k.ReadFrom(key) != nil {
		return
	}
	g := get(k.Group)
	tp := topicPart{k.Topic, k.Partition}
	if value == nil {
		g.applyOffsetLocked(offsetEntry{tp: tp, deleted: true}, off)
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
	o := committedOffset{offset: v.Offset, leaderEpoch: epoch, metadata: v.Metadata, commitTime: v.CommitTimestamp}
	if r.Transactional && r.ProducerID >= 0 {
		g.addTxnOffsetLocked(r.ProducerID, tp, o, off)
		if open[r.ProducerID] == nil {
			open[r.ProducerID] = map[*group]struct{}{}
		}
		open[r.ProducerID][g] = struct{}{}
	} else {
		g.applyOffsetLocked(offsetEntry{tp: tp, value: o}, off)
	}
	if ts := time.UnixMilli(v.CommitTimestamp); ts.After(g.emptySince) {
		g.emptySince = ts
	}
}

// expiryLoop expires the offsets of empty groups older than
// offsets.retention.minutes, and forgets empty groups with no offsets.
func (c *Coordinator) expiryLoop() {
	defer close(c.expiryDone)
	interval := c.cfg.OffsetsRetentionCheckInterval
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

func (c *Coordinator) expireOffsets(now time.Time) {
	for _, g := range c.snapshot() {
		c.expireGroup(g, now)
		c.forgetIfUnused(g)
	}
}

// expireGroup tombstones g's expired offsets. The choice is made in the
// check of appendOffsets, so a commit either is applied before the choice
// (and seen by it) or is ordered after the tombstones.
func (c *Coordinator) expireGroup(g *group, now time.Time) {
	retention := c.cfg.OffsetsRetention
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
			if g.txnPendingLocked(tp) {
				// As Kafka: not while a transaction may still
				// commit the partition.
				continue
			}
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
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	w, n, err := c.appendOffsets(ctx, g.name, check)
	if err == nil {
		err = w.wait(ctx)
	}
	switch {
	case err != nil:
		c.log.Warn("expire offsets failed", "group", g.name, "err", err)
	case n > 0:
		c.log.Info("expired committed offsets", "group", g.name, "partitions", n)
	}
}

// forgetIfUnused drops an Empty group with no offsets from the coordinator.
func (c *Coordinator) forgetIfUnused(g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.dropExpiredPendingLocked(time.Now())
	if !g.activeLocked() && len(g.offsets) == 0 && len(g.txnOffsets) == 0 && len(g.pending) == 0 && len(g.inflight) == 0 && c.groups[g.name] == g {
		g.state = groupDead
		delete(c.groups, g.name)
	}
}

// deleteGroup removes an empty group and tombstones its offsets. The check,
// the removal and the enqueue of the tombstones are the check and enqueue
// of appendOffsets, so a commit that recreates the group is ordered after
// the tombstones, and the tombstones cover every commit enqueued before
// them.
func (c *Coordinator) deleteGroup(ctx context.Context, name string) error {
	check := func() (*group, []offsetEntry, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		g := c.groups[name]
		if g == nil || c.closed {
			return nil, nil, errorf(kerr.GroupIDNotFound, "group %q does not exist", name)
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.activeLocked() {
			n := len(g.members)
			if g.cg != nil {
				n += len(g.cg.members)
			}
			return nil, nil, errorf(kerr.NonEmptyGroup, "group %q has %d active members", name, n)
		}
		tps := map[topicPart]struct{}{}
		for tp := range g.offsets {
			tps[tp] = struct{}{}
		}
		for tp := range g.inflight {
			// Enqueued (before us) but not applied yet: tombstone it too.
			tps[tp] = struct{}{}
		}
		for _, pend := range g.txnOffsets {
			// Pending in a transaction, as Kafka does: the tombstone
			// drops it, here and in a replay, so a later COMMIT
			// marker does not bring it back.
			for tp := range pend {
				tps[tp] = struct{}{}
			}
		}
		var entries []offsetEntry
		for tp := range tps {
			entries = append(entries, offsetEntry{tp: tp, deleted: true})
		}
		entries = append(entries, offsetEntry{metaKey: classicKeyVersion}, offsetEntry{metaKey: consumerKeyVersion})
		if g.cg != nil {
			for id := range g.cgMemberPrint {
				entries = append(entries, offsetEntry{metaKey: consumerMemberKeyVersion, member: id})
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
		return errorf(kerr.RequestTimedOut, "offsets were not durable in time")
	}
}

// appendOffsets is the one way committed offsets are written: commits,
// OffsetDelete, DeleteGroups and expiry all go through it. Under the
// group's append lock (Coordinator.appendLocks) it runs check, which
// validates the request against the group and returns the group the
// entries were registered in flight on (beginInflightLocked) and the
// entries, and enqueues them to the group's partition of
// __consumer_offsets; so the log order of a group's writes is the order of
// their checks. The wait for durability (fsync, and replication in a
// cluster) is not under the lock: a goroutine applies the entries once
// durable, so they are applied even if the caller is gone. It returns the
// number of entries written.
func (c *Coordinator) appendOffsets(ctx context.Context, name string, check func() (*group, []offsetEntry, error)) (*pendingOffsets, int, error) {
	return c.appendWrite(ctx, name, nil, check)
}

// appendWrite is appendOffsets, in transaction txn when not nil: then the
// entries are written as one transactional batch and applied as pending
// (finishTxnOffsets).
func (c *Coordinator) appendWrite(ctx context.Context, name string, txn *txnWrite, check func() (*group, []offsetEntry, error)) (*pendingOffsets, int, error) {
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
	finish := func(base int64, durable bool) { c.finishOffsets(g, entries, base, durable) }
	var ow Write
	var err error
	if txn != nil {
		finish = func(base int64, durable bool) { c.finishTxnOffsets(g, txn, entries, base, durable) }
		ow, err = c.writeTxn(ctx, name, txn, entries)
	} else {
		ow, err = c.write(ctx, name, entries)
	}
	al.Unlock()
	if err != nil {
		finish(0, false)
		return nil, 0, err
	}
	w := &pendingOffsets{applied: make(chan struct{})}
	go func() {
		wctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
		err := ow.Wait(wctx)
		cancel()
		finish(ow.Base(), err == nil)
		w.err = err
		close(w.applied)
	}()
	return w, len(entries), nil
}
