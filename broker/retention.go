package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// Tier 2 maintenance: two goroutines started by New and stopped by Close.
//
//   - The sealer wakes every SegmentCheckInterval, or at once when a
//     partition's active bytes reach segment.bytes, and seals due partitions
//     with at most SealWorkers at a time; then it trims the WAL below the
//     oldest segment any live partition's unsealed batches still use.
//   - The cleaner wakes every RetentionCheckInterval and applies retention
//     (whole sealed segments only), DeleteRecords' log start, compaction,
//     and removes deleted topics' directories.
//
// Neither runs on the produce or fetch path; both take a partition's
// maintMu, so they never work on the same partition at once.

func (b *Broker) segRoot() string { return filepath.Join(b.cfg.DataDir, "segments") }

// configInt returns an integer topic config (validated when set).
func (b *Broker) configInt(t *topic, name string) int64 {
	v, _ := b.effectiveConfig(t, name)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func (b *Broker) cleanupPolicy(t *topic) (del, compact bool) {
	v, _ := b.effectiveConfig(t, "cleanup.policy")
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "delete":
			del = true
		case "compact":
			compact = true
		}
	}
	return del, compact
}

// partitions returns every live partition.
func (b *Broker) allPartitions() []*partition {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []*partition
	for _, t := range b.topics {
		out = append(out, t.partitions...)
	}
	return out
}

func (b *Broker) startMaintenance() {
	b.maintWG.Add(3)
	go b.sealLoop()
	go b.cleanLoop()
	go b.scrubLoop()
	if b.tier.arch != nil {
		b.maintWG.Add(1)
		go b.tierLoop()
	}
}

func (b *Broker) sealLoop() {
	defer b.maintWG.Done()
	b.everyUntilClose(b.cfg.SegmentCheckInterval, b.sealKick, false, func() { b.sealDue(time.Now()) })
}

// everyUntilClose runs fn every interval and whenever kick fires, until the
// broker closes; first says whether fn also runs once at the start.
func (b *Broker) everyUntilClose(interval time.Duration, kick <-chan struct{}, first bool, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if first {
		fn()
	}
	for {
		select {
		case <-b.closing:
			return
		case <-tick.C:
		case <-kick:
		}
		fn()
	}
}

// sealDue seals every partition that is due and then trims the WAL.
func (b *Broker) sealDue(now time.Time) {
	active := b.wal.ActiveSegment()
	var due []*partition
	for _, p := range b.allPartitions() {
		if b.sealReason(p, now, active) != "" {
			due = append(due, p)
		}
	}
	sem := make(chan struct{}, b.cfg.SealWorkers)
	var wg sync.WaitGroup
	for _, p := range due {
		select {
		case <-b.closing:
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := b.seal(p, now); err != nil {
					b.log.Error("seal failed; retrying later", "topic", p.topic.name, "partition", p.index, "err", err)
				}
			}()
		}
	}
	wg.Wait()
	if len(due) > 0 {
		b.kickTier()
	}
	b.trimWAL()
}

// sealReason says why p's active segment should be sealed now, or "".
func (b *Broker) sealReason(p *partition, now time.Time, activeWAL uint64) string {
	segBytes := int64(p.topic.segmentBytes.Load())
	segMs := b.configInt(p.topic, "segment.ms")
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch {
	case p.deleted || p.failed != nil || len(p.batches) == 0:
		return ""
	case p.activeBytes >= segBytes:
		return "segment.bytes"
	case now.UnixMilli()-p.activeSince >= segMs:
		return "segment.ms"
	case p.batches[0].pos.Segment+uint64(b.cfg.WALPinSegments) <= activeWAL:
		return "wal"
	}
	return ""
}

