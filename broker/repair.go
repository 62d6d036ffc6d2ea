package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier2"
)

// Repairing a damaged sealed segment (scrub.go). Batches are identical on
// every replica and in the archive (followers store the leader's batches
// as they are; the uploader copies segments byte for byte), so the
// boundaries of a segment here are batch boundaries in every other copy.
// A repair reads the batches of [base, next) from another copy, checks
// that they rebuild the whole range, writes them as a new segment with the
// same base and next (tier2.Create, Finish renames it over the damaged
// files) and publishes it in place of the damaged one.
//
// Only what the partition still serves is needed: from the log start on.
// A segment's base may precede its first batch (batches wholly below the
// log start are skipped when sealing), so the new segment may hold fewer
// or more batches below the log start than the old one; nothing there is
// ever served. Above it, in a topic that is not compacted, offsets are
// dense: the batches taken must continue one another and end exactly at
// next-1. A compacted copy may lack any batch (compaction drops them and
// keeps next), so there only their order and range are checked.
//
// The damaged segment's files are replaced under maintMu (as compaction
// does), the long part, reading the copy and writing the new segment's
// .tmp files, runs without it: retention may delete the damaged segment
// meanwhile (the repair is then dropped), and compaction does not touch a
// partition with a damaged segment (tier2.Compact fails), so nothing else
// writes those .tmp files.

// errRepairGone: the damaged segment left the partition during its repair
// (retention, topic deletion), or lies below the log start, where nothing
// is served.
var errRepairGone = errors.New("broker: the damaged segment is gone")

// repairReadBytes bounds one read from another copy (the first batch of a
// read is whole even when larger, as in Kafka's fetch).
const repairReadBytes = 1 << 20

// repairSource is another copy of a partition's log.
type repairSource struct {
	name string
	// read returns whole batches from the one holding offset on (a last
	// partial batch is ignored), or nothing past the copy's end.
	read  func(ctx context.Context, offset int64, maxBytes int) ([]byte, error)
	close func()
}

// repairSegment rebuilds the damaged segment old of p from the first
// copy that holds it whole, and names that copy: the partition's leader
// when another broker leads it, then the archive when its manifest covers
// the range (compacted topics are not archived).
func (b *Broker) repairSegment(ctx context.Context, p *partition, old *tier2.Segment) (string, error) {
	p.mu.RLock()
	need := max(old.Base, p.logStart)
	p.mu.RUnlock()
	if need >= old.Next {
		return "", errRepairGone // below the log start: not served, left to retention
	}
	_, compact := b.cleanupPolicy(p.topic)
	var errs []error
	tried := false
	for _, source := range []func() (repairSource, bool){
		func() (repairSource, bool) { return b.leaderSource(p) },
		func() (repairSource, bool) { return b.archiveSource(p, need, old.Next, compact) },
	} {
		src, ok := source()
		if !ok {
			continue
		}
		tried = true
		err := b.rebuildSegment(ctx, p, old, need, !compact, src)
		src.close()
		if err == nil || errors.Is(err, errRepairGone) || ctx.Err() != nil {
			return src.name, err
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src.name, err))
	}
	if !tried {
		return "", errors.New("no good copy: no other broker leads the partition, and no loaded Tier 3 manifest covers the segment")
	}
	return "", errors.Join(errs...)
}

// archiveSource reads p's batches from the Tier 3 archive, when its
// manifest covers [need, next); every chunk read is checked against its
// CRC.
func (b *Broker) archiveSource(p *partition, need, next int64, compact bool) (repairSource, bool) {
	if b.tier.arch == nil || compact {
		return repairSource{}, false
	}
	// At startup the uploader's first pass has not read the manifest yet:
	// give it a moment rather than a failed attempt.
	b.waitArchiveLoaded(p, 5*time.Second)
	p.mu.RLock()
	segs, loaded := p.archSegs, p.archLoaded
	p.mu.RUnlock()
	if !loaded || len(segs) == 0 || segs[0].Base > need || segs[len(segs)-1].Next < next {
		return repairSource{}, false
	}
	return repairSource{
		name: "the tier 3 archive",
		read: func(ctx context.Context, offset int64, maxBytes int) ([]byte, error) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return b.tier.arch.Read(ctx, b.archivePrefix(p), segs, offset, maxBytes, nil)
		},
		close: func() {},
	}, true
}

// leaderSource reads p's batches from its leader, when another broker
// leads it, with a consumer's Fetch (ReplicaID -1: a repair is not
// replication and tells the leader nothing about this replica's progress),
// up to the leader's high watermark, which sealed data never passes.
func (b *Broker) leaderSource(p *partition) (repairSource, bool) {
	if b.ctl == nil {
		return repairSource{}, false
	}
	ps, ok := b.partitionState(p.topic, p.index)
	if !ok || ps.Leader < 0 || ps.Leader == b.cfg.NodeID {
		return repairSource{}, false
	}
	bi := b.ctl.State().Brokers[ps.Leader]
	if bi == nil {
		return repairSource{}, false
	}
	addr := bi.InternalAddr()
	var cl *kgo.Client
	return repairSource{
		name: fmt.Sprintf("leader %d at %s", ps.Leader, addr),
		read: func(ctx context.Context, offset int64, maxBytes int) ([]byte, error) {
			if cl == nil {
				var err error
				if cl, err = kgo.NewClient(append(b.interBrokerOpts(), kgo.SeedBrokers(addr), kgo.DialTimeout(2*time.Second), kgo.RequestRetries(0))...); err != nil {
					return nil, err
				}
			}
			return fetchBatches(ctx, cl, p, offset, maxBytes)
		},
		close: func() {
			if cl != nil {
				cl.Close()
			}
		},
	}, true
}

