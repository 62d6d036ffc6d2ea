package broker

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/tier1"
)

// producerWindow is how many recent batches per producer are remembered for
// duplicate detection: Kafka's max.in.flight.requests.per.connection limit
// for idempotent producers.
const producerWindow = 5

// partition is one partition's log: offsets are assigned under appendMu and
// the batch is enqueued to the WAL before appendMu is released, so WAL order
// is offset order; the WAL's commit goroutine then publishes durable batches
// under mu.
type partition struct {
	topic *topic
	index int32
	tp    tier1.TopicPartition

	appendMu   sync.Mutex // guards the following
	nextOffset int64      // log end offset including appends not yet durable
	producers  map[int64]*producerState

	mu       sync.RWMutex // guards the following
	batches  []batchMeta  // durable batches in offset order
	hw       int64        // offset after the last durable record: what consumers may read
	logStart int64
	failed   error                      // sticky storage error
	deleted  bool                       // topic deleted
	waiters  map[chan struct{}]struct{} // long-polling fetches
}

// batchMeta locates one durable batch.
type batchMeta struct {
	base      int64
	lastDelta int32
	maxTs     int64
	pos       tier1.Position
}

func (m *batchMeta) last() int64 { return m.base + int64(m.lastDelta) }

type producerState struct {
	epoch  int16
	recent [producerWindow]seqEntry // ring; recent[(head-1)%N] is newest
	head   int
	n      int
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
		topic:     t,
		index:     i,
		tp:        tier1.TopicPartition{TopicID: t.id, Partition: i},
		producers: make(map[int64]*producerState),
		waiters:   make(map[chan struct{}]struct{}),
	}
}

// replay adds a recovered batch. It runs before the broker serves.
func (p *partition) replay(batch []byte, pos tier1.Position) {
	if len(batch) < batchHeaderLen {
		return
	}
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	if base < p.nextOffset {
		return // cannot happen with a sound WAL; never serve an offset twice
	}
	m := batchMeta{base: base, lastDelta: h.LastOffsetDelta, maxTs: h.MaxTimestamp, pos: pos}
	p.batches = append(p.batches, m)
	p.nextOffset = m.last() + 1
	p.hw = p.nextOffset
	if h.ProducerID >= 0 {
		p.rememberLocked(h, base, nil)
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
	p.mu.RUnlock()
	switch {
	case deleted:
		out.err = kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted", p.topic.name)
		return out, false
	case failed != nil:
		out.err = kerrf(kerr.KafkaStorageError, "%v", failed)
		return out, false
	}

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
	out.logAppendTime = -1
	if logAppendTime {
		out.logAppendTime = time.Now().UnixMilli()
		setLogAppendTime(batch, out.logAppendTime)
		h.MaxTimestamp = out.logAppendTime
	}
	res := &appendResult{done: make(chan struct{})}
	m := batchMeta{base: base, lastDelta: h.LastOffsetDelta, maxTs: h.MaxTimestamp}
	waited, err := wal.Append(ctx, p.tp, batch, func(pos tier1.Position, err error) {
		m.pos = pos
		p.commit(m, err)
		res.err = err
		close(res.done)
	})
	if err != nil {
		if ctx.Err() != nil {
			out.err = kerrf(kerr.RequestTimedOut, "the write-ahead log stayed full for the whole request timeout")
		} else {
			out.err = kerrf(kerr.KafkaStorageError, "%v", err)
		}
		return out, waited
	}
	p.nextOffset = m.last() + 1
	if h.ProducerID >= 0 {
		p.rememberLocked(h, base, res)
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

// commit publishes a durable batch, or makes a storage failure sticky. It
// runs on the WAL's commit goroutine and must not block.
func (p *partition) commit(m batchMeta, err error) {
	p.mu.Lock()
	if err != nil {
		if p.failed == nil {
			p.failed = err
		}
	} else if m.base >= p.hw {
		p.batches = append(p.batches, m)
		p.hw = m.last() + 1
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
	case h.ProducerEpoch > ps.epoch:
		if h.BaseSequence != 0 {
			return nil, kerrf(kerr.OutOfOrderSequenceNumber, "producer %d started epoch %d at sequence %d instead of 0", h.ProducerID, h.ProducerEpoch, h.BaseSequence)
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

// rememberLocked records an accepted batch in its producer's window.
// appendMu must be held (or recovery must be running).
func (p *partition) rememberLocked(h batchHeader, base int64, res *appendResult) {
	ps := p.producers[h.ProducerID]
	if ps == nil || h.ProducerEpoch > ps.epoch {
		ps = &producerState{epoch: h.ProducerEpoch}
		p.producers[h.ProducerID] = ps
	}
	ps.recent[ps.head] = seqEntry{first: h.BaseSequence, last: h.lastSequence(), baseOffset: base, durable: res}
	ps.head = (ps.head + 1) % producerWindow
	ps.n = min(ps.n+1, producerWindow)
}

// offsets returns the log start offset and high watermark.
func (p *partition) offsets() (logStart, hw int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart, p.hw
}

// readFrom returns the durable batches starting with the one that holds
// offset, up to maxBytes (always at least one batch if any, as Kafka's
// KIP-74), appended to dst.
func (p *partition) readFrom(wal *tier1.WAL, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	p.mu.RLock()
	i := sort.Search(len(p.batches), func(i int) bool { return p.batches[i].last() >= offset })
	var locs []tier1.Position
	size := 0
	for ; i < len(p.batches); i++ {
		l := int(p.batches[i].pos.Len)
		if len(locs) > 0 && size+l > maxBytes {
			break
		}
		locs = append(locs, p.batches[i].pos)
		size += l
		if size >= maxBytes {
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

// offsetForTimestamp returns the first batch whose max timestamp is at or
// after ts: the earliest offset that may hold a record at or after ts.
func (p *partition) batchForTimestamp(ts int64) (batchMeta, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, m := range p.batches {
		if m.maxTs >= ts {
			return m, true
		}
	}
	return batchMeta{}, false
}

// maxTimestampBatch returns the batch with the largest max timestamp.
func (p *partition) maxTimestampBatch() (batchMeta, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var best batchMeta
	found := false
	for _, m := range p.batches {
		if !found || m.maxTs > best.maxTs {
			best, found = m, true
		}
	}
	return best, found
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
