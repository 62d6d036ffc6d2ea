package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// producerWindow is how many recent batches per producer are remembered for
// duplicate detection: Kafka's max.in.flight.requests.per.connection limit
// for idempotent producers.
const producerWindow = 5

// partition is one partition's log: offsets are assigned under appendMu and
// the batch is enqueued to the WAL before appendMu is released, so WAL order
// is offset order; the WAL's commit goroutine then publishes durable batches
// under mu.
//
// Durable data lives in two places: sealed Tier 2 segments (segs), and the
// active segment, which is the batches still only in the WAL (batches).
// The sealer moves a prefix of batches into a new segment and swaps both
// slices under mu in one step, so a reader sees every offset in exactly one
// of them.
type partition struct {
	topic *topic
	index int32
	tp    tier1.TopicPartition
	dir   string // Tier 2 directory

	appendMu   sync.Mutex // guards the following
	nextOffset int64      // log end offset including appends not yet durable
	producers  map[int64]*producerState
	// nProducers is len(producers) for the metrics, which must not wait
	// for appendMu; set wherever producers changes size.
	nProducers atomic.Int64
	// resumes counts resumptions after a full disk (resumeAppendsLocked,
	// under appendMu and mu); an append's disk-full failure counts only if
	// none happened since the append began, so a late callback cannot mark
	// the partition again.
	resumes atomic.Uint64

	mu          sync.RWMutex     // guards the following
	batches     []batchMeta      // durable batches not yet sealed, in offset order
	activeBytes int64            // their bytes
	activeSince int64            // unix millis the oldest of them became durable (approximately); 0 if none
	segs        []*tier2.Segment // sealed segments in offset order; replaced, never mutated
	hw          int64            // offset after the last durable record: what consumers may read
	logStart    int64
	failed      error                      // sticky storage error
	diskFull    error                      // appends failed on a full disk; cleared by resumeAppendsLocked
	deleted     bool                       // topic deleted
	waiters     map[chan struct{}]struct{} // long-polling fetches
	archSegs    []tier3.SegmentEntry       // Tier 3 manifest's segments (tier3.go); replaced, never mutated
	archLoaded  bool                       // archSegs reflects the store's manifest
	txns        txnIndex                   // open and aborted transactions (txnindex.go)

	logStartMu sync.Mutex // serialises log start checkpoint writes

	// maintMu serialises sealing, retention and compaction of this
	// partition; it is never taken on the produce or fetch path.
	maintMu sync.Mutex
	// sealedProducers are the idempotent producer windows as of the end of
	// the last sealed segment: what the producers checkpoint holds.
	sealedProducers map[int64]*producerState // guarded by maintMu
	// sealedTxns is the transaction index as of the same point.
	sealedTxns        txnIndex // guarded by maintMu
	compactedEnd      int64    // guarded by maintMu: sealed end at the last compaction
	tombstonesPending bool     // guarded by maintMu: the last compaction kept young tombstones

	recoverFloor int64 // set before the WAL replay: the log end is at least this

	repl replState // ISR replication in a cluster (replica.go); guarded by mu

	// epochs is the leader-epoch cache (replica_epochs.go), guarded by mu;
	// epochsDirty says it changed since its last checkpoint.
	epochs      []tier2.EpochStart
	epochsDirty bool

	arch archState // Tier 3 uploader state (tier3.go)

	// healthDamaged is whether noteReplicaHealth last heard p damaged
	// (scrub.go refreshHealth).
	healthDamaged atomic.Bool
	// healthReporting is set while a goroutine tells the controller about
	// healthDamaged (reportReplicaHealth): one at a time, so reports never
	// land out of order.
	healthReporting atomic.Bool
	// tailDropping is set while dropUnconfirmedTail runs.
	tailDropping atomic.Bool
}

// segsEndLocked is the offset after the last sealed segment, or -1.
func (p *partition) segsEndLocked() int64 {
	if len(p.segs) == 0 {
		return -1
	}
	return p.segs[len(p.segs)-1].Next
}

// batchMeta locates one durable batch.
type batchMeta struct {
	base      int64
	lastDelta int32
	maxTs     int64
	pos       tier1.Position
	// appended is when this broker took the batch in (unix millis):
	// the sealer rebuilds its producer's last write from it.
	appended int64
}

func (m *batchMeta) last() int64 { return m.base + int64(m.lastDelta) }

