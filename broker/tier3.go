package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// Tier 3: archiving sealed segments to object storage and reading them
// back (DESIGN.md, data paths 2 and 4).
//
//   - The tier loop (one goroutine, started with the maintenance loops when
//     Config.Tier3 is set) wakes after every seal and every
//     SegmentCheckInterval, and runs the uploader for each partition, at
//     most Tier3UploadWorkers at once.
//   - The uploader of a partition first loads its manifest (a restarted or
//     new leader resumes from it) and deletes objects no manifest names
//     (left by an upload killed midway). Then, oldest first, for each local
//     segment the manifest lacks: put .log, .index and .timeindex, verify
//     them, write the new manifest, and only then mark the local segment
//     archived (tier2.Segment.MarkArchived), which lets local.retention.*
//     delete it. A failure stops the partition's pass and retries after a
//     capped exponential backoff; nothing is deleted because of it.
//   - Reads: an offset at or above the log start but below the local log
//     start (the first local segment, else the first active batch) is read
//     from the archive: the manifest's segment, its index fetched whole, the
//     .log by ranged GETs of checked chunks through the on-disk cache.
//   - Retention (retention.go, retainTiered): retention.ms/bytes apply to
//     the whole log, archive included, and advance the log start;
//     local.retention.* delete local copies of archived segments only.
//     Archived segments below the log start leave the manifest, then their
//     objects are deleted.
//   - Compacted topics (cleanup.policy containing compact) are not
//     archived, as in Kafka.
//   - A damaged segment (scrub.go) is never uploaded, nor any segment
//     after it, until it is repaired.
//
// Lock order: maintMu, then arch.mu, then mu.

// tierState is the broker's Tier 3 state; arch is nil without Tier 3.
type tierState struct {
	arch      *tier3.Archive
	kick      chan struct{} // capacity 1: a segment was sealed
	described sync.Map      // topic id -> int32 partitions written to topic.json this run
	uploaded  atomic.Int64  // segments archived since start

	// For metrics, since start: objects and bytes the uploader put and
	// verified, failed upload passes of a partition, and passes that ran
	// again after a failure.
	uploadedObjects, uploadedBytes atomic.Int64
	uploadErrors, uploadRetries    atomic.Int64
}

// archState is a partition's uploader state.
type archState struct {
	mu sync.Mutex // serialises manifest writes (uploader, retention, topic deletion); guards the following
	// man is the manifest this broker may write on, as leader at manEpoch
	// (it fenced the store at that epoch and swept it): nil until then,
	// and again whenever leadership changes or a conditional write lost.
	man      *tier3.Manifest
	manEpoch int32
	// seen is the newest manifest this broker has read or written, as
	// leader or follower (checkpointed in the partition directory as
	// manifest.json): what a missing or rolled-back manifest in the store
	// is measured against and restored from. Nil when none is known.
	// Written under mu; read without it (adoption asks for its epoch).
	seen atomic.Pointer[tier3.Manifest]

	retryAt atomic.Int64 // unix nanos before which the uploader skips the partition
	backoff time.Duration
}

// errBelowLocal is returned by a local read of an offset below the local
// log start: the data is archived (or being archived) and the caller
// reads the archive.
var errBelowLocal = errors.New("broker: offset below the local log start")

// errArchiveNotLoaded is a read of archived offsets before the partition's
// manifest could be read (the object store is unreachable).
var errArchiveNotLoaded = errors.New("broker: the tier 3 manifest is not loaded yet")

// openTier3 sets up archiving when the config names a store.
func (b *Broker) openTier3() error {
	if b.cfg.Tier3 == nil {
		return nil
	}
	cache, err := tier3.NewCache(filepath.Join(b.cfg.DataDir, "tier3-cache"), b.cfg.Tier3CacheBytes)
	if err != nil {
		return err
	}
	a, err := tier3.NewArchive(b.cfg.Tier3, tier3.ArchiveConfig{
		Cache: cache, ChunkSize: b.cfg.Tier3ChunkBytes, ReadAhead: b.cfg.Tier3ReadAheadBytes,
	})
	if err != nil {
		return err
	}
	b.tier.arch = a
	b.tier.kick = make(chan struct{}, 1)
	return nil
}

