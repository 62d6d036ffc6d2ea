package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier2"
)

// ISR replication, partition side. In a cluster every partition keeps the
// controller's view of its leadership (epoch, ISR) in repl. The leader
// tracks how far each follower has fsynced (a follower's fetch offset is
// its durable log end, as in Kafka) and moves the high watermark to the
// minimum over the ISR; consumers read only below it, and acks=all answers
// once it covers the batch. Followers append the leader's batches, with the
// leader's offsets, through their own WAL group commit.
type replState struct {
	on        bool // a cluster partition (not the broker-local offsets topic)
	synced    bool // the controller's view has been applied at least once
	me        int32
	leader    bool
	epoch     int32
	isr       []int32
	replicas  []int32
	minISR    int
	hwm       int64 // replicated high watermark
	followers map[int32]*follower
}

// follower is what a leader knows of one follower's progress.
type follower struct {
	leo       int64     // its last fetch offset: what it has fsynced
	prevEnd   int64     // the leader's durable end at its previous fetch
	prevFetch time.Time // when that was
	caughtUp  time.Time // Kafka's lastCaughtUpTime
}

// visibleEndLocked is the end of what consumers may read: the durable end
// standalone, the replicated high watermark in a cluster. p.mu must be held.
func (p *partition) visibleEndLocked() int64 {
	if !p.repl.on {
		return p.hw
	}
	return min(p.hw, p.repl.hwm)
}

// recomputeHWLocked moves a leader's high watermark to the minimum durable
// end over its ISR. p.mu must be held (write).
func (p *partition) recomputeHWLocked() {
	r := &p.repl
	if !r.on || !r.leader {
		return
	}
	hw := p.hw
	for _, id := range r.isr {
		if id == r.me {
			continue
		}
		f := r.followers[id]
		if f == nil {
			hw = min(hw, r.hwm) // not heard from yet: hold
			continue
		}
		hw = min(hw, f.leo)
	}
	if hw > r.hwm {
		r.hwm = hw
		p.notifyLocked()
		p.kickSealerLocked()
	}
}

// kickSealerLocked nudges the sealer when the active segment is due: the
// sealer never passes the high watermark, so a segment that filled before
// the high watermark caught up is sealed when it does.
func (p *partition) kickSealerLocked() {
	if p.activeBytes >= int64(p.topic.segmentBytes.Load()) {
		select {
		case p.topic.sealKick <- struct{}{}:
		default:
		}
	}
}