// trimWAL removes the WAL segments no live partition's unsealed batches
// use. The active segment is read first: every batch committed after that
// lands in it or a later one, and every batch committed before it is in
// some partition's list by the time that partition is scanned.
func (b *Broker) trimWAL() {
	keep := b.wal.ActiveSegment()
	for _, p := range b.allPartitions() {
		p.mu.RLock()
		if !p.deleted && len(p.batches) > 0 {
			keep = min(keep, p.batches[0].pos.Segment)
		}
		p.mu.RUnlock()
	}
	if n, err := b.wal.RemoveSegmentsBefore(keep); err != nil {
		b.log.Error("trimming the wal failed", "err", err)
	} else if n > 0 {
		b.metrics.walSegmentsTrimmed.Add(float64(n))
		b.log.Debug("trimmed wal", "segments", n, "first_kept", keep)
	}
}

// seal moves p's due active batches into new sealed segments of at most
// segment.bytes each (at least one batch each).
func (b *Broker) seal(p *partition, now time.Time) error {
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	reason := b.sealReason(p, now, b.wal.ActiveSegment())
	if reason == "" {
		return nil
	}
	segBytes := int64(p.topic.segmentBytes.Load())
	// Seal at most what is durable now, so a busy partition cannot keep
	// this loop going forever.
	// In a cluster, never above the high watermark: a follower may have
	// to truncate what is above it, and sealed data is never truncated.
	p.mu.RLock()
	limit := p.visibleEndLocked()
	p.mu.RUnlock()
	var buf []byte
	for {
		p.mu.RLock()
		batches, activeBytes, logStart, segsEnd := p.batches, p.activeBytes, p.logStart, p.segsEndLocked()
		p.mu.RUnlock()
		if len(batches) == 0 || batches[0].base >= limit || (reason == "segment.bytes" && activeBytes < segBytes) {
			return nil
		}
		k, size := 0, int64(0)
		for k < len(batches) && batches[k].base < limit && (k == 0 || size+int64(batches[k].pos.Len) <= segBytes) {
			size += int64(batches[k].pos.Len)
			k++
		}
		chunk := batches[:k]
		base := segsEnd
		if base < 0 {
			base = chunk[0].base
		}
		next := chunk[k-1].last() + 1
		producers := cloneProducers(p.sealedProducers)
		txns := p.sealedTxns.clone()
		var w *tier2.Writer
		for _, m := range chunk {
			var err error
			if buf, err = b.wal.ReadAt(m.pos, buf[:0]); err != nil {
				if w != nil {
					w.Abort()
				}
				return err
			}
			h := readBatchHeader(buf)
			if h.ProducerID >= 0 {
				rememberIn(producers, h, m.base, nil, m.appended, p.topic.producerLimits.max)
				txns.observe(h, m.base, buf)
			}
			if m.last() < logStart {
				continue // deleted by DeleteRecords: not worth copying
			}
			if w == nil {
				if w, err = tier2.Create(b.fs, p.dir, b.files, base); err != nil {
					return err
				}
			}
			if err := w.Append(buf); err != nil {
				w.Abort()
				return err
			}
		}
		var seg *tier2.Segment
		if w != nil {
			var err error
			if seg, err = w.Finish(next); err != nil {
				return err
			}
		}
		// The batches just sealed may be older than the expiration (a
		// segment can stay active for segment.ms): their producers are
		// forgotten here as the cleaning pass forgot them live.
		if ms := p.topic.producerLimits.expireMs; ms > 0 {
			expireProducers(producers, now.UnixMilli()-ms)
		}
		// Aborted transactions wholly below what is held locally are
		// listed in the archive's manifest (the local copy was deleted
		// only once archived): the checkpoint keeps the rest.
		keepFrom := logStart
		if b.tier.arch != nil {
			p.mu.RLock()
			keepFrom = max(keepFrom, p.localStartLocked())
			p.mu.RUnlock()
		}
		txns.sealed(next)
		txns.pruneBelow(keepFrom)
		if err := tier2.WriteProducers(b.fs, p.dir, next, producerSnapshot(producers), txns.snapshot()); err != nil {
			return err
		}
		p.sealedProducers = producers
		p.sealedTxns = txns
		p.mu.Lock()
		p.txns.sealed(next)
		p.txns.pruneBelow(keepFrom)
		p.batches = p.batches[k:]
		p.activeBytes -= size
		if seg != nil {
			p.segs = append(slices.Clip(p.segs), seg)
		}
		if len(p.batches) == 0 {
			p.activeSince = 0
		} else if reason != "segment.ms" {
			p.activeSince = now.UnixMilli()
		}
		p.mu.Unlock()
		if seg != nil {
			b.metrics.segmentsSealed.Inc()
			b.metrics.segmentBytesSealed.Add(float64(size))
		}
		b.log.Debug("sealed segment", "topic", p.topic.name, "partition", p.index, "reason", reason,
			"base", base, "next", next, "bytes", size)
	}
}