func (b *Broker) kickTier() {
	if b.tier.arch == nil {
		return
	}
	select {
	case b.tier.kick <- struct{}{}:
	default:
	}
}

func (b *Broker) tierLoop() {
	defer b.maintWG.Done()
	defer b.tier.arch.Close()
	ctx, cancel := b.ctxUntilClose(context.Background())
	defer cancel()
	verified := false
	var retryAt time.Time
	b.everyUntilClose(b.cfg.SegmentCheckInterval, b.tier.kick, true, func() {
		// Nothing touches the archive before it is known to be this
		// cluster's (identity.go).
		if !verified {
			if time.Now().Before(retryAt) {
				return
			}
			ok, err := b.verifyArchive(ctx)
			if err != nil && ctx.Err() == nil && !errors.Is(err, ErrOtherCluster) {
				b.log.Warn("cannot check whom the archive belongs to; retrying", "err", err)
				retryAt = time.Now().Add(b.cfg.Tier3RetryMin)
			}
			if verified = ok; !ok {
				return
			}
		}
		b.uploadDue(ctx)
	})
}

// uploadDue runs the uploader of every partition not backing off.
func (b *Broker) uploadDue(ctx context.Context) {
	sem := make(chan struct{}, b.cfg.Tier3UploadWorkers)
	var wg sync.WaitGroup
	now := time.Now().UnixNano()
	before := b.tier.uploaded.Load()
	for _, p := range b.allPartitions() {
		if p.arch.retryAt.Load() > now {
			continue
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if p.arch.retryAt.Load() != 0 {
					b.tier.uploadRetries.Add(1)
				}
				err := b.archivePartition(ctx, p)
				p.arch.mu.Lock()
				if err != nil && ctx.Err() == nil {
					b.tier.uploadErrors.Add(1)
					p.arch.backoff = min(max(2*p.arch.backoff, b.cfg.Tier3RetryMin), b.cfg.Tier3RetryMax)
					d := p.arch.backoff/2 + rand.N(p.arch.backoff/2+1)
					p.arch.retryAt.Store(time.Now().Add(d).UnixNano())
					b.log.Warn("tier 3 upload failed; local data kept, retrying", "topic", p.topic.name, "partition", p.index,
						"retry_in", d.Round(time.Millisecond), "err", err)
				} else if err == nil {
					p.arch.backoff = 0
					p.arch.retryAt.Store(0)
				}
				p.arch.mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if b.tier.uploaded.Load() != before {
		// Local retention may now delete what was just archived.
		select {
		case b.cleanKick <- struct{}{}:
		default:
		}
	}
}

func (b *Broker) archivePrefix(p *partition) string {
	return tier3.PartitionPrefix(p.topic.id, p.index)
}

// describeTopic writes topic.json (for restore) once per run and after
// the partition count changes.
func (b *Broker) describeTopic(ctx context.Context, t *topic) error {
	n := int32(b.topicPartitionCount(t))
	if v, ok := b.tier.described.Load(t.id); ok && v.(int32) == n {
		return nil
	}
	err := tier3.WriteTopicInfo(ctx, b.tier.arch.Store(), t.id, tier3.TopicInfo{
		Name: t.name, ID: topicIDString(t.id), Partitions: n, Configs: b.topicConfigs(t), Updated: time.Now().UnixMilli(),
	})
	if err == nil {
		b.tier.described.Store(t.id, n)
	}
	return err
}

// publishArchive makes m's segments readable. A manifest read from the
// store also carries the log start retention recorded in it: a broker
// whose own log start checkpoint is older (it was down while the leader's
// retention ran) moves up to it, but never past what it holds. Nothing
// else about a manifest moves the log start: a missing or older one least
// of all.
func (b *Broker) publishArchive(p *partition, m *tier3.Manifest) error {
	p.mu.Lock()
	p.archSegs = m.Segments
	p.archLoaded = true
	logStart, end := p.logStart, p.hw
	p.mu.Unlock()
	if m.Exists && min(m.LogStart, end) > logStart {
		return b.advanceLogStart(p, min(m.LogStart, end))
	}
	return nil
}

// localStartLocked is the first offset held locally. mu must be held.
func (p *partition) localStartLocked() int64 {
	switch {
	case len(p.segs) > 0:
		return p.segs[0].Base
	case len(p.batches) > 0:
		return p.batches[0].base
	}
	return p.hw
}

func (p *partition) localStart() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return max(p.localStartLocked(), p.logStart)
}

// archiveCtx bounds one archived read.
func archiveCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// readPartition is partition.readFrom with offsets below the local log
// start read from the archive.
func (b *Broker) readPartition(p *partition, offset int64, maxBytes int, dst []byte) ([]byte, error) {
	out, _, err := b.readPartitionVec(p, offset, maxBytes, dst, nil, nil)
	return out, err
}

// readPartitionVec is readPartition where archived bytes are not copied:
// given views (non-nil), an archived read appends read-only views of the
// archive's verified chunks to it instead of bytes to dst (see
// tier3.Archive.ReadVec), valid until hold is released (nil: for as long
// as they are referenced); a local read appends to dst as ever.
func (b *Broker) readPartitionVec(p *partition, offset int64, maxBytes int, dst []byte, views [][]byte, hold *tier3.Hold) ([]byte, [][]byte, error) {
	if b.tier.arch == nil {
		out, err := p.readFrom(b.wal, offset, maxBytes, dst)
		return out, views, err
	}
	start, vstart := len(dst), len(views)
	for attempt := 0; ; attempt++ {
		p.mu.RLock()
		local := p.localStartLocked()
		segs, loaded := p.archSegs, p.archLoaded
		p.mu.RUnlock()
		if offset >= local {
			out, err := p.readFrom(b.wal, offset, maxBytes, dst)
			if errors.Is(err, errBelowLocal) && attempt < 3 {
				dst = out[:start]
				continue // local retention deleted the segment meanwhile
			}
			return out, views, err
		}
		if !loaded {
			if attempt == 0 && b.waitArchiveLoaded(p, 5*time.Second) {
				continue
			}
			return dst, views, errArchiveNotLoaded
		}
		ctx, cancel := archiveCtx()
		var n int
		var err error
		if views != nil {
			views, n, err = b.tier.arch.ReadVec(ctx, b.archivePrefix(p), segs, offset, maxBytes, views, hold)
		} else {
			dst, err = b.tier.arch.Read(ctx, b.archivePrefix(p), segs, offset, maxBytes, dst)
			n = len(dst) - start
		}
		cancel()
		if err != nil {
			return dst[:start], views[:vstart], err
		}
		if n > 0 {
			return dst, views, nil
		}
		// Nothing archived at or after offset below the local start: a
		// hole (segments lost from the bucket). Serve from what follows.
		b.log.Warn("offsets missing from the archive; serving from the local log start", "topic", p.topic.name,
			"partition", p.index, "offset", offset, "local_start", local)
		offset = local
	}
}

// waitArchiveLoaded waits up to timeout for the uploader's first pass to
// read p's manifest (it runs at startup); a broker just started answers
// fetches of archived offsets instead of failing them.
func (b *Broker) waitArchiveLoaded(p *partition, timeout time.Duration) bool {
	b.kickTier()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.RLock()
		loaded := p.archLoaded
		p.mu.RUnlock()
		if loaded {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-b.closing:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// archivedBatchForTimestamp searches the archive-only segments.
func (b *Broker) archivedBatchForTimestamp(p *partition, ts, from int64) (batchRef, bool, error) {
	if b.tier.arch == nil {
		return batchRef{}, false, nil
	}
	p.mu.RLock()
	segs, local := p.archSegs, p.localStartLocked()
	p.mu.RUnlock()
	for i := range segs {
		e := &segs[i]
		if e.Base >= local {
			break
		}
		if e.Next <= from || e.MaxTs < ts {
			continue
		}
		ctx, cancel := archiveCtx()
		pos, ok, err := b.tier.arch.FindTimestampFrom(ctx, b.archivePrefix(p), e, ts, from)
		cancel()
		if err != nil {
			return batchRef{}, false, err
		}
		if ok {
			return batchRef{arch: e, pos: pos}, true, nil
		}
	}
	return batchRef{}, false, nil
}

// readArchivedBatch returns the batch a lookup found in the archive.
func (b *Broker) readArchivedBatch(p *partition, r batchRef) ([]byte, error) {
	ctx, cancel := archiveCtx()
	defer cancel()
	return b.tier.arch.BatchAt(ctx, b.archivePrefix(p), r.arch, r.pos)
}

// latestTiered returns the last archived offset, or -1.
func (p *partition) latestTiered() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.archSegs) == 0 {
		return -1
	}
	return p.archSegs[len(p.archSegs)-1].Next - 1
}

// pruneArchive removes archived segments wholly below logStart from the
// manifest, then deletes their objects. It skips the pass when an upload
// holds the manifest; the next retention pass tries again.
func (b *Broker) pruneArchive(ctx context.Context, p *partition, logStart int64) error {
	if b.ctl != nil && !b.leads(p.topic, p.index) {
		return nil // the leader prunes the archive
	}
	a := &p.arch
	if !a.mu.TryLock() {
		return nil
	}
	defer a.mu.Unlock()
	if a.man == nil {
		return nil
	}
	n := 0
	for n < len(a.man.Segments) && a.man.Segments[n].Next <= logStart {
		n++
	}
	if n == 0 {
		return nil
	}
	if b.ctl != nil {
		if epoch, lerr := b.leaderCheck(p.topic, p.index, -1); lerr != nil || epoch != a.manEpoch {
			return nil // the uploader reloads under the new epoch first
		}
	}
	m := *a.man
	m.Generation++
	m.LeaderEpoch = a.manEpoch
	m.LogStart = max(m.LogStart, logStart)
	m.Segments = slices.Clone(a.man.Segments[n:])
	if err := tier3.WriteManifest(ctx, b.tier.arch.Store(), p.topic.id, a.man, &m); err != nil {
		if errors.Is(err, tier3.ErrPrecondition) {
			a.man = nil // another writer: the uploader reads the manifest again
			return nil
		}
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := b.recordManifest(p, &m); err != nil {
		return err
	}
	dropped := a.man.Segments[:n]
	a.man = &m
	if err := b.publishArchive(p, &m); err != nil {
		return err
	}
	var errs []error
	for _, e := range dropped {
		errs = append(errs, b.tier.arch.DeleteSegment(ctx, b.archivePrefix(p), e))
	}
	b.log.Debug("archive retention deleted segments", "topic", p.topic.name, "partition", p.index, "segments", n, "log_start", logStart)
	return errors.Join(errs...)
}

// retainTiered is retention for an archived partition (see the top of
// this file). segs, logStart and activeBytes were read under mu.
func (b *Broker) retainTiered(p *partition, now time.Time, segs []*tier2.Segment, logStart, activeBytes int64) error {
	t := p.topic
	nowMs := now.UnixMilli()
	retMs, retBytes := b.configInt(t, "retention.ms"), b.configInt(t, "retention.bytes")
	localMs, localBytes := b.configInt(t, "local.retention.ms"), b.configInt(t, "local.retention.bytes")
	if localMs == -2 {
		localMs = retMs
	}
	if localBytes == -2 {
		localBytes = retBytes
	}
	p.mu.RLock()
	arch, loaded, local := p.archSegs, p.archLoaded, p.localStartLocked()
	p.mu.RUnlock()

	// The whole log, oldest first: archive-only segments, then local ones.
	total := activeBytes
	for _, s := range segs {
		total += s.Size
	}
	var archOnly []tier3.SegmentEntry
	for _, e := range arch {
		if e.Base < local && e.Next > logStart {
			archOnly = append(archOnly, e)
			total += e.Size
		}
	}
	newStart := logStart
	drop := 0
	for loaded && drop < len(archOnly) {
		e := archOnly[drop]
		newest := e.MaxTs
		if e.Size == 0 {
			newest = e.Uploaded
		}
		if (retMs >= 0 && newest < nowMs-retMs) || (retBytes >= 0 && total-e.Size >= retBytes) {
			total -= e.Size
			newStart = max(newStart, e.Next)
			drop++
			continue
		}
		break
	}
	// Whole-log retention reaches the local segments only once nothing
	// older survives in the archive (or the archive is unknown: then only
	// the log start applies).
	whole := loaded && drop == len(archOnly)
	nGlobal := retentionPlan(segs, newStart, activeBytes, whole, retMs, retBytes, -1, -1, nowMs)
	if nGlobal > 0 {
		if nGlobal < len(segs) {
			newStart = max(newStart, segs[nGlobal].Base)
		} else {
			newStart = max(newStart, segs[len(segs)-1].Next)
		}
	}
	// Local retention: only segments the archive holds (Archived is set
	// after the manifest naming them is written).
	n := max(nGlobal, retentionPlan(segs, newStart, activeBytes, true, -1, -1, localMs, localBytes, nowMs))
	for k := nGlobal; k < n; k++ {
		if !segs[k].Archived() {
			n = k
			break
		}
	}
	if err := b.advanceLogStart(p, newStart); err != nil {
		return err
	}
	var errs []error
	if n > 0 {
		p.mu.Lock()
		p.segs = slices.Clone(p.segs[n:])
		p.mu.Unlock()
		for _, s := range segs[:n] {
			errs = append(errs, s.Remove())
		}
		b.log.Debug("retention deleted local segments", "topic", t.name, "partition", p.index, "segments", n,
			"whole_log", nGlobal, "log_start", newStart)
	}
	if loaded {
		ctx, cancel := b.ctxUntilClose(context.Background())
		defer cancel()
		ctx, cancel2 := context.WithTimeout(ctx, time.Minute)
		defer cancel2()
		p.mu.RLock()
		ls := p.logStart
		p.mu.RUnlock()
		if err := b.pruneArchive(ctx, p, ls); err != nil {
			errs = append(errs, fmt.Errorf("archive retention: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeArchived deletes a deleted topic's objects. Best effort: a
// failure is logged and leaves objects no topic uses. topic.json goes
// last: once every partition's arch.mu has been taken here, no upload of
// the topic (which may rewrite it) is running or will start.
func (b *Broker) removeArchived(dead []*partition) {
	if b.tier.arch == nil {
		return
	}
	ctx, cancel := b.ctxUntilClose(context.Background())
	defer cancel()
	failed := map[[16]byte]bool{}
	for _, p := range dead {
		p.arch.mu.Lock()
		err := b.tier.arch.DeletePrefix(ctx, b.archivePrefix(p))
		p.arch.mu.Unlock()
		if err != nil {
			failed[p.topic.id] = true
			b.log.Warn("deleting a deleted topic's archive failed", "topic", p.topic.name, "partition", p.index, "err", err)
		}
	}
	done := map[[16]byte]bool{}
	for _, p := range dead {
		if done[p.topic.id] || failed[p.topic.id] {
			continue
		}
		done[p.topic.id] = true
		if err := b.tier.arch.Store().Delete(ctx, tier3.TopicPrefix(p.topic.id)+"topic.json"); err != nil {
			b.log.Warn("deleting a deleted topic's archive failed", "topic", p.topic.name, "err", err)
		}
	}
}

// archivedMaxTimestampBatch returns the first archive-only batch holding
// the largest max timestamp among them.
func (b *Broker) archivedMaxTimestampBatch(p *partition) (batchRef, int64, bool) {
	if b.tier.arch == nil {
		return batchRef{}, 0, false
	}
	p.mu.RLock()
	segs, local, logStart := p.archSegs, p.localStartLocked(), p.logStart
	p.mu.RUnlock()
	var best batchRef
	bestTs, found := int64(0), false
	for i := range segs {
		e := &segs[i]
		if e.Base >= local {
			break
		}
		if e.Size > 0 && e.Next > logStart && (!found || e.MaxTs > bestTs) {
			best, bestTs, found = batchRef{arch: e, pos: e.MaxTsPos}, e.MaxTs, true
		}
	}
	return best, bestTs, found
}
