package broker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// The scrubber finds damaged sealed segments before a reader does, and
// has every damaged segment repaired (DESIGN.md, operations safety:
// "damaged segments are repaired"). One goroutine, started with the
// maintenance loops:
//
//   - A pass reads every sealed segment of every partition in full and
//     checks every batch (tier2.Segment.Verify), one segment at a time,
//     paced to Config.ScrubBytesPerSec. The first pass starts with the
//     broker, then one every Config.ScrubInterval (0: none).
//   - A fetch or an upload whose bytes fail a batch check marks the
//     segment suspect and kicks the scrubber, which verifies suspect
//     segments at once (between two segments of a pass, too).
//   - Damage, found here or by tier2.Load at startup, is repaired
//     (repair.go) from another copy: the partition's leader when another
//     broker leads, else the Tier 3 archive when its manifest covers the
//     segment. A repair that finds no good copy is tried again every
//     Config.ScrubRepairRetry.
//   - Until it is repaired, tier2 fails every read of the damaged range
//     (fetches get KAFKA_STORAGE_ERROR, never the bytes), the uploader
//     archives nothing from the damaged segment on (tier3.go), and
//     compaction leaves the partition alone. Each time a partition becomes
//     damaged or is healthy again, noteReplicaHealth (replica_health.go)
//     hears of it.

// scrubState is the scrubber's shared state.
type scrubState struct {
	kick chan struct{} // capacity 1: a segment became suspect

	// For metrics, since start.
	bytes   atomic.Int64 // bytes of sealed segments verified
	repairs atomic.Int64 // damaged segments rebuilt
	passes  atomic.Int64 // full passes finished
}

// kickScrub asks the scrubber to verify suspect segments soon.
func (b *Broker) kickScrub() {
	select {
	case b.scrub.kick <- struct{}{}:
	default:
	}
}

// damagedFrom returns the first offset p cannot serve from its sealed
// segments until a repair: the first unverified offset of its first
// damaged segment holding offsets at or above the log start. ok is false
// when p is not damaged.
func (p *partition) damagedFrom() (from int64, ok bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, s := range p.segs {
		if d := s.Damage(); d != nil && s.Next > p.logStart {
			return max(d.Offset, p.logStart), true
		}
	}
	return 0, false
}

// damaged reports whether p holds a damaged sealed segment it must serve.
func (p *partition) damaged() bool {
	_, ok := p.damagedFrom()
	return ok
}

// refreshHealth tells noteReplicaHealth when p became damaged or healthy
// since it last heard of p.
func (b *Broker) refreshHealth(p *partition) {
	if d := p.damaged(); p.healthDamaged.Swap(d) != d {
		b.noteReplicaHealth(p)
	}
}

// scrubber is the scrubber goroutine's own state.
type scrubber struct {
	b          *Broker
	ctx        context.Context
	lastRepair time.Time
	failures   map[*tier2.Segment]int // failed repairs of each damaged segment
}

func (b *Broker) scrubLoop() {
	defer b.maintWG.Done()
	ctx, cancel := b.ctxUntilClose(context.Background())
	defer cancel()
	sc := &scrubber{b: b, ctx: ctx, failures: map[*tier2.Segment]int{}}
	// Damage found at startup first: a pass may take hours.
	sc.repairAll()
	var passes <-chan time.Time
	if b.cfg.ScrubInterval > 0 {
		t := time.NewTicker(b.cfg.ScrubInterval)
		defer t.Stop()
		passes = t.C
		sc.pass()
	}
	retry := time.NewTicker(b.cfg.ScrubRepairRetry)
	defer retry.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-passes:
			sc.pass()
		case <-b.scrub.kick:
			sc.suspects()
		case <-retry.C:
			sc.repairAll()
		}
	}
}

// pass verifies every sealed segment of every partition.
func (sc *scrubber) pass() {
	b := sc.b
	start := time.Now()
	before := b.scrub.bytes.Load()
	for _, p := range b.allPartitions() {
		p.mu.RLock()
		segs, deleted := p.segs, p.deleted
		p.mu.RUnlock()
		if deleted {
			continue
		}
		for _, s := range segs {
			sc.between()
			if sc.ctx.Err() != nil {
				return
			}
			sc.verify(p, s)
		}
	}
	b.scrub.passes.Add(1)
	b.log.Info("scrub pass finished", "bytes", b.scrub.bytes.Load()-before, "took", time.Since(start).Round(time.Millisecond))
}

