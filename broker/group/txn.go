package group

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TxnOffsetCommit: v0-4
//
// Transactional offsets (KIP-98): a producer commits a group's offsets as
// part of its transaction. They are written to the group's partition of
// __consumer_offsets as one transactional batch of the producer (the same
// records as OffsetCommit's) and kept pending per group and producer,
// invisible to OffsetFetch, until the transaction's marker in that
// partition (CompleteTxn live, the control record in a replay) commits or
// drops them.
//
// Behavior:
//   - Group checks as Kafka's for TxnOffsetCommit: in a classic group,
//     generation -1 with no member or instance ID skips them, otherwise
//     the member, instance and generation must match; in a
//     consumer-protocol group with members, the member and its epoch must
//     (a mismatch answered ILLEGAL_GENERATION). No REBALANCE_IN_PROGRESS,
//     and no session is reset.
//   - Committed at a marker: a pending offset becomes the committed one
//     unless the committed one was written later in the log (Kafka
//     compares log offsets the same way, so compaction cannot reorder
//     them). A tombstone (OffsetDelete, DeleteGroups, expiry) drops the
//     partition's pending offsets written before it, as Kafka's replay
//     does: DeleteGroups tombstones pending partitions too, and expiry
//     leaves alone a partition, and a group, with offsets pending.
//   - A marker applies to the pending offsets written before it (log
//     offsets): a write still in flight when its transaction's marker
//     arrives takes the marker's outcome when it lands; one written after
//     the marker belongs to the producer's next transaction.
//   - OffsetFetch with RequireStable (v7+) answers UNSTABLE_OFFSET_COMMIT
//     for a partition with offsets pending, where Kafka does: on the
//     partition.
//
// Bounds: a producer has at most one pending offset per partition of a
// known topic, and a group at most maxGroupTxns producers with offsets
// pending (more are refused GROUP_MAX_SIZE_REACHED, fatal to the producer
// in the Java client: a limit no real workload meets).

const (
	// maxGroupTxns bounds the producers with offsets pending in a group.
	maxGroupTxns = 10_000
	// maxLoadMarkers bounds the markers queued while a partition loads.
	maxLoadMarkers = 100_000
	// maxEndedMarkers bounds the markers kept for one producer's writes
	// in flight; past it the oldest is forgotten. Only a write in flight
	// across that many of its producer's transactions would need it.
	maxEndedMarkers = 64
)

// txnKey is one producer in one partition of __consumer_offsets.
type txnKey struct {
	part     int32
	producer int64
}

// txnMarker is a transaction's end: its COMMIT or ABORT control record at
// log offset offset.
type txnMarker struct {
	offset int64
	commit bool
}

type queuedMarker struct {
	producer int64
	marker   txnMarker
}

// openTxn is what the coordinator knows of one producer's transactional
// offsets in one partition of __consumer_offsets. Coordinator.mu guards it.
type openTxn struct {
	// groups may have offsets of the producer pending: a superset,
	// pruned when a marker finds none.
	groups map[string]struct{}
	// inflight counts the producer's offset writes enqueued and not yet
	// applied or failed; ended is the markers completed meanwhile, by log
	// offset, so a write applied after its transaction's marker takes the
	// marker's outcome. Invariant: ended is empty when inflight is 0.
	inflight int
	ended    []txnMarker
}

// endedAfter returns the first marker after log offset lo that t knows.
func (t *openTxn) endedAfter(lo int64) (txnMarker, bool) {
	for _, m := range t.ended {
		if m.offset > lo {
			return m, true
		}
	}
	return txnMarker{}, false
}

func (t *openTxn) noteEnded(m txnMarker) {
	i, found := slices.BinarySearchFunc(t.ended, m.offset, func(e txnMarker, off int64) int {
		return cmp.Compare(e.offset, off)
	})
	if found {
		return
	}
	t.ended = slices.Insert(t.ended, i, m)
	if len(t.ended) > maxEndedMarkers {
		t.ended = slices.Delete(t.ended, 0, 1)
	}
}

// txnWrite is a transactional write's producer, and its producer's
// openTxn it is counted in flight on.
type txnWrite struct {
	producer int64
	epoch    int16
	key      txnKey
	open     *openTxn // nil until enqueued
}

