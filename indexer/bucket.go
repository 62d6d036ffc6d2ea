package indexer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/chronik-go/chronik/tier3"
)

// BucketLog reads archived partitions straight from object storage, with
// no broker: what `chronik search --bucket` searches. Only archived
// segments exist here; a partition ends where its archive ends.
type BucketLog struct {
	store tier3.Store
	arch  *tier3.Archive
	segs  sync.Map // partition prefix -> []tier3.SegmentEntry from the last Partition call
}

var _ Log = (*BucketLog)(nil)

// NewBucketLog reads store through arch (whose chunk cache bounds what
// is kept locally).
func NewBucketLog(store tier3.Store, arch *tier3.Archive) *BucketLog {
	return &BucketLog{store: store, arch: arch}
}

// Topic finds the most recently described archived topic of that name.
func (l *BucketLog) Topic(ctx context.Context, name string) (Topic, error) {
	ti, id, err := tier3.FindTopic(ctx, l.store, name)
	if errors.Is(err, tier3.ErrNotFound) {
		return Topic{}, fmt.Errorf("%w %q in the bucket", ErrUnknownTopic, name)
	}
	if err != nil {
		return Topic{}, err
	}
	enabled := true
	if v, ok := ti.Configs["search.enabled"]; ok {
		enabled, _ = strconv.ParseBool(v)
	}
	// Without the broker's config, a topic that does not set
	// max.message.bytes is taken to have Kafka's default.
	maxBytes, _ := strconv.ParseInt(ti.Configs["max.message.bytes"], 10, 64)
	return Topic{Name: ti.Name, ID: id, Partitions: ti.Partitions, SearchEnabled: enabled, MaxMessageBytes: maxBytes}, nil
}

// Partition reads the partition's manifest.
func (l *BucketLog) Partition(ctx context.Context, t Topic, p int32) (Partition, error) {
	m, err := tier3.LoadManifest(ctx, l.store, t.ID, p)
	if err != nil {
		return Partition{}, err
	}
	l.segs.Store(tier3.PartitionPrefix(t.ID, p), m.Segments)
	end := m.End()
	if end < 0 {
		end = m.LogStart
	}
	return Partition{Archived: m.Segments, LogStart: m.LogStart, End: end}, nil
}

// Read reads archived batches, from the segments the last Partition call
// of the partition saw (a search plans, then reads).
func (l *BucketLog) Read(ctx context.Context, t Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	prefix := tier3.PartitionPrefix(t.ID, p)
	segs, ok := l.segs.Load(prefix)
	if !ok {
		if _, err := l.Partition(ctx, t, p); err != nil {
			return nil, err
		}
		segs, _ = l.segs.Load(prefix)
	}
	return l.arch.Read(ctx, prefix, segs.([]tier3.SegmentEntry), offset, maxBytes, nil)
}
