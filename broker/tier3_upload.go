package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// The uploader: one archive per partition across any number of failovers.
//
//   - Only the leader writes the partition's manifest, under its leader
//     epoch, each write conditional on the version it read (tier3's
//     "One writer"). A leader that finds a manifest of a later epoch stops:
//     it was deposed. On taking over it first writes the manifest back
//     under its own epoch (the fence), so a deposed leader's late write
//     fails, and only then deletes what no manifest names.
//   - It continues exactly at the archive's end: a local segment that
//     straddles the end (sealed at other offsets than the leader that
//     archived the rest) is uploaded from the end on (tier2.TailFrom); a
//     local log that starts above the end, past the log start, would leave
//     a hole and is refused.
//   - A manifest that is missing or older than the newest this broker has
//     seen (its copy in the partition directory, manifest.json) is never
//     taken for "less archived": nothing moves the log start, nothing is
//     swept, nothing is written over it. The leader writes the newest
//     manifest back when every object it names is still in the store, and
//     otherwise stops uploading the partition and says why.

// errManifestLost: the store's manifest is missing or older than the one
// this broker knows, and cannot be restored from the local copy.
var errManifestLost = errors.New("the archive's manifest is missing or older than this broker's copy")

// manifestCopy is the partition directory's copy of the newest manifest.
const manifestCopy = "manifest.json"

// archivePartition runs one uploader pass over p: as leader it uploads the
// local segments the manifest lacks; as follower it follows the manifest.
func (b *Broker) archivePartition(ctx context.Context, p *partition) error {
	a := &p.arch
	a.mu.Lock()
	defer a.mu.Unlock()
	p.mu.RLock()
	deleted := p.deleted
	p.mu.RUnlock()
	if deleted {
		return nil
	}
	epoch := int32(0)
	if b.ctl != nil {
		e, lerr := b.leaderCheck(p.topic, p.index, -1)
		if lerr != nil {
			a.man = nil
			return b.followArchive(ctx, p)
		}
		epoch = e
	}
	for attempt := 0; ; attempt++ {
		if a.man == nil || a.manEpoch != epoch {
			a.man = nil
			m, err := b.takeManifest(ctx, p, epoch)
			if errors.Is(err, errDeposed) {
				b.log.Debug("a later leader writes this partition's archive", "topic", p.topic.name, "partition", p.index, "epoch", epoch)
				return b.followArchive(ctx, p)
			}
			if err != nil {
				return err
			}
			a.man, a.manEpoch = m, epoch
		}
		if _, compact := b.cleanupPolicy(p.topic); compact {
			return nil
		}
		err := b.uploadPass(ctx, p, epoch)
		if !errors.Is(err, tier3.ErrPrecondition) || attempt == 2 {
			return err
		}
		a.man = nil // another writer got there first: read it again
	}
}

// errDeposed: the stored manifest was written under a later leader epoch.
var errDeposed = errors.New("the manifest has a later leader epoch")

// takeManifest reads p's manifest as its leader at epoch: it restores a
// lost or rolled-back manifest from the newest this broker has seen, fences
// it at epoch, sweeps what no manifest names, and publishes it. a.mu must
// be held.
func (b *Broker) takeManifest(ctx context.Context, p *partition, epoch int32) (*tier3.Manifest, error) {
	a := &p.arch
	store := b.tier.arch.Store()
	m, err := tier3.LoadManifest(ctx, store, p.topic.id, p.index)
	if err != nil {
		return nil, fmt.Errorf("load manifest: %w", err)
	}
	if seen := a.seen.Load(); seen != nil && seen.Generation > 0 && (!m.Exists || seen.Newer(m)) {
		if m, err = b.restoreManifest(ctx, p, m, seen, epoch); err != nil {
			return nil, err
		}
	}
	if m.LeaderEpoch > epoch {
		return nil, errDeposed
	}
	if !m.Exists {
		if err := b.checkNoLostHistory(ctx, p); err != nil {
			return nil, err
		}
	} else if m.LeaderEpoch < epoch {
		// The fence: from now on a write of an earlier leader fails.
		f := *m
		f.Generation++
		f.LeaderEpoch = epoch
		if err := tier3.WriteManifest(ctx, store, p.topic.id, m, &f); err != nil {
			return nil, fmt.Errorf("fence manifest at leader epoch %d: %w", epoch, err)
		}
		m = &f
	}
	if n, err := b.tier.arch.Sweep(ctx, b.archivePrefix(p), m); err != nil {
		return nil, fmt.Errorf("sweep unreferenced objects: %w", err)
	} else if n > 0 {
		b.log.Info("deleted objects of unfinished uploads", "topic", p.topic.name, "partition", p.index, "objects", n)
	}
	if err := b.recordManifest(p, m); err != nil {
		return nil, err
	}
	return m, b.publishArchive(p, m)
}