func (p *partition) notifyLocked() {
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// followerFetched records a follower's fetch at offset (its durable end).
// It reports false when id holds no replica of p: the fetch is then served
// as a consumer's.
func (p *partition) followerFetched(id int32, offset int64, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &p.repl
	if !slices.Contains(r.replicas, id) || id == r.me {
		return false
	}
	if offset < 0 || offset > p.hw {
		// An offset this leader never wrote (a follower that diverged
		// asks past our end): no progress to record.
		return true
	}
	if r.followers == nil {
		r.followers = map[int32]*follower{}
	}
	f := r.followers[id]
	if f == nil {
		f = &follower{}
		r.followers[id] = f
	}
	switch {
	case offset >= p.hw:
		f.caughtUp = now
	case offset >= f.prevEnd && !f.prevFetch.IsZero():
		f.caughtUp = f.prevFetch
	}
	f.leo, f.prevEnd, f.prevFetch = offset, p.hw, now
	p.recomputeHWLocked()
	return true
}

// setLeadership applies the controller's view of this partition. It returns
// true when this broker just became a follower under a new epoch and must
// truncate before fetching.
func (p *partition) setLeadership(me, leader, epoch int32, isr, replicas []int32, minISR int) (becameFollower bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &p.repl
	if r.synced && r.me == me && r.leader == (leader == me) && r.epoch == epoch && r.minISR == minISR &&
		slices.Equal(r.isr, isr) && slices.Equal(r.replicas, replicas) {
		return false // the reconciler runs often; nothing to wake anyone for
	}
	first, wasLeader, oldEpoch := !r.synced, r.leader, r.epoch
	r.synced, r.me, r.isr, r.replicas, r.minISR = true, me, isr, replicas, minISR
	r.leader, r.epoch = leader == me, epoch
	if r.leader && (first || !wasLeader || epoch != oldEpoch) {
		r.followers = map[int32]*follower{}
		now := time.Now()
		for _, id := range replicas {
			if id != me {
				// A fresh leader gives each follower a full lag window.
				r.followers[id] = &follower{leo: -1, prevFetch: now, caughtUp: now}
			}
		}
		// Until followers report, the high watermark stays where it was:
		// whatever this broker knew as committed.
		for id, f := range r.followers {
			if !slices.Contains(isr, id) {
				continue
			}
			f.leo = r.hwm
		}
	}
	p.recomputeHWLocked()
	p.notifyLocked() // acks=all waiters re-check leadership
	return !r.leader && slices.Contains(replicas, me) && (first || wasLeader || epoch != oldEpoch)
}

// replicationWait waits until the high watermark covers end (the offset
// after the batch), for acks=all in a cluster. It fails when this broker
// stops leading, the ISR falls below min.insync.replicas, or ctx ends.
func (p *partition) replicationWait(ctx context.Context, end int64, epoch int32) error {
	ch := make(chan struct{}, 1)
	p.watch(ch)
	defer p.unwatch(ch)
	for {
		p.mu.RLock()
		r := p.repl
		hw, failed, deleted := r.hwm, p.failed, p.deleted
		p.mu.RUnlock()
		switch {
		case deleted:
			return kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted", p.topic.name)
		case failed != nil:
			return kerrf(kerr.KafkaStorageError, "%v", failed)
		case !r.on:
			return nil
		case !r.leader || r.epoch != epoch:
			return kerrf(kerr.NotLeaderForPartition, "leadership moved while the batch was replicating")
		case hw >= end:
			if len(r.isr) < r.minISR {
				return kerrf(kerr.NotEnoughReplicasAfterAppend, "the ISR shrank to %d, below min.insync.replicas %d", len(r.isr), r.minISR)
			}
			return nil
		case len(r.isr) < r.minISR:
			return kerrf(kerr.NotEnoughReplicasAfterAppend, "the ISR shrank to %d, below min.insync.replicas %d", len(r.isr), r.minISR)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return kerrf(kerr.RequestTimedOut, "the batch did not reach min.insync.replicas in time")
		}
	}
}

// leadershipForProduce returns this leader's epoch and whether the ISR is
// large enough for acks=all.
func (p *partition) leadershipForProduce() (epoch int32, isr, minISR int, on, leader bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.repl.epoch, len(p.repl.isr), p.repl.minISR, p.repl.on, p.repl.leader
}

func setLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

// errDiverged means a follower's fetched data does not continue its log.
var errDiverged = errors.New("replica: fetched batches do not continue the local log")

// errStaleFetch means a fetch response arrived after its leader epoch ended.
var errStaleFetch = errors.New("replica: fetched under a leader epoch that has ended")

// appendReplica appends batches fetched from the leader, keeping their
// offsets. It returns the result of the last enqueued batch (nil if none was
// new) to wait on before fetching again.
func (p *partition) appendReplica(ctx context.Context, wal *tier1.WAL, records []byte, epoch int32) (*appendResult, error) {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.mu.RLock()
	stale := p.repl.leader || p.repl.epoch != epoch
	p.mu.RUnlock()
	if stale {
		// Fetched under an epoch that has ended (this broker leads now,
		// or follows someone else after truncating): drop it.
		return nil, errStaleFetch
	}
	p.resumeAppendsLocked(wal)
	gen := p.resumes.Load()
	var last *appendResult
	for len(records) >= batchHeaderLen {
		n := int(binary.BigEndian.Uint32(records[offBatchLength:])) + 12
		if n < batchHeaderLen || n > len(records) {
			break // a partial batch at the end of a fetch
		}
		batch := records[:n:n]
		records = records[n:]
		h, err := parseReplicaBatch(batch)
		if err != nil {
			return last, err
		}
		base := batchBaseOffset(batch)
		switch {
		case base+int64(h.LastOffsetDelta) < p.nextOffset:
			continue // already held
		case base != p.nextOffset:
			return last, errDiverged
		}
		// A batch that would consume offsets its records do not hold, or
		// inflate past the bound, is refused like a CRC failure: it is
		// never stored, and the fetcher truncates and fetches again.
		rules := batchRules{inflateLimit: p.topic.inflateLimit()}
		if err := validateRecords(batch, &h, &rules); err != nil {
			return last, fmt.Errorf("%w at offset %d: %v", errBadReplicaBatch, base, err)
		}
		p.mu.Lock()
		noted := p.noteEpochLocked(batchLeaderEpoch(batch), base)
		p.mu.Unlock()
		if noted {
			if err := p.saveEpochs(); err != nil {
				return last, err
			}
		}
		res := &appendResult{done: make(chan struct{})}
		m := batchMeta{base: base, lastDelta: h.LastOffsetDelta, maxTs: h.MaxTimestamp, appended: time.Now().UnixMilli()}
		if _, err := wal.Append(ctx, p.tp, batch, func(pos tier1.Position, err error) {
			m.pos = pos
			p.commit(m, err, gen)
			res.err = err
			close(res.done)
		}); err != nil {
			p.noteDiskFull(err, gen)
			return last, err
		}
		p.nextOffset = m.last() + 1
		if h.ProducerID >= 0 {
			p.rememberLocked(h, base, res, m.appended)
			p.observeTxn(h, base, batch)
		}
		last = res
	}
	return last, nil
}

// setFollowerHW records the high watermark the leader reported.
func (p *partition) setFollowerHW(hw int64) {
	p.mu.Lock()
	if !p.repl.leader && hw > p.repl.hwm {
		p.repl.hwm = hw
		p.kickSealerLocked()
	}
	p.mu.Unlock()
}

// legacyTruncMagic starts the body of a truncation as earlier releases
// wrote it: a batch entry of exactly legacyTruncLen bytes, the magic and
// the offset big-endian (tier1/doc.go, Entry types). Nothing writes it any
// more; replay still applies it, so an older data directory recovers the
// same. No record batch is that short, so no batch is mistaken for one.
var legacyTruncMagic = []byte("CHRTRUNC")

const legacyTruncLen = 16

// parseLegacyTruncation returns the offset of a legacy truncation.
func parseLegacyTruncation(b []byte) (int64, bool) {
	if len(b) != legacyTruncLen || !bytes.Equal(b[:8], legacyTruncMagic) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b[8:])), true
}