func fetchBatches(ctx context.Context, cl *kgo.Client, p *partition, offset int64, maxBytes int) ([]byte, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = int32(maxBytes)
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = p.topic.name, p.topic.id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch = p.index, offset, -1
	rp.LastFetchedEpoch, rp.LogStartOffset = -1, -1
	rp.PartitionMaxBytes = int32(maxBytes)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	seeds := cl.SeedBrokers()
	if len(seeds) == 0 {
		return nil, errors.New("no seed broker")
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := seeds[0].Request(rctx, req)
	if err != nil {
		return nil, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		for _, sp := range t.Partitions {
			if sp.Partition != p.index {
				continue
			}
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
				return nil, fmt.Errorf("fetch at offset %d: %w", offset, err)
			}
			return sp.RecordBatches, nil
		}
	}
	return nil, fmt.Errorf("fetch at offset %d: the response does not name the partition", offset)
}

// rebuildSegment writes a new segment for old from src's batches and
// publishes it in old's place. need is the first offset the partition
// serves; dense says its offsets have no gaps.
func (b *Broker) rebuildSegment(ctx context.Context, p *partition, old *tier2.Segment, need int64, dense bool, src repairSource) error {
	p.maintMu.Lock()
	if !p.holdsSegment(old) {
		p.maintMu.Unlock()
		return errRepairGone
	}
	w, err := tier2.Create(b.fs, p.dir, b.files, old.Base)
	p.maintMu.Unlock()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		w.Abort()
		return err
	}
	chk := repairCheck{base: old.Base, next: old.Next, need: need, dense: dense, last: old.Base - 1, expect: -1}
	for offset := need; !chk.done; {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		buf, err := src.read(ctx, offset, repairReadBytes)
		if err != nil {
			return fail(err)
		}
		from := offset
		for rest := buf; len(rest) >= batchHeaderLen && !chk.done; {
			n := int64(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
			if n < batchHeaderLen || n > int64(len(rest)) {
				break // a partial batch ends the response
			}
			batch := rest[:n]
			rest = rest[n:]
			h, err := parseReplicaBatch(batch)
			if err != nil {
				return fail(err)
			}
			first := batchBaseOffset(batch)
			last := first + int64(h.LastOffsetDelta)
			keep, err := chk.take(first, last)
			if err != nil {
				return fail(err)
			}
			if keep {
				if err := w.Append(batch); err != nil {
					return fail(err)
				}
			}
			offset = max(offset, last+1)
		}
		if offset == from {
			break // the copy holds nothing more
		}
	}
	if err := chk.finish(); err != nil {
		return fail(err)
	}

	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	if !p.holdsSegment(old) {
		return fail(errRepairGone)
	}
	ns, err := w.Finish(old.Next)
	if err != nil {
		return err
	}
	if old.Archived() {
		// The same offsets, from a good copy: the archive still holds them.
		if err := ns.MarkArchived(); err != nil {
			b.log.Warn("marking a repaired segment archived failed; the uploader marks it again", "topic", p.topic.name,
				"partition", p.index, "base", ns.Base, "err", err)
		}
	}
	p.mu.Lock()
	segs := slices.Clone(p.segs)
	segs[slices.Index(segs, old)] = ns
	p.segs = segs
	// Counted as it is published, so anyone who sees the segment healthy
	// also sees the repair counted.
	b.scrub.repairs.Add(1)
	p.mu.Unlock()
	old.Retire()
	return nil
}

// holdsSegment reports whether s is one of p's sealed segments.
func (p *partition) holdsSegment(s *tier2.Segment) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Contains(p.segs, s)
}

// repairCheck decides which batches of another copy rebuild the damaged
// segment [base, next), and whether they rebuild all of it (see the top of
// this file).
type repairCheck struct {
	base, next int64
	need       int64 // the first offset the partition serves: max(base, log start)
	dense      bool  // offsets have no gaps: not a compacted topic
	last       int64 // the last offset taken; base-1 before the first
	expect     int64 // where the next batch must start when dense; -1 until known
	done       bool
}

// take says whether the batch [first, last] belongs in the segment, or
// that the copy cannot rebuild it.
func (c *repairCheck) take(first, last int64) (bool, error) {
	switch {
	case first >= c.next:
		c.done = true
		return false, nil
	case first < c.base:
		// It starts below the segment so cannot be in it; it does tell
		// where the next batch starts.
		if last >= c.next {
			return false, fmt.Errorf("batch %d-%d spans the whole segment %d-%d: the copies' batches differ", first, last, c.base, c.next-1)
		}
		if last >= c.base {
			c.expect = last + 1
		}
		return false, nil
	case last >= c.next:
		return false, fmt.Errorf("batch %d-%d crosses the segment's end %d: the copies' batches differ", first, last, c.next)
	case first <= c.last:
		return false, fmt.Errorf("batch at offset %d does not follow offset %d", first, c.last)
	case c.dense && c.expect >= 0 && first != c.expect:
		return false, fmt.Errorf("batch at offset %d leaves offsets %d-%d out", first, c.expect, first-1)
	case c.dense && c.expect < 0 && first > c.need:
		return false, fmt.Errorf("the copy starts at offset %d, after %d", first, c.need)
	}
	c.last, c.expect = last, last+1
	if c.dense && last == c.next-1 {
		c.done = true
	}
	return true, nil
}

// finish says whether the batches taken rebuild the segment.
func (c *repairCheck) finish() error {
	if c.dense && c.last != c.next-1 {
		return fmt.Errorf("the copy ends at offset %d, before the segment's last offset %d", c.last, c.next-1)
	}
	return nil
}