func cloneProducers(m map[int64]*producerState) map[int64]*producerState {
	out := make(map[int64]*producerState, len(m))
	for id, ps := range m {
		c := *ps
		out[id] = &c
	}
	return out
}

func producerSnapshot(m map[int64]*producerState) []tier2.ProducerState {
	out := make([]tier2.ProducerState, 0, len(m))
	for id, ps := range m {
		s := tier2.ProducerState{ID: id, Epoch: ps.epoch}
		for i := ps.n - 1; i >= 0; i-- {
			e := ps.recent[(ps.head-1-i+2*producerWindow)%producerWindow]
			s.Batches = append(s.Batches, tier2.ProducerBatch{FirstSeq: e.first, LastSeq: e.last, Base: e.baseOffset})
		}
		out = append(out, s)
	}
	return out
}

// producersFromSnapshot rebuilds the windows of a producers checkpoint as
// last written at now (unix millis): the checkpoint does not record when
// each producer last wrote, so a restart restarts their expiry clocks.
func producersFromSnapshot(ps []tier2.ProducerState, now int64) map[int64]*producerState {
	m := make(map[int64]*producerState, len(ps))
	for _, s := range ps {
		st := &producerState{epoch: s.Epoch, lastWrite: now}
		for _, e := range s.Batches {
			st.recent[st.head] = seqEntry{first: e.FirstSeq, last: e.LastSeq, baseOffset: e.Base}
			st.head = (st.head + 1) % producerWindow
			st.n = min(st.n+1, producerWindow)
		}
		m[s.ID] = st
	}
	return m
}

// loadPartitions loads every partition's sealed segments, a few partitions
// at a time: validation is mostly small reads, so it overlaps well.
func (b *Broker) loadPartitions() (int, error) {
	var parts []*partition
	for _, t := range b.topics {
		parts = append(parts, t.partitions...)
	}
	var mu sync.Mutex
	var errs []error
	nsegs := 0
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, p := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := b.loadPartition(p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("broker: load segments of %s/%d: %w", p.topic.name, p.index, err))
			}
			nsegs += len(p.segs)
		}()
	}
	wg.Wait()
	return nsegs, errors.Join(errs...)
}