// TxnOffsetCommit runs a TxnOffsetCommit (v0-4). The returned wait, when
// not nil, blocks until the write is durable (and pending) and fills in
// its errors.
func (c *Coordinator) TxnOffsetCommit(r *kmsg.TxnOffsetCommitRequest) (*kmsg.TxnOffsetCommitResponse, func()) {
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	resp.Topics = make([]kmsg.TxnOffsetCommitResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			st.Partitions[j] = kmsg.NewTxnOffsetCommitResponseTopicPartition()
			st.Partitions[j].Partition = rt.Partitions[j].Partition
		}
	}
	failAll := func(code *kerr.Error) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code.Code
			}
		}
	}
	switch {
	case r.ProducerID < 0:
		failAll(kerr.InvalidProducerIDMapping)
		return resp, nil
	case r.ProducerEpoch < 0:
		failAll(kerr.InvalidProducerEpoch)
		return resp, nil
	}
	generation, memberID, instanceID := int32(-1), "", (*string)(nil)
	if r.Version >= 3 {
		generation, memberID, instanceID = r.Generation, r.MemberID, r.InstanceID
	}
	nowMs := time.Now().UnixMilli()
	var slots []*int16 // the error codes of the partitions written
	var entries []offsetEntry
	for i := range r.Topics {
		rt := &r.Topics[i]
		parts := c.topics.Partitions(rt.Topic)
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[i].Partitions[j]
			epoch := int32(-1)
			if r.Version >= 2 {
				epoch = rp.LeaderEpoch
			}
			e, code := c.offsetEntry(rt.Topic, parts, rp.Partition, rp.Offset, epoch, rp.Metadata, nowMs)
			if code != nil {
				sp.ErrorCode = code.Code
				continue
			}
			entries = append(entries, e)
			slots = append(slots, &sp.ErrorCode)
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
	defer cancel()
	var refused *kerr.Error
	txn := &txnWrite{producer: r.ProducerID, epoch: r.ProducerEpoch}
	w, _, err := c.appendWrite(ctx, r.Group, txn, func() (*group, []offsetEntry, error) {
		g, gerr := c.txnCommitCheck(r.Group, memberID, instanceID, generation, r.ProducerID, entries)
		if gerr != nil {
			refused = gerr
			return nil, nil, gerr
		}
		return g, entries, nil
	})
	if refused != nil {
		failAll(refused)
		return resp, nil
	}
	if err != nil {
		code := txnWriteErr(err)
		for _, p := range slots {
			*p = code.Code
		}
		return resp, nil
	}
	return resp, c.writeOutcome(w, nil, slots)
}

// txnWriteErr maps an append failure of a TxnOffsetCommit to its error:
// the producer's own (fenced, wrong epoch, not in a transaction) as they
// are, as Kafka does, the rest as for OffsetCommit.
func txnWriteErr(err error) *kerr.Error {
	switch code := codeOf(err); code {
	case kerr.InvalidProducerEpoch, kerr.ProducerFenced, kerr.InvalidTxnState, kerr.InvalidProducerIDMapping,
		kerr.UnknownProducerID, kerr.TransactionAbortable, kerr.ConcurrentTransactions:
		return code
	default:
		return commitWriteErr(err)
	}
}