// restoreManifest writes seen (the newest manifest this broker knows) back
// over cur, the store's missing or older one, if every object seen names
// is in the store.
func (b *Broker) restoreManifest(ctx context.Context, p *partition, cur, seen *tier3.Manifest, epoch int32) (*tier3.Manifest, error) {
	store := b.tier.arch.Store()
	prefix := b.archivePrefix(p)
	for _, e := range seen.Segments {
		for _, k := range []string{e.Log, e.Index, e.TimeIndex} {
			if _, err := store.Head(ctx, prefix+k); err != nil {
				return nil, fmt.Errorf("%w (generation %d, leader epoch %d; the store has %s) and %s%s is not in the store: %v; "+
					"this partition is not archived until its manifest is put back (see docs/tier3.md)",
					errManifestLost, seen.Generation, seen.LeaderEpoch, describeManifest(cur), prefix, k, err)
			}
		}
	}
	r := *seen
	r.Generation = max(seen.Generation, cur.Generation) + 1
	r.LeaderEpoch = max(seen.LeaderEpoch, epoch)
	if err := tier3.WriteManifest(ctx, store, p.topic.id, cur, &r); err != nil {
		return nil, fmt.Errorf("restore manifest: %w", err)
	}
	b.log.Warn("the archive's manifest was missing or older than this broker's copy; wrote the copy back",
		"topic", p.topic.name, "partition", p.index, "store_had", describeManifest(cur), "restored_generation", r.Generation, "segments", len(r.Segments))
	return &r, nil
}

func describeManifest(m *tier3.Manifest) string {
	if !m.Exists {
		return "no manifest"
	}
	return fmt.Sprintf("generation %d, leader epoch %d", m.Generation, m.LeaderEpoch)
}

// checkNoLostHistory refuses to start a new archive for p over segment
// objects lying below its local log: with no manifest in the store and none
// known here, those are history whose manifest was lost, and a new
// manifest would leave them unreadable.
func (b *Broker) checkNoLostHistory(ctx context.Context, p *partition) error {
	objs, err := b.tier.arch.Store().List(ctx, b.archivePrefix(p))
	if err != nil {
		return fmt.Errorf("list archive: %w", err)
	}
	p.mu.RLock()
	local := p.localStartLocked()
	p.mu.RUnlock()
	for _, o := range objs {
		if base, ok := tier3.SegmentObjectBase(filepath.Base(o.Key)); ok && base < local {
			return fmt.Errorf("%w: the store holds no manifest for this partition, this broker knows none, and %s lies below the local log (from %d); "+
				"this partition is not archived until its manifest is put back (see docs/tier3.md)", errManifestLost, o.Key, local)
		}
	}
	return nil
}

