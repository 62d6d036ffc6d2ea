package broker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/chronik-go/chronik/indexer"
)

// Search support: the broker's partitions as an indexer.Log, so the
// batch indexer reads freshly archived segments from local disk when it
// still has them, and a search through the broker covers every tier:
// archived segments (their uploaded indexes, or indexed on the fly), and
// what is not archived yet (local segments and the active tail, read as a
// fetch reads them and indexed in memory).

// SearchLog returns the broker's log for the indexer and the search
// engine.
func (b *Broker) SearchLog() *SearchLog { return &SearchLog{b: b} }

// SearchLog is the broker's implementation of indexer.Log.
type SearchLog struct{ b *Broker }

var _ indexer.Log = (*SearchLog)(nil)

// TopicNames lists the live topics, in name order.
func (l *SearchLog) TopicNames() []string {
	l.b.mu.RLock()
	defer l.b.mu.RUnlock()
	out := make([]string, 0, len(l.b.topics))
	for name := range l.b.topics {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func (l *SearchLog) topic(name string) (*topic, error) {
	l.b.mu.RLock()
	defer l.b.mu.RUnlock()
	t, ok := l.b.topics[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", indexer.ErrUnknownTopic, name)
	}
	return t, nil
}

// Topic describes a live topic.
func (l *SearchLog) Topic(_ context.Context, name string) (indexer.Topic, error) {
	t, err := l.topic(name)
	if err != nil {
		return indexer.Topic{}, err
	}
	v, _ := l.b.effectiveConfig(t, "search.enabled")
	return indexer.Topic{Name: t.name, ID: t.id, Partitions: int32(l.b.topicPartitionCount(t)), SearchEnabled: v != "false",
		MaxMessageBytes: int64(t.maxMessageBytes.Load())}, nil
}

func (l *SearchLog) partition(t indexer.Topic, p int32) (*partition, error) {
	bt, err := l.topic(t.Name)
	if err != nil {
		return nil, err
	}
	if bt.id != t.ID {
		return nil, fmt.Errorf("%w %q: it was deleted and created again", indexer.ErrUnknownTopic, t.Name)
	}
	l.b.mu.RLock()
	defer l.b.mu.RUnlock()
	if p < 0 || int(p) >= len(bt.partitions) {
		return nil, fmt.Errorf("%w: %s has no partition %d", indexer.ErrUnknownTopic, t.Name, p)
	}
	return bt.partitions[p], nil
}

// Partition returns the partition's archived segments (as the uploader
// last wrote its manifest), log start and high watermark.
func (l *SearchLog) Partition(ctx context.Context, t indexer.Topic, p int32) (indexer.Partition, error) {
	part, err := l.partition(t, p)
	if err != nil {
		return indexer.Partition{}, err
	}
	part.mu.RLock()
	loaded := part.archLoaded
	part.mu.RUnlock()
	if l.b.tier.arch != nil && !loaded {
		// Right after a start the manifest may not be loaded yet; without
		// it every archived offset would count as the local tail. Wait a
		// little (less when the caller is in a hurry: the indexer's lag
		// gauges, read at every scrape), then say so rather than answer
		// without it.
		wait := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if !l.b.waitArchiveLoaded(part, wait) {
			return indexer.Partition{}, fmt.Errorf("%s/%d: %w", t.Name, p, errArchiveNotLoaded)
		}
	}
	follower := !l.b.leads(part.topic, p)
	part.mu.RLock()
	defer part.mu.RUnlock()
	return indexer.Partition{Archived: part.archSegs, LogStart: part.logStart, End: part.hw, Follower: follower,
		Aborted: part.txns.abortedArchive(part.logStart, part.hw)}, nil
}

// Read reads as a fetch does, from whichever tier holds offset. An
// archived read (object storage, up to archiveCtx's 30 s) does not take
// the search's context, so the search stops waiting for it when its
// context ends: a search API request ends at its timeout. The read
// itself runs on to its own bound, its bytes dropped.
func (l *SearchLog) Read(ctx context.Context, t indexer.Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	part, err := l.partition(t, p)
	if err != nil {
		return nil, err
	}
	part.mu.RLock()
	hw, local := part.hw, part.localStartLocked()
	part.mu.RUnlock()
	if offset >= hw {
		return nil, nil
	}
	if offset >= local || ctx.Done() == nil {
		return l.b.readPartition(part, offset, maxBytes, nil)
	}
	type read struct {
		b   []byte
		err error
	}
	done := make(chan read, 1)
	go func() {
		b, err := l.b.readPartition(part, offset, maxBytes, nil)
		done <- read{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// segmentArchived tells the indexer (Config.SegmentArchived) that p has
// a newly archived segment.
func (b *Broker) segmentArchived(p *partition) {
	if b.cfg.SegmentArchived != nil {
		b.cfg.SegmentArchived(p.topic.name, p.index)
	}
}