// txnCommitCheck validates a TxnOffsetCommit's group fields as Kafka does
// and returns the group (created for generation -1), with entries
// registered in flight on it. The caller holds the group's append lock.
func (c *Coordinator) txnCommitCheck(name, memberID string, instanceID *string, generation int32, producer int64, entries []offsetEntry) (*group, *kerr.Error) {
	if name == "" {
		return nil, kerr.InvalidGroupID
	}
	g := c.lockGroup(name, generation < 0)
	if g == nil {
		if code := c.unavailable(name); code != nil {
			return nil, code
		}
		return nil, kerr.IllegalGeneration
	}
	defer g.mu.Unlock()
	switch {
	case g.cg != nil && len(g.cg.members) > 0:
		// A consumer-protocol group: Generation is the member epoch;
		// Kafka answers a mismatch ILLEGAL_GENERATION here.
		switch err := g.validateConsumerMemberLocked(memberID, generation); err {
		case nil:
		case kerr.FencedMemberEpoch, kerr.StaleMemberEpoch:
			return nil, kerr.IllegalGeneration
		default:
			return nil, err
		}
	case generation < 0 && memberID == "" && instanceID == nil:
		// An admin, or a producer that does not send its consumer's
		// group metadata (v0-2, or sendOffsetsToTransaction by group
		// ID): nothing to check.
	case generation < 0 && len(g.members) == 0:
	default:
		if err := g.validateMemberLocked(memberID, instanceID, generation); err != nil {
			return nil, err
		}
	}
	if _, ok := g.txnOffsets[producer]; !ok && len(g.txnOffsets) >= maxGroupTxns {
		return nil, kerr.GroupMaxSizeReached
	}
	g.beginInflightLocked(entries)
	return g, nil
}

// writeTxn appends entries for group to its partition of
// __consumer_offsets in txn's transaction, counting the write in flight
// on the producer's openTxn first.
func (c *Coordinator) writeTxn(ctx context.Context, group string, txn *txnWrite, entries []offsetEntry) (Write, error) {
	p := c.partitionOf(group)
	if p < 0 {
		return nil, errorf(kerr.CoordinatorNotAvailable, "%s is missing", OffsetsTopic)
	}
	txn.key = txnKey{p, txn.producer}
	c.mu.Lock()
	t := c.txns[txn.key]
	if t == nil {
		t = &openTxn{groups: map[string]struct{}{}}
		c.txns[txn.key] = t
	}
	t.inflight++
	txn.open = t
	c.mu.Unlock()
	return c.olog.AppendTxn(ctx, p, txn.producer, txn.epoch, encodeOffsets(group, entries, time.Now().UnixMilli()))
}

// finishTxnOffsets ends a transactional write of entries checked against
// g0, as finishOffsets does a plain one: durable, each entry is pending in
// the group now registered under g0's name, or, when its transaction's
// marker came first, committed or dropped by it.
func (c *Coordinator) finishTxnOffsets(g0 *group, txn *txnWrite, entries []offsetEntry, base int64, durable bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g0.mu.Lock()
	defer g0.mu.Unlock()
	t := txn.open
	if durable && t != nil && !g0.deleted && !c.closed && c.ownsLocked(g0.part, g0.gen) {
		g := c.groups[g0.name]
		if g == nil {
			g = c.newGroupLocked(g0.name)
		}
		if g != g0 {
			g.mu.Lock() // safe: see finishOffsets
		}
		for i, e := range entries {
			lo := base + int64(i)
			switch m, ended := t.endedAfter(lo); {
			case !ended:
				g.addTxnOffsetLocked(txn.producer, e.tp, e.value, lo)
			case m.commit:
				g.applyOffsetLocked(e, lo)
			}
		}
		if len(g.txnOffsets[txn.producer]) > 0 {
			t.groups[g.name] = struct{}{}
		}
		if g != g0 {
			g.mu.Unlock()
		}
	}
	g0.endInflightLocked(entries)
	if t == nil {
		return
	}
	if t.inflight--; t.inflight == 0 {
		t.ended = nil
		if len(t.groups) == 0 && c.txns[txn.key] == t {
			delete(c.txns, txn.key)
		}
	}
}

// CompleteTxn applies the end of producerID's transaction to the groups of
// partition of __consumer_offsets: its marker (COMMIT when commit, else
// ABORT) is durable at log offset markerOffset. The pending offsets of
// the producer written before the marker are committed (unless a commit
// written later in the log is) or dropped. A repeated or stale marker
// changes nothing.
//
// The broker calls it before it acknowledges the marker to the
// transaction coordinator, so that the producer's next transaction cannot
// commit offsets before it: the pending offsets keep only the latest per
// partition and producer.
func (c *Coordinator) CompleteTxn(partition int32, producerID int64, commit bool, markerOffset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	m := txnMarker{offset: markerOffset, commit: commit}
	if c.cfg.Cluster {
		switch o := c.owned[partition]; {
		case o == nil:
			return // not led here: its leader has it, or reads it from the log
		case !o.loaded:
			if len(o.markers) >= maxLoadMarkers {
				o.markers, o.reload = nil, true
				return
			}
			if !o.reload {
				o.markers = append(o.markers, queuedMarker{producerID, m})
			}
			return
		}
	}
	c.endTxnLocked(txnKey{partition, producerID}, m)
}