// loadPartition opens p's sealed segments and checkpoints before the WAL
// is replayed: the WAL then supplies only batches past the sealed end.
func (b *Broker) loadPartition(p *partition) error {
	segs, rep, err := tier2.Load(b.fs, p.dir, b.files, b.log)
	if err != nil {
		return err
	}
	if rep.Rebuilt > 0 || rep.Damaged > 0 || rep.Removed > 0 {
		b.log.Warn("checked sealed segments", "topic", p.topic.name, "partition", p.index,
			"rebuilt_indexes", rep.Rebuilt, "damaged", rep.Damaged, "removed_unfinished", rep.Removed)
	}
	p.segs = segs
	if es, _, err := tier2.ReadLeaderEpochs(b.fs, p.dir); err != nil {
		b.log.Error("leader epochs checkpoint unreadable; epochs before the WAL are unknown", "topic", p.topic.name, "partition", p.index, "err", err)
	} else {
		p.epochs = es
	}
	logStart, ok, err := tier2.ReadLogStart(b.fs, p.dir)
	if err != nil {
		b.log.Error("log start checkpoint unreadable; using the first segment", "topic", p.topic.name, "partition", p.index, "err", err)
	}
	if !ok {
		logStart = 0
	}
	end, ps, txns, ok, perr := tier2.ReadProducers(b.fs, p.dir)
	resolveDamagedEnds(segs, end, ok)
	segsEnd := max(p.segsEndLocked(), 0)
	// With Tier 3 the log start may lie below the first local segment (the
	// offsets between are archived) and is kept from the checkpoint, or 0
	// without one: publishArchive raises it to the log start the manifest
	// records once it is read.
	if len(segs) > 0 && b.tier.arch == nil {
		logStart = max(logStart, segs[0].Base)
	}
	if b.tier.arch != nil {
		b.loadManifestCopy(p)
	}
	p.logStart = logStart

	if perr != nil {
		b.log.Warn("producer checkpoint unreadable; rebuilding from the last segment", "topic", p.topic.name, "partition", p.index, "err", perr)
	}
	from := int64(0)
	if ok {
		p.sealedProducers = producersFromSnapshot(ps, time.Now().UnixMilli())
		p.sealedTxns = txnIndexFromSnapshot(txns)
		from = end
		// The checkpoint's end was the log end when it was written: never
		// hand out offsets below it again, even if the segment that ended
		// there lost its index and its last records were compacted away.
		p.recoverFloor = end
	} else if len(segs) > 0 {
		from = segs[len(segs)-1].Base
	}
	// Batches sealed after the checkpoint was written (a crash between the
	// two) or without one: rebuild their windows from the segments.
	if from < segsEnd {
		var buf []byte
		for next := from; next < segsEnd; {
			buf, err = p.read(nil, next, 1<<20, buf[:0])
			if err != nil || len(buf) == 0 {
				break
			}
			for rest := buf; len(rest) >= batchHeaderLen; {
				n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
				if n < batchHeaderLen || n > len(rest) {
					break
				}
				h := readBatchHeader(rest)
				base := batchBaseOffset(rest)
				if h.ProducerID >= 0 {
					rememberIn(p.sealedProducers, h, base, nil, time.Now().UnixMilli(), p.topic.producerLimits.max)
					p.sealedTxns.observe(h, base, rest[:n])
				}
				next = base + int64(h.LastOffsetDelta) + 1
				rest = rest[n:]
			}
		}
	}
	p.producers = cloneProducers(p.sealedProducers)
	p.nProducers.Store(int64(len(p.producers)))
	p.sealedTxns.sealed(segsEnd)
	p.txns = p.sealedTxns.clone()
	// The WAL replay skips batches below nextOffset: those sealed, even if
	// their segments are gone locally (archived to Tier 3, then deleted
	// by local retention, without moving the log start).
	p.nextOffset = max(segsEnd, p.recoverFloor)
	p.hw = p.nextOffset
	return nil
}

// resolveDamagedEnds gives each damaged segment whose index headers were
// lost the end the partition knows for it: the next segment's base, or for
// the last segment the sealed end of the producers checkpoint (written at
// every seal), when either lies past what its verified prefix shows.
// Without either, a last segment ends where its prefix does, and the WAL
// replay supplies any batches past it that it still holds.
func resolveDamagedEnds(segs []*tier2.Segment, sealedEnd int64, checkpointed bool) {
	for i, s := range segs {
		d := s.Damage()
		if d == nil || !d.HeaderLost {
			continue
		}
		switch {
		case i+1 < len(segs):
			s.ResolveNext(segs[i+1].Base)
		case checkpointed && sealedEnd > s.Base:
			s.ResolveNext(sealedEnd)
		}
	}
}

// finishRecovery runs after the WAL replay.
func (p *partition) finishRecovery() {
	p.nextOffset = max(p.nextOffset, p.logStart, p.recoverFloor)
	p.hw = p.nextOffset
	// Epochs noted by batches a crash lost before their fsync.
	p.cutEpochsLocked(p.nextOffset)
	// What was sealed was at or below the high watermark; the rest waits
	// for the leader (or, as leader, for the ISR) to confirm it.
	p.repl.hwm = max(p.logStart, p.segsEndLocked(), 0)
}