// uploadPass uploads, oldest first, the local segments the manifest does
// not cover, each continuing the archive at its end. a.mu must be held and
// a.man fenced at epoch.
func (b *Broker) uploadPass(ctx context.Context, p *partition, epoch int32) error {
	a := &p.arch
	p.mu.RLock()
	segs, logStart := p.segs, p.logStart
	p.mu.RUnlock()
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if covered(a.man, s, logStart) {
			if !s.Archived() {
				if err := s.MarkArchived(); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("mark segment %d archived: %w", s.Base, err)
				}
			}
			continue
		}
		if s.Next <= logStart {
			continue // below the log start: retention deletes it
		}
		if s.Damage() != nil {
			// Never archive a damaged segment (the archive would vouch for
			// a hole, and healthy replicas would delete their copies), nor
			// anything after it: the archive is one log without gaps. The
			// pass resumes here once the segment is repaired. (A damaged
			// segment the archive already covers was passed above.)
			return nil
		}
		from := s.Base
		switch end := a.man.End(); {
		case end > s.Base:
			from = end // the archive holds the segment's first offsets
		case end >= 0 && end < s.Base && s.Base > logStart:
			return fmt.Errorf("the archive ends at %d but the local log continues at %d: uploading would leave offsets [%d, %d) out of the archive", end, s.Base, end, s.Base)
		}
		if err := b.describeTopic(ctx, p.topic); err != nil {
			return fmt.Errorf("write topic description: %w", err)
		}
		e, err := b.uploadSegment(ctx, p, s, from)
		if errors.Is(err, tier2.ErrRemoved) || errors.Is(err, os.ErrNotExist) {
			continue // retention deleted it meanwhile
		}
		if errors.Is(err, tier2.ErrCorrupt) {
			s.MarkSuspect() // a batch failed the upload's check: the scrubber locates the damage
			b.kickScrub()
		}
		if err != nil {
			return fmt.Errorf("upload segment %d from %d: %w", s.Base, from, err)
		}
		m := *a.man
		m.Topic = p.topic.name
		m.Generation++
		m.LeaderEpoch = epoch
		m.Segments = append(slices.Clip(a.man.Segments), e)
		p.mu.RLock()
		m.LogStart = max(m.LogStart, p.logStart)
		p.mu.RUnlock()
		if b.ctl != nil && !b.leads(p.topic, p.index) {
			return nil // leadership moved during the pass: the new leader carries on
		}
		if err := tier3.WriteManifest(ctx, b.tier.arch.Store(), p.topic.id, a.man, &m); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
		a.man = &m
		if err := b.recordManifest(p, &m); err != nil {
			return err
		}
		if err := b.publishArchive(p, &m); err != nil {
			return err
		}
		if err := s.MarkArchived(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("mark segment %d archived: %w", s.Base, err)
		}
		b.tier.uploaded.Add(1)
		b.segmentArchived(p)
		b.log.Debug("archived segment", "topic", p.topic.name, "partition", p.index, "base", e.Base, "next", e.Next, "bytes", e.Size)
	}
	return nil
}

// covered reports whether m holds every offset of segment s at or above
// the log start.
func covered(m *tier3.Manifest, s *tier2.Segment, logStart int64) bool {
	return len(m.Segments) > 0 && s.Next <= m.End() && max(s.Base, logStart) >= m.Segments[0].Base
}