// endTxnLocked applies marker m of key's producer to the groups of key's
// partition. c.mu is held.
func (c *Coordinator) endTxnLocked(key txnKey, m txnMarker) {
	t := c.txns[key]
	if t == nil {
		return
	}
	if t.inflight > 0 {
		t.noteEnded(m)
	}
	for name := range t.groups {
		if g := c.groups[name]; g != nil && g.part == key.part {
			g.mu.Lock()
			g.endTxnLocked(key.producer, m)
			pending := len(g.txnOffsets[key.producer]) > 0
			g.mu.Unlock()
			if pending {
				continue // of a later transaction
			}
		}
		delete(t.groups, name)
	}
	if t.inflight == 0 && len(t.groups) == 0 {
		delete(c.txns, key)
	}
}

// indexTxnsLocked adds the pending offsets of groups, just loaded, to
// c.txns. c.mu is held (or c is not published yet).
func (c *Coordinator) indexTxnsLocked(groups map[string]*group) {
	for name, g := range groups {
		for producer := range g.txnOffsets {
			key := txnKey{g.part, producer}
			t := c.txns[key]
			if t == nil {
				t = &openTxn{groups: map[string]struct{}{}}
				c.txns[key] = t
			}
			t.groups[name] = struct{}{}
		}
	}
}

// addTxnOffsetLocked makes o, written at log offset lo, producer's pending
// offset of tp, unless a tombstone or a pending offset of the producer
// written later is applied already.
func (g *group) addTxnOffsetLocked(producer int64, tp topicPart, o committedOffset, lo int64) {
	if d, ok := g.deletedAt[tp]; ok && d > lo {
		return
	}
	pend := g.txnOffsets[producer]
	if cur, ok := pend[tp]; ok && cur.logOffset > lo {
		return
	}
	if pend == nil {
		if g.txnOffsets == nil {
			g.txnOffsets = map[int64]map[topicPart]committedOffset{}
		}
		pend = map[topicPart]committedOffset{}
		g.txnOffsets[producer] = pend
	}
	o.logOffset = lo
	pend[tp] = o
}

// endTxnLocked commits or drops producer's offsets pending from before
// marker m.
func (g *group) endTxnLocked(producer int64, m txnMarker) {
	pend := g.txnOffsets[producer]
	for tp, o := range pend {
		if o.logOffset > m.offset {
			continue // of a later transaction
		}
		delete(pend, tp)
		if m.commit {
			g.applyOffsetLocked(offsetEntry{tp: tp, value: o}, o.logOffset)
		}
	}
	if pend != nil && len(pend) == 0 {
		delete(g.txnOffsets, producer)
	}
}

// dropTxnOffsetsLocked drops the offsets of tp pending from before log
// offset lo (a tombstone's).
func (g *group) dropTxnOffsetsLocked(tp topicPart, lo int64) {
	for producer, pend := range g.txnOffsets {
		if o, ok := pend[tp]; ok && o.logOffset < lo {
			delete(pend, tp)
			if len(pend) == 0 {
				delete(g.txnOffsets, producer)
			}
		}
	}
}

// txnPendingLocked reports whether a transaction has an offset of tp
// pending.
func (g *group) txnPendingLocked(tp topicPart) bool {
	for _, pend := range g.txnOffsets {
		if _, ok := pend[tp]; ok {
			return true
		}
	}
	return false
}

// parseMarker reads a control record's key: version and type, 0 abort or
// 1 commit. Like Kafka it reads a version above 0 as 0.
func parseMarker(key []byte) (commit, ok bool) {
	if len(key) < 4 || int16(binary.BigEndian.Uint16(key)) < 0 {
		return false, false
	}
	switch binary.BigEndian.Uint16(key[2:]) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}