// cleanLoop runs retention, compaction and deleted-topic cleanup.
func (b *Broker) cleanLoop() {
	defer b.maintWG.Done()
	b.everyUntilClose(b.cfg.RetentionCheckInterval, b.cleanKick, false, func() { b.clean(time.Now()) })
}

func (b *Broker) clean(now time.Time) {
	for _, p := range b.allPartitions() {
		select {
		case <-b.closing:
			return
		default:
		}
		if n := p.expireProducers(now); n > 0 {
			b.log.Debug("forgot expired idempotent producers", "topic", p.topic.name, "partition", p.index, "producers", n)
		}
		if err := b.retain(p, now); err != nil {
			b.log.Error("retention failed", "topic", p.topic.name, "partition", p.index, "err", err)
		}
		if _, compact := b.cleanupPolicy(p.topic); compact {
			if err := b.compact(p, now); err != nil {
				b.log.Error("compaction failed", "topic", p.topic.name, "partition", p.index, "err", err)
			}
		}
	}
	b.removeDeleted()
}

// retentionPlan returns how many of the oldest segments retention deletes:
// those wholly below the log start; with cleanup.policy delete, those
// whose newest timestamp is older than retention.ms, then the oldest while
// the partition stays at or above retention.bytes without them (Kafka's
// rule); and archived segments by the same rules under local.retention.*.
// Only a prefix is ever deleted, and never the active segment.
func retentionPlan(segs []*tier2.Segment, logStart, activeBytes int64, del bool, retMs, retBytes, localMs, localBytes, now int64) int {
	n := 0
	for n < len(segs) && segs[n].Next <= logStart {
		n++
	}
	if !del {
		return n
	}
	if localMs == -2 {
		localMs = retMs
	}
	if localBytes == -2 {
		localBytes = retBytes
	}
	newest := func(s *tier2.Segment) int64 {
		if s.Empty() {
			return s.Created
		}
		return s.MaxTs
	}
	for n < len(segs) {
		s := segs[n]
		if (retMs >= 0 && newest(s) < now-retMs) || (s.Archived() && localMs >= 0 && newest(s) < now-localMs) {
			n++
			continue
		}
		break
	}
	total := activeBytes
	for _, s := range segs[n:] {
		total += s.Size
	}
	for n < len(segs) {
		s := segs[n]
		if (retBytes >= 0 && total-s.Size >= retBytes) || (s.Archived() && localBytes >= 0 && total-s.Size >= localBytes) {
			total -= s.Size
			n++
			continue
		}
		break
	}
	return n
}

func (b *Broker) retain(p *partition, now time.Time) error {
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	t := p.topic
	del, compact := b.cleanupPolicy(t)
	p.mu.RLock()
	segs, logStart, activeBytes, deleted := p.segs, p.logStart, p.activeBytes, p.deleted
	p.mu.RUnlock()
	if deleted {
		return nil
	}
	if b.tier.arch != nil && !compact { // compacted topics are not archived
		return b.retainTiered(p, now, segs, logStart, activeBytes)
	}
	if len(segs) == 0 {
		return nil
	}
	n := retentionPlan(segs, logStart, activeBytes, del, b.configInt(t, "retention.ms"), b.configInt(t, "retention.bytes"),
		b.configInt(t, "local.retention.ms"), b.configInt(t, "local.retention.bytes"), now.UnixMilli())
	if n == 0 {
		return nil
	}
	newStart := segs[len(segs)-1].Next
	if n < len(segs) {
		newStart = segs[n].Base
	}
	if err := b.advanceLogStart(p, newStart); err != nil {
		return err
	}
	p.mu.Lock()
	p.segs = slices.Clone(p.segs[n:])
	p.mu.Unlock()
	var errs []error
	for _, s := range segs[:n] {
		errs = append(errs, s.Remove())
	}
	b.metrics.segmentsDeleted.Add(float64(n))
	b.log.Debug("retention deleted segments", "topic", t.name, "partition", p.index, "segments", n, "log_start", newStart)
	return errors.Join(errs...)
}

