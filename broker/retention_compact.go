package broker

import (
	"slices"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// compact runs tier2.Compact over p's sealed segments when there is
// something new to compact: segments sealed since the last run, or latest
// tombstones that were too young to drop then. The active segment is never
// touched. __consumer_offsets is compacted like any topic: its replay
// applies records in offset order, so the latest record per key is all it
// needs.
func (b *Broker) compact(p *partition, now time.Time) error {
	p.maintMu.Lock()
	defer p.maintMu.Unlock()
	p.mu.RLock()
	segs, deleted, end := p.segs, p.deleted, p.segsEndLocked()
	p.mu.RUnlock()
	if deleted || len(segs) == 0 || (end <= p.compactedEnd && !p.tombstonesPending) {
		return nil
	}
	res, err := tier2.Compact(segs, tier2.CompactOptions{
		MemoryBytes:     b.cfg.CompactionMemoryBytes,
		TombstoneBefore: now.UnixMilli() - b.configInt(p.topic, "delete.retention.ms"),
		InflateLimit:    p.topic.inflateLimit(),
	})
	if err != nil {
		return err
	}
	// Only this goroutine (under maintMu) replaces segments, and the sealer
	// only appends: the first len(segs) entries are still segs.
	p.mu.Lock()
	next := append(slices.Clone(res.Segments), p.segs[len(segs):]...)
	p.segs = next
	p.mu.Unlock()
	for i, s := range segs {
		if res.Segments[i] != s {
			s.Retire()
		}
	}
	p.compactedEnd = end
	p.tombstonesPending = res.TombstonesKept > 0
	if res.Rewritten > 0 {
		b.log.Debug("compacted", "topic", p.topic.name, "partition", p.index, "passes", res.Passes,
			"rewritten", res.Rewritten, "dropped_records", res.DroppedRecords)
	}
	return nil
}