// uploadSegment uploads s, or its tail from offset from when the archive
// already holds the offsets before it.
func (b *Broker) uploadSegment(ctx context.Context, p *partition, s *tier2.Segment, from int64) (tier3.SegmentEntry, error) {
	var src tier3.SegmentSource
	if from > s.Base {
		t, err := s.TailFrom(from)
		if err != nil {
			return tier3.SegmentEntry{}, err
		}
		defer t.Release()
		src = tier3.SegmentSource{Base: t.Base, Next: t.Next, Size: t.Size, MaxTs: t.MaxTs, MaxTsPos: t.MaxTsPos,
			Log: t.Log, Index: t.Index, TimeIndex: t.TimeIndex}
	} else {
		f, err := b.fs.OpenFile(s.Path(), os.O_RDONLY, 0)
		if err != nil {
			return tier3.SegmentEntry{}, err
		}
		defer f.Close()
		index, timeindex, err := s.IndexBytes()
		if err != nil {
			return tier3.SegmentEntry{}, err
		}
		src = tier3.SegmentSource{Base: s.Base, Next: s.Next, Size: s.Size, MaxTs: s.MaxTs, MaxTsPos: s.MaxTimestampBatch(),
			Log: f, Index: index, TimeIndex: timeindex}
	}
	e, err := b.tier.arch.Upload(ctx, b.archivePrefix(p), src)
	if err == nil {
		p.mu.RLock()
		e.Aborted = p.txns.abortedArchive(e.Base, e.Next)
		p.mu.RUnlock()
		b.tier.uploadedObjects.Add(3)
		b.tier.uploadedBytes.Add(src.Size + int64(len(src.Index)+len(src.TimeIndex)))
	}
	return e, err
}

// followArchive is a follower's pass: the leader uploads, so a follower
// only rereads the manifest, publishes it for archived reads, and marks the
// local segments it covers as archived so local retention may delete them.
// A manifest that is missing or older than the newest seen here is not
// taken: reads go on from the newest.
func (b *Broker) followArchive(ctx context.Context, p *partition) error {
	a := &p.arch
	m, err := tier3.LoadManifest(ctx, b.tier.arch.Store(), p.topic.id, p.index)
	if err != nil {
		return fmt.Errorf("load manifest: %w", err)
	}
	if seen := a.seen.Load(); seen != nil && seen.Generation > 0 && (!m.Exists || seen.Newer(m)) {
		p.mu.RLock()
		loaded := p.archLoaded
		p.mu.RUnlock()
		if !loaded {
			if err := b.publishArchive(p, seen); err != nil {
				return err
			}
		}
		return fmt.Errorf("%w (generation %d, leader epoch %d; the store has %s): reading on from the copy until the leader restores it",
			errManifestLost, seen.Generation, seen.LeaderEpoch, describeManifest(m))
	}
	if err := b.recordManifest(p, m); err != nil {
		return err
	}
	if err := b.publishArchive(p, m); err != nil {
		return err
	}
	p.mu.RLock()
	segs, logStart := p.segs, p.logStart
	p.mu.RUnlock()
	marked := false
	for _, s := range segs {
		if !s.Archived() && covered(m, s, logStart) {
			if err := s.MarkArchived(); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("mark segment %d archived: %w", s.Base, err)
			}
			marked = true
		}
	}
	if marked { // local retention may now delete them
		select {
		case b.cleanKick <- struct{}{}:
		default:
		}
	}
	return nil
}

// recordManifest remembers m as the newest manifest seen, in memory and in
// the partition directory, when it is newer than the one known. a.mu must
// be held.
func (b *Broker) recordManifest(p *partition, m *tier3.Manifest) error {
	a := &p.arch
	if seen := a.seen.Load(); !m.Exists || (seen != nil && !m.Newer(seen)) {
		return nil
	}
	buf, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := b.fs.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", p.dir, err)
	}
	if err := writeFileAtomic(b.fs, filepath.Join(p.dir, manifestCopy), buf); err != nil {
		return err
	}
	a.seen.Store(m)
	return nil
}

// loadManifestCopy reads the partition directory's copy of the newest
// manifest seen, at startup. A damaged copy is ignored with a warning: the
// store's manifest is then taken as it is, as before copies existed.
func (b *Broker) loadManifestCopy(p *partition) {
	buf, err := readFile(b.fs, filepath.Join(p.dir, manifestCopy))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var m *tier3.Manifest
	if err == nil {
		m, err = tier3.ParseManifest(buf)
	}
	if err != nil {
		b.log.Warn("the local copy of the archive manifest is unreadable; ignoring it", "topic", p.topic.name, "partition", p.index, "err", err)
		return
	}
	m.Exists = true
	p.arch.seen.Store(m)
}