// between serves, in the middle of a pass, what cannot wait for its end.
func (sc *scrubber) between() {
	select {
	case <-sc.b.scrub.kick:
		sc.suspects()
	default:
	}
	if time.Since(sc.lastRepair) >= sc.b.cfg.ScrubRepairRetry {
		sc.repairAll()
	}
}

// suspects verifies the segments a read or an upload found suspect.
func (sc *scrubber) suspects() {
	for _, p := range sc.b.allPartitions() {
		p.mu.RLock()
		segs := p.segs
		p.mu.RUnlock()
		for _, s := range segs {
			if s.Suspect() && s.Damage() == nil && sc.ctx.Err() == nil {
				sc.verify(p, s)
			}
		}
	}
}

// verify checks one segment and has any damage it finds repaired.
func (sc *scrubber) verify(p *partition, s *tier2.Segment) {
	b := sc.b
	if s.Damage() != nil {
		return // known: repairAll sees to it
	}
	err := s.Verify(sc.ctx, tier2.VerifyOptions{BytesPerSec: b.cfg.ScrubBytesPerSec, Progress: func(n int64) { b.scrub.bytes.Add(n) }})
	var d *tier2.DamageError
	switch {
	case errors.As(err, &d):
		b.log.Error("sealed segment is damaged; its damaged range is not served until it is repaired", "topic", p.topic.name,
			"partition", p.index, "segment", d.Path, "damaged_at_byte", d.Pos, "first_unverified_offset", d.Offset, "next", d.Next, "reason", d.Reason)
		b.refreshHealth(p)
		sc.repair(p)
	case err == nil, errors.Is(err, tier2.ErrRemoved), sc.ctx.Err() != nil:
	default:
		b.log.Warn("scrub could not read a sealed segment; next pass tries again", "topic", p.topic.name, "partition", p.index,
			"segment", s.Path(), "err", err)
	}
}

// repairAll repairs every damaged segment and brings every partition's
// health up to date (a damaged segment may also have gone to retention).
func (sc *scrubber) repairAll() {
	sc.lastRepair = time.Now()
	live := map[*tier2.Segment]bool{}
	for _, p := range sc.b.allPartitions() {
		p.mu.RLock()
		segs := p.segs
		p.mu.RUnlock()
		for _, s := range segs {
			if s.Damage() != nil {
				live[s] = true
			}
		}
		if sc.ctx.Err() != nil {
			return
		}
		sc.repair(p)
	}
	for s := range sc.failures {
		if !live[s] {
			delete(sc.failures, s)
		}
	}
}

// repair rebuilds p's damaged segments that hold offsets it serves.
func (sc *scrubber) repair(p *partition) {
	b := sc.b
	defer b.refreshHealth(p)
	p.mu.RLock()
	segs, logStart, deleted := p.segs, p.logStart, p.deleted
	p.mu.RUnlock()
	for _, s := range segs {
		if s.Damage() == nil || s.Next <= logStart || deleted {
			continue // below the log start nothing is served: retention deletes it
		}
		from, err := b.repairSegment(sc.ctx, p, s)
		switch {
		case err == nil:
			delete(sc.failures, s)
			b.log.Info("repaired damaged segment", "topic", p.topic.name, "partition", p.index, "base", s.Base, "next", s.Next, "from", from)
		case errors.Is(err, errRepairGone), sc.ctx.Err() != nil:
		default:
			// Said loudly once, then now and then: an operator may have to
			// bring a copy back (a replica, the object store).
			n := sc.failures[s]
			sc.failures[s] = n + 1
			level := b.log.Debug
			if n%60 == 0 {
				level = b.log.Warn
			}
			level("damaged segment not repaired yet; retrying", "topic", p.topic.name, "partition", p.index,
				"base", s.Base, "next", s.Next, "attempts", n+1, "retry_in", b.cfg.ScrubRepairRetry, "err", err)
		}
	}
}