// advanceLogStart durably moves p's log start forward to off (never back).
func (b *Broker) advanceLogStart(p *partition, off int64) error {
	p.logStartMu.Lock()
	defer p.logStartMu.Unlock()
	p.mu.RLock()
	cur := p.logStart
	p.mu.RUnlock()
	if off <= cur {
		return nil
	}
	if err := tier2.WriteLogStart(b.fs, p.dir, off); err != nil {
		return err
	}
	p.mu.Lock()
	p.logStart = max(p.logStart, off)
	p.mu.Unlock()
	return nil
}

// removeDeleted deletes the segments of deleted topics, and the partition
// directories of topics whose deletion meta.json records (a crash may have
// left them behind). A directory of a topic that is neither known nor
// recorded as deleted is left alone: unknown is not deleted.
func (b *Broker) removeDeleted() {
	b.maintMu.Lock()
	dead := b.deletedParts
	b.deletedParts = nil
	b.maintMu.Unlock()
	b.removeArchived(dead)
	for _, p := range dead {
		p.maintMu.Lock()
		p.mu.Lock()
		segs := p.segs
		p.segs = nil
		p.mu.Unlock()
		for _, s := range segs {
			if err := s.Remove(); err != nil {
				b.log.Warn("removing a deleted topic's segment failed", "topic", p.topic.name, "err", err)
			}
		}
		p.maintMu.Unlock()
	}
	ents, err := b.fs.ReadDir(b.segRoot())
	if err != nil {
		return
	}
	b.adminMu.Lock()
	deleted := map[[16]byte]bool{}
	for _, s := range b.meta.DeletedTopics {
		if id, err := parseTopicID(s); err == nil {
			deleted[id] = true
		}
	}
	b.adminMu.Unlock()
	live := map[string]bool{}
	for _, p := range b.allPartitions() {
		live[filepath.Base(p.dir)] = true
	}
	remaining := map[[16]byte]bool{}
	for _, e := range ents {
		id, _, ok := tier2.ParsePartitionDir(e.Name())
		if !ok || live[e.Name()] || !e.IsDir() {
			continue
		}
		if !deleted[id] {
			if !b.unknownDirs[e.Name()] {
				b.unknownDirs[e.Name()] = true
				b.log.Warn("a partition directory of no known topic; left in place", "dir", filepath.Join(b.segRoot(), e.Name()))
			}
			continue
		}
		dir := filepath.Join(b.segRoot(), e.Name())
		files, err := b.fs.ReadDir(dir)
		if err != nil {
			remaining[id] = true
			continue
		}
		for _, f := range files {
			b.fs.Remove(filepath.Join(dir, f.Name()))
		}
		if err := b.fs.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			remaining[id] = true
			b.log.Warn("removing a deleted partition's directory failed", "dir", e.Name(), "err", err)
		}
	}
	b.fs.SyncDir(b.segRoot())
	b.forgetRemovedLocked(deleted, remaining)
}

// forgetRemovedLocked drops from meta.json the deleted topics whose
// directories are all gone, unless another delete of theirs is pending.
func (b *Broker) forgetRemovedLocked(deleted, remaining map[[16]byte]bool) {
	b.maintMu.Lock()
	for _, p := range b.deletedParts {
		remaining[p.topic.id] = true
	}
	b.maintMu.Unlock()
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	st := b.meta
	st.DeletedTopics = slices.DeleteFunc(slices.Clone(st.DeletedTopics), func(s string) bool {
		id, err := parseTopicID(s)
		return err == nil && deleted[id] && !remaining[id]
	})
	if len(st.DeletedTopics) == len(b.meta.DeletedTopics) {
		return
	}
	if err := saveMeta(b.fs, b.cfg.DataDir, &st); err != nil {
		b.log.Warn("recording removed topics failed", "err", err)
		return
	}
	b.meta = st
}