type producerState struct {
	epoch int16
	// lastWrite is when this broker last remembered a batch of the
	// producer (unix millis): its append, replay or replication, or the
	// load of the checkpoint that held it. Expiry and eviction go by it.
	lastWrite int64
	recent    [producerWindow]seqEntry // ring; recent[(head-1)%N] is newest
	head      int
	n         int
	// next is the sequence expected while the window is empty because
	// its batches failed on a full disk and were taken back.
	next int32
}

type seqEntry struct {
	first, last int32
	baseOffset  int64
	durable     *appendResult // nil once recovered from the WAL
}

// appendResult is closed once the batch is durable or failed.
type appendResult struct {
	done chan struct{}
	err  error
}

func newPartition(t *topic, i int32) *partition {
	return &partition{
		topic:           t,
		index:           i,
		tp:              tier1.TopicPartition{TopicID: t.id, Partition: i},
		dir:             tier2.PartitionDir(t.segRoot, t.id, i),
		producers:       make(map[int64]*producerState),
		sealedProducers: make(map[int64]*producerState),
		txns:            newTxnIndex(),
		sealedTxns:      newTxnIndex(),
		waiters:         make(map[chan struct{}]struct{}),
		// A cluster partition is bounded by its high watermark from the
		// start, before the controller's view of it arrives: nothing
		// unconfirmed is served, sealed or acknowledged as replicated.
		repl: replState{on: t.cluster},
	}
}

// replay applies a recovered WAL entry: a batch, or a truncation (written
// by truncateTo, or by an earlier release as a legacy batch). It runs
// before the broker serves.
func (p *partition) replay(e tier1.Entry) error {
	switch e.Type {
	case tier1.EntryTruncation:
		p.replayTruncation(e.Offset)
	case tier1.EntryBatch:
		if off, ok := parseLegacyTruncation(e.Batch); ok {
			p.replayTruncation(off)
		} else {
			p.replayBatch(e.Batch, e.Pos)
		}
	default:
		return fmt.Errorf("broker: wal entry of unknown type %d for %s/%d", e.Type, p.topic.name, p.index)
	}
	return nil
}

// replayTruncation cuts the log at offset as truncateTo did live: never
// below what is sealed (a truncation can outlive the batches it cut once
// those were fetched again and sealed), nor below the log start or the
// recovery floor.
func (p *partition) replayTruncation(offset int64) {
	if offset = max(offset, p.logStart, p.segsEndLocked(), p.recoverFloor); offset < p.nextOffset {
		p.truncateLocked(offset)
	}
}

// replayBatch adds a recovered batch.
func (p *partition) replayBatch(batch []byte, pos tier1.Position) {
	if len(batch) < batchHeaderLen {
		return
	}
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	if base < p.nextOffset {
		return // already sealed into Tier 2; and never serve an offset twice
	}
	m := batchMeta{base: base, lastDelta: h.LastOffsetDelta, maxTs: h.MaxTimestamp, pos: pos, appended: time.Now().UnixMilli()}
	if p.topic.cluster {
		p.noteEpochLocked(batchLeaderEpoch(batch), base)
	}
	if m.last() < p.logStart {
		return // deleted by DeleteRecords before it was sealed
	}
	if len(p.batches) == 0 {
		p.activeSince = time.Now().UnixMilli()
	}
	p.batches = append(p.batches, m)
	p.activeBytes += int64(pos.Len)
	p.nextOffset = m.last() + 1
	p.hw = p.nextOffset
	if h.ProducerID >= 0 {
		p.rememberLocked(h, base, nil, m.appended)
		p.txns.observe(h, base, batch)
	}
}

// appendOutcome is what a produce to one partition resolved to.
type appendOutcome struct {
	baseOffset    int64
	logAppendTime int64
	err           error
	wait          *appendResult // to wait on before answering; nil if err
}