// truncateTo drops every record at or above offset that is not sealed (a
// follower's unconfirmed tail, before it fetches from a new leader), and
// logs the truncation in the WAL (a truncation entry) so a restart does the
// same.
func (p *partition) truncateTo(ctx context.Context, wal *tier1.WAL, offset int64) error {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.resumeAppendsLocked(wal)
	gen := p.resumes.Load()
	p.mu.Lock()
	offset = max(offset, p.segsEndLocked(), p.logStart)
	if offset >= p.nextOffset {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	done := make(chan error, 1)
	if _, err := wal.AppendTruncation(ctx, p.tp, offset, func(_ tier1.Position, err error) {
		p.noteDiskFull(err, gen)
		done <- err
	}); err != nil {
		p.noteDiskFull(err, gen)
		return err
	}
	// Once enqueued the entry will be replayed if it commits, so the cut
	// must be made here too: wait for the commit whatever ctx says (the WAL
	// completes every entry, or fails it at Close), never leave a marker in
	// the log that the live partition did not apply.
	if err := <-done; err != nil {
		return err
	}
	p.mu.Lock()
	p.truncateLocked(offset)
	p.mu.Unlock()
	return p.saveEpochs()
}

// truncateLocked drops active batches at or above offset. appendMu and
// p.mu must be held (or recovery running).
func (p *partition) truncateLocked(offset int64) {
	i := 0
	for i < len(p.batches) && p.batches[i].base < offset {
		i++
	}
	for _, m := range p.batches[i:] {
		p.activeBytes -= int64(m.pos.Len)
	}
	p.batches = slices.Clip(p.batches[:i])
	if len(p.batches) == 0 {
		p.activeSince = 0
	}
	p.nextOffset = offset
	p.hw = min(p.hw, offset)
	p.cutEpochsLocked(offset)
	p.txns.truncate(offset)
	// Forget idempotent window entries of dropped batches; the new
	// leader's batches rebuild them as they arrive.
	for id, ps := range p.producers {
		np := &producerState{epoch: ps.epoch, lastWrite: ps.lastWrite}
		for j := ps.n - 1; j >= 0; j-- { // oldest first
			e := ps.recent[(ps.head-1-j+2*producerWindow)%producerWindow]
			if e.baseOffset < offset {
				np.recent[np.head] = e
				np.head = (np.head + 1) % producerWindow
				np.n++
			}
		}
		if np.n == 0 {
			delete(p.producers, id)
		} else if np.n != ps.n {
			p.producers[id] = np
		}
	}
	p.nProducers.Store(int64(len(p.producers)))
}

// jumpTo restarts a follower's log at offset, above everything it holds:
// the leader's log start moved past this follower's end. The log start is
// checkpointed first, so recovery skips whatever the WAL still holds below
// it.
func (b *Broker) jumpTo(p *partition, offset int64) error {
	if err := b.advanceLogStart(p, offset); err != nil {
		return err
	}
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset <= p.nextOffset {
		return nil
	}
	for _, m := range p.batches {
		p.activeBytes -= int64(m.pos.Len)
	}
	p.batches, p.activeSince = nil, 0
	p.nextOffset, p.hw = offset, offset
	p.repl.hwm = max(p.repl.hwm, offset)
	return nil
}

// startLocalLogAt restarts a follower's local log at offset, above
// everything it holds, without moving the log start: the leader's local
// log starts there and the archive holds everything below (local copies
// are deleted only once archived). What this follower holds below is
// dropped: local segments are copies of archived ones, and reads below
// offset go to the archive. The producer checkpoint records offset as the
// log end, so recovery never hands out an offset below it.
func (b *Broker) startLocalLogAt(p *partition, offset int64) error {
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.mu.RLock()
	end := p.nextOffset
	p.mu.RUnlock()
	if offset <= end {
		return nil
	}
	if err := b.fs.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	if err := tier2.WriteProducers(b.fs, p.dir, offset, nil, tier2.Txns{}); err != nil {
		return err
	}
	p.mu.Lock()
	for _, m := range p.batches {
		p.activeBytes -= int64(m.pos.Len)
	}
	segs := p.segs
	p.segs, p.batches, p.activeSince = nil, nil, 0
	p.nextOffset, p.hw = offset, offset
	p.repl.hwm = max(p.repl.hwm, offset)
	p.sealedProducers = map[int64]*producerState{}
	// Transactions open below offset are the archive's; what lies above
	// it arrives from the leader.
	p.txns, p.sealedTxns = newTxnIndex(), newTxnIndex()
	p.mu.Unlock()
	var errs []error
	for _, s := range segs {
		errs = append(errs, s.Remove())
	}
	return errors.Join(errs...)
}

// authenticReplica reports whether a fetch claiming to come from broker id
// with broker epoch epoch does: the controller's registration of id must
// have that epoch. Registrations of releases before broker epochs (no
// storage ID) accept a fetch without one. With
// ReplicaFetchRequireInternalAddr the connection must also come from an
// address of the broker's registered internal host: the epoch is a secret
// only while nothing leaks it. Refusals are counted and logged (once per
// connection): the fetch is then answered STALE_BROKER_EPOCH (01_fetch.go).
func (b *Broker) authenticReplica(c *conn, id int32, epoch int64) bool {
	bi := b.ctl.State().Brokers[id]
	var why string
	switch {
	case bi == nil:
		why = "a fetch claims to come from an unregistered broker; answered STALE_BROKER_EPOCH"
	case epoch != bi.Epoch() && (epoch >= 0 || bi.StorageID != ""):
		why = "a fetch claims to come from a broker without its broker epoch; answered STALE_BROKER_EPOCH"
	case b.cfg.ReplicaFetchRequireInternalAddr && !b.replicaAddrs.matches(registeredHost(bi), c.ip):
		why = "a fetch claims to come from a broker but not from its registered internal address; answered STALE_BROKER_EPOCH " +
			"(set CHRONIK_REPLICA_FETCH_REQUIRE_INTERNAL_ADDR=false when brokers reach one another through NAT)"
	default:
		return true
	}
	b.metrics.replicaFetchesRefused.Inc()
	if c.refusedReplica.CompareAndSwap(false, true) {
		args := []any{"claimed_broker", id, "remote", c.remote, "epoch", epoch}
		if bi != nil {
			args = append(args, "registered_addr", bi.InternalAddr())
		}
		b.log.Warn(why, args...)
	}
	return false
}

// registeredHost is the host other brokers dial bi at, and so the one its
// fetches come from.
func registeredHost(bi *replication.BrokerInfo) string {
	if bi.InternalHost != "" {
		return bi.InternalHost
	}
	return bi.Host
}

// errBadReplicaBatch means fetched bytes failed the batch checks.
var errBadReplicaBatch = errors.New("replica: fetched batch failed its checks")

// parseReplicaBatch checks the frame of a batch fetched from the leader
// before it is stored: magic, length and CRC, as produce checks them.
// validateRecords then checks its records, allowing the gaps compaction
// leaves.
func parseReplicaBatch(b []byte) (batchHeader, error) {
	switch {
	case len(b) < batchHeaderLen || int8(b[offMagic]) != 2:
		return batchHeader{}, fmt.Errorf("%w: bad header", errBadReplicaBatch)
	case int64(int32(binary.BigEndian.Uint32(b[offBatchLength:])))+12 != int64(len(b)):
		return batchHeader{}, fmt.Errorf("%w: length mismatch", errBadReplicaBatch)
	case binary.BigEndian.Uint32(b[offCRC:]) != crc32.Checksum(b[offAttributes:], crc32c):
		return batchHeader{}, fmt.Errorf("%w: CRC mismatch", errBadReplicaBatch)
	}
	return readBatchHeader(b), nil
}