// append validates idempotence, assigns offsets and enqueues batch to the
// WAL. batch must stay untouched until the returned result is done.
func (p *partition) append(ctx context.Context, wal *tier1.WAL, batch []byte, h batchHeader, logAppendTime bool) (out appendOutcome, waited bool) {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()

	p.mu.RLock()
	failed, deleted := p.failed, p.deleted
	repl := p.repl.on
	epoch := p.repl.epoch
	p.mu.RUnlock()
	switch {
	case deleted:
		out.err = kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted", p.topic.name)
		return out, false
	case failed != nil:
		out.err = kerrf(kerr.KafkaStorageError, "%v", failed)
		return out, false
	}
	p.resumeAppendsLocked(wal)

	if h.ProducerID >= 0 {
		if dup, err := p.checkSequenceLocked(h); err != nil || dup != nil {
			if dup != nil {
				out.baseOffset = dup.baseOffset
				out.wait = dup.durable
				if out.wait == nil {
					out.wait = closedResult
				}
			}
			out.err = err
			return out, false
		}
	}

	base := p.nextOffset
	setBaseOffset(batch, base)
	if repl {
		setLeaderEpoch(batch, epoch)
		p.mu.Lock()
		noted := p.noteEpochLocked(epoch, base)
		p.mu.Unlock()
		if noted {
			if err := p.saveEpochs(); err != nil {
				out.err = kerrf(kerr.KafkaStorageError, "checkpoint leader epochs: %v", err)
				return out, false
			}
		}
	}
	out.logAppendTime = -1
	if logAppendTime {
		out.logAppendTime = time.Now().UnixMilli()
		setLogAppendTime(batch, out.logAppendTime)
		h.MaxTimestamp = out.logAppendTime
	}
	res := &appendResult{done: make(chan struct{})}
	m := batchMeta{base: base, lastDelta: h.LastOffsetDelta, maxTs: h.MaxTimestamp, appended: time.Now().UnixMilli()}
	gen := p.resumes.Load()
	waited, err := wal.Append(ctx, p.tp, batch, func(pos tier1.Position, err error) {
		m.pos = pos
		p.commit(m, err, gen)
		res.err = err
		close(res.done)
	})
	if err != nil {
		p.noteDiskFull(err, gen)
		if ctx.Err() != nil {
			out.err = kerrf(kerr.RequestTimedOut, "the write-ahead log stayed full for the whole request timeout")
		} else {
			out.err = kerrf(kerr.KafkaStorageError, "%v", err)
		}
		return out, waited
	}
	p.nextOffset = m.last() + 1
	if h.ProducerID >= 0 {
		p.rememberLocked(h, base, res, m.appended)
		p.observeTxn(h, base, batch)
	}
	out.baseOffset = base
	out.wait = res
	return out, waited
}

var closedResult = func() *appendResult {
	r := &appendResult{done: make(chan struct{})}
	close(r.done)
	return r
}()

// commit publishes a durable batch, or records a failure: a full disk
// until the next append resumes the partition, any other storage error for
// good. It runs on the WAL's commit goroutine and must not block.
func (p *partition) commit(m batchMeta, err error, gen uint64) {
	p.mu.Lock()
	switch {
	case errors.Is(err, tier1.ErrDiskFull):
		p.noteDiskFullLocked(err, gen)
	case err != nil:
		if p.failed == nil {
			p.failed = err
		}
	case m.base >= p.hw:
		if len(p.batches) == 0 {
			p.activeSince = time.Now().UnixMilli()
		}
		p.batches = append(p.batches, m)
		p.activeBytes += int64(m.pos.Len)
		p.hw = m.last() + 1
		p.recomputeHWLocked()
		if p.activeBytes >= int64(p.topic.segmentBytes.Load()) {
			select {
			case p.topic.sealKick <- struct{}{}:
			default:
			}
		}
	}
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()
}

func (p *partition) markDeleted() {
	p.mu.Lock()
	p.deleted = true
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.mu.Unlock()
}

// noteDiskFull records an ErrDiskFull from the WAL, whether a callback or
// Append reported it, for an append begun at resumption gen: the WAL has
// fenced the partition, and the next append must resume it
// (resumeAppendsLocked). The failure of an append older than the last
// resumption was already taken back by it.
func (p *partition) noteDiskFull(err error, gen uint64) {
	if errors.Is(err, tier1.ErrDiskFull) {
		p.mu.Lock()
		p.noteDiskFullLocked(err, gen)
		p.mu.Unlock()
	}
}

func (p *partition) noteDiskFullLocked(err error, gen uint64) {
	if p.diskFull == nil && gen == p.resumes.Load() {
		p.diskFull = err
	}
}

// resumeAppendsLocked lets the partition append again after appends failed
// on a full disk. The WAL undid them and took everything queued behind
// them, so nothing of this partition is left in the WAL (some callbacks
// may still be on their way): the offsets they were given (from the
// durable end on) and their idempotence entries are taken back.
// appendMu must be held.
func (p *partition) resumeAppendsLocked(wal *tier1.WAL) {
	p.mu.Lock()
	full, end := p.diskFull, p.hw
	if full != nil {
		p.resumes.Add(1) // before clearing: late callbacks of the failed appends are ignored
		p.diskFull = nil
	}
	p.mu.Unlock()
	if full == nil {
		return
	}
	wal.Reset(p.tp)
	p.nextOffset = end
	p.mu.Lock()
	p.txns.truncate(end)
	p.mu.Unlock()
	for _, ps := range p.producers {
		for ps.n > 0 {
			i := (ps.head - 1 + producerWindow) % producerWindow
			if ps.recent[i].baseOffset < end {
				break
			}
			ps.next = ps.recent[i].first
			ps.recent[i] = seqEntry{}
			ps.head, ps.n = i, ps.n-1
		}
	}
}

// checkSequenceLocked applies Kafka's idempotent producer rules. It returns
// the original entry for a duplicate batch. appendMu must be held.
func (p *partition) checkSequenceLocked(h batchHeader) (*seqEntry, error) {
	ps := p.producers[h.ProducerID]
	if ps == nil {
		return nil, nil // a new producer (or one whose state aged out) may start anywhere
	}
	switch {
	case h.ProducerEpoch < ps.epoch:
		return nil, kerrf(kerr.InvalidProducerEpoch, "producer %d epoch %d is older than the current epoch %d", h.ProducerID, h.ProducerEpoch, ps.epoch)
	case h.BaseSequence < 0:
		// Written by a coordinator (a transaction marker, transactional
		// offsets): only the epoch is checked. A marker at a newer epoch
		// fences the producer's older one.
		return nil, nil
	case h.ProducerEpoch > ps.epoch:
		if h.BaseSequence != 0 {
			return nil, kerrf(kerr.OutOfOrderSequenceNumber, "producer %d started epoch %d at sequence %d instead of 0", h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return nil, nil
	}
	if ps.n == 0 { // every batch in its window was taken back (resumeAppendsLocked)
		if h.BaseSequence != ps.next {
			return nil, kerrf(kerr.OutOfOrderSequenceNumber, "producer %d sent sequence %d; expected %d", h.ProducerID, h.BaseSequence, ps.next)
		}
		return nil, nil
	}
	last := h.lastSequence()
	for i := 0; i < ps.n; i++ {
		e := &ps.recent[(ps.head-1-i+producerWindow)%producerWindow]
		if e.first == h.BaseSequence && e.last == last {
			return e, nil
		}
	}
	newest := ps.recent[(ps.head-1+producerWindow)%producerWindow]
	if want := int32((int64(newest.last) + 1) % (1 << 31)); h.BaseSequence != want {
		return nil, kerrf(kerr.OutOfOrderSequenceNumber, "producer %d sent sequence %d; expected %d", h.ProducerID, h.BaseSequence, want)
	}
	return nil, nil
}

// observeTxn takes a transactional batch or marker appended at base into
// the transaction index. appendMu must be held.
func (p *partition) observeTxn(h batchHeader, base int64, batch []byte) {
	if h.Attributes&attrTransactional == 0 {
		return
	}
	p.mu.Lock()
	p.txns.observe(h, base, batch)
	p.mu.Unlock()
}

// lsoLocked is the last stable offset below the visible end hw: the first
// offset of the oldest open transaction, or hw. p.mu must be held.
func (p *partition) lsoLocked(hw int64) int64 {
	if f := p.txns.firstOpen(); f >= 0 && f < hw {
		return f
	}
	return hw
}

// appendMarker appends a transaction marker of producer id at epoch. The
// caller checks leadership, as for any append.
func (p *partition) appendMarker(ctx context.Context, wal *tier1.WAL, id int64, epoch int16, commit bool, coordinatorEpoch int32) appendOutcome {
	batch := encodeMarker(id, epoch, commit, coordinatorEpoch)
	out, _ := p.append(ctx, wal, batch, readBatchHeader(batch), false)
	return out
}

// rememberLocked records a batch accepted at now (unix millis) in its
// producer's window. appendMu must be held (or recovery must be running).
func (p *partition) rememberLocked(h batchHeader, base int64, res *appendResult, now int64) {
	rememberIn(p.producers, h, base, res, now, p.topic.producerLimits.max)
	p.nProducers.Store(int64(len(p.producers)))
}

// producerLimits bound the idempotent producer state of a topic's
// partitions (Config.ProducerIDExpiration, ProducerIDsMaxPerPartition).
type producerLimits struct {
	expireMs int64 // a producer silent this long is forgotten; 0: never
	max      int   // producers remembered per partition at most; 0: unbounded
}

// rememberIn records a batch of producer h.ProducerID at now (unix millis)
// in producers, which hold at most limit producers (0: unbounded): a new
// producer past it makes room by forgetting the least recently used.
func rememberIn(producers map[int64]*producerState, h batchHeader, base int64, res *appendResult, now int64, limit int) {
	ps := producers[h.ProducerID]
	if ps == nil || h.ProducerEpoch > ps.epoch {
		if ps == nil && limit > 0 && len(producers) >= limit {
			evictProducers(producers, limit)
		}
		ps = &producerState{epoch: h.ProducerEpoch}
		producers[h.ProducerID] = ps
	}
	ps.lastWrite = max(ps.lastWrite, now)
	if h.BaseSequence < 0 {
		return // a marker or transactional offset commit: no sequence
	}
	ps.recent[ps.head] = seqEntry{first: h.BaseSequence, last: h.lastSequence(), baseOffset: base, durable: res}
	ps.head = (ps.head + 1) % producerWindow
	ps.n = min(ps.n+1, producerWindow)
}

// evictProducers forgets the least recently used producers until a tenth
// of limit (at least one) is free: a flood of new producer IDs then pays
// for one sort per limit/10 new producers, not one scan per producer.
// Forgotten producers lose their duplicate detection, never their writes:
// an unknown producer's batch is accepted at any sequence.
func evictProducers(producers map[int64]*producerState, limit int) {
	keep := max(limit-max(limit/10, 1), 0)
	if len(producers) <= keep {
		return
	}
	type idAge struct {
		id        int64
		lastWrite int64
	}
	all := make([]idAge, 0, len(producers))
	for id, ps := range producers {
		all = append(all, idAge{id, ps.lastWrite})
	}
	slices.SortFunc(all, func(a, b idAge) int { return cmp.Compare(a.lastWrite, b.lastWrite) })
	for _, e := range all[:len(all)-keep] {
		delete(producers, e.id)
	}
}

// expireProducers forgets the producers whose last write was before
// cutoff (unix millis) and returns how many.
func expireProducers(producers map[int64]*producerState, cutoff int64) int {
	n := 0
	for id, ps := range producers {
		if ps.lastWrite < cutoff {
			delete(producers, id)
			n++
		}
	}
	return n
}

// expireProducers forgets p's producers silent for longer than the
// expiration, in the live windows and in those the next checkpoint starts
// from; their next write is accepted at any sequence, as Kafka accepts a
// producer it has no state for.
func (p *partition) expireProducers(now time.Time) int {
	if p.topic.producerLimits.expireMs <= 0 {
		return 0
	}
	cutoff := now.UnixMilli() - p.topic.producerLimits.expireMs
	p.appendMu.Lock()
	n := expireProducers(p.producers, cutoff)
	p.nProducers.Store(int64(len(p.producers)))
	p.appendMu.Unlock()
	p.maintMu.Lock()
	expireProducers(p.sealedProducers, cutoff)
	p.maintMu.Unlock()
	return n
}

// producerCount is how many producers p remembers.
func (p *partition) producerCount() int {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	return len(p.producers)
}

// localEnd returns the end of what this broker holds of p, durable here;
// in a cluster it may be ahead of the high watermark.
func (p *partition) localEnd() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.hw
}

// offsets returns the log start offset and high watermark.
func (p *partition) offsets() (logStart, hw int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart, p.visibleEndLocked()
}

// readFrom returns the durable batches starting with the one that holds
// offset (or the first after it), up to maxBytes (always at least one batch
// if any, as Kafka's KIP-74), appended to dst. Sealed ranges are copied from
// segment files and active ones from the WAL; nothing is decoded.
func (p *partition) readFrom(wal *tier1.WAL, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	start := len(dst)
	for attempt := 0; ; attempt++ {
		out, err := p.read(wal, offset, maxBytes, dst)
		// A segment deleted or replaced, or a WAL segment trimmed, between
		// the lookup and the read: look again, the data has moved.
		if err != nil && attempt < 3 && (errors.Is(err, tier2.ErrRemoved) || errors.Is(err, tier1.ErrBadPosition)) {
			dst = out[:start]
			continue
		}
		return out, err
	}
}

func (p *partition) read(wal *tier1.WAL, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		left := maxBytes - (len(dst) - start)
		if len(dst) > start && left <= 0 {
			return dst, nil
		}
		p.mu.RLock()
		segs := p.segs
		i := sort.Search(len(segs), func(i int) bool { return segs[i].Next > offset })
		if p.topic.arch != nil && len(dst) == start && (i < len(segs) && i == 0 && offset < segs[0].Base ||
			i == len(segs) && len(p.batches) > 0 && offset < p.batches[0].base) {
			p.mu.RUnlock()
			return dst, errBelowLocal
		}
		if i < len(segs) {
			p.mu.RUnlock()
			seg := segs[i]
			var atEnd bool
			var err error
			dst, atEnd, err = seg.ReadFrom(offset, left, dst, len(dst) == start)
			if err != nil || !atEnd {
				return dst, err
			}
			offset = seg.Next
			continue
		}
		i = sort.Search(len(p.batches), func(i int) bool { return p.batches[i].last() >= offset })
		var locs []tier1.Position
		size := 0
		first := len(dst) == start
		for ; i < len(p.batches); i++ {
			l := int(p.batches[i].pos.Len)
			if (len(locs) > 0 || !first) && size+l > left {
				break
			}
			locs = append(locs, p.batches[i].pos)
			size += l
			if size >= left {
				break
			}
		}
		p.mu.RUnlock()
		var err error
		for _, pos := range locs {
			if dst, err = wal.ReadAt(pos, dst); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
}

// batchRef is a batch found by a lookup: in a sealed segment (seg, pos),
// in an archived one (arch, pos) or in the WAL (meta).
type batchRef struct {
	seg  *tier2.Segment
	arch *tier3.SegmentEntry
	pos  int64
	meta batchMeta
}

// readBatch returns the batch's bytes.
func (p *partition) readBatch(wal *tier1.WAL, r batchRef) ([]byte, error) {
	if r.seg != nil {
		return r.seg.BatchAt(r.pos, nil)
	}
	return wal.ReadAt(r.meta.pos, nil)
}

// batchForTimestamp returns the first batch at or after offset from whose
// max timestamp is at or after ts: the earliest batch that may hold a record
// at or after ts. Sealed segments are searched through their time indexes.
func (p *partition) batchForTimestamp(ts, from int64) (batchRef, bool, error) {
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	for _, s := range segs {
		// A damaged segment whose headers were lost knows its max
		// timestamp only up to the damage: it is asked, and says so.
		if d := s.Damage(); s.Next <= from || (s.MaxTs < ts && (d == nil || !d.HeaderLost)) {
			continue
		}
		pos, ok, err := s.FindTimestampFrom(ts, from)
		if err != nil {
			return batchRef{}, false, err
		}
		if ok {
			return batchRef{seg: s, pos: pos}, true, nil
		}
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, m := range p.batches {
		if m.last() >= from && m.maxTs >= ts {
			return batchRef{meta: m}, true, nil
		}
	}
	return batchRef{}, false, nil
}

// maxTimestampBatch returns the batch with the largest max timestamp (the
// first one holding it).
func (p *partition) maxTimestampBatch() (batchRef, int64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var best batchRef
	bestTs := int64(0)
	found := false
	for _, s := range p.segs {
		if !s.Empty() && (!found || s.MaxTs > bestTs) {
			best, bestTs, found = batchRef{seg: s, pos: s.MaxTimestampBatch()}, s.MaxTs, true
		}
	}
	for _, m := range p.batches {
		if !found || m.maxTs > bestTs {
			best, bestTs, found = batchRef{meta: m}, m.maxTs, true
		}
	}
	return best, bestTs, found
}

// watch registers ch to be signalled (non-blocking) when the HW moves.
func (p *partition) watch(ch chan struct{}) {
	p.mu.Lock()
	p.waiters[ch] = struct{}{}
	p.mu.Unlock()
}

func (p *partition) unwatch(ch chan struct{}) {
	p.mu.Lock()
	delete(p.waiters, ch)
	p.mu.Unlock()
}
