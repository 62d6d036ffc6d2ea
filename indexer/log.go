package indexer

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// Log is what the indexer and the search engine read partitions from: a
// broker (every tier: the archive, local segments and the active tail) or
// a bucket alone (BucketLog). Implementations are safe for concurrent use.
type Log interface {
	// Topic resolves a topic by name; an unknown topic is an error that
	// wraps ErrUnknownTopic.
	Topic(ctx context.Context, name string) (Topic, error)
	// Partition describes one partition of t.
	Partition(ctx context.Context, t Topic, partition int32) (Partition, error)
	// Read returns whole stored batches from the one holding offset on,
	// up to about maxBytes (the first batch whole, as a Kafka fetch), or
	// nothing at the end of the log.
	Read(ctx context.Context, t Topic, partition int32, offset int64, maxBytes int) ([]byte, error)
}

// Topic is a topic as the log knows it.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions int32
	// SearchEnabled is the topic's search.enabled config: the indexer
	// skips topics that have it false. Search reads them all the same.
	SearchEnabled bool
	// MaxMessageBytes is the topic's max.message.bytes: compressed records
	// are inflated under inflate.Limit of it. 0 means Kafka's default.
	MaxMessageBytes int64
}

// inflateLimit bounds t's batches' records once inflated.
func (t Topic) inflateLimit() int {
	if t.MaxMessageBytes <= 0 {
		return inflate.Limit(inflate.DefaultMaxMessageBytes)
	}
	return inflate.Limit(t.MaxMessageBytes)
}

// Partition is one partition's extent.
type Partition struct {
	// Archived lists the partition's archived segments (the Tier 3
	// manifest), in offset order.
	Archived []tier3.SegmentEntry
	// LogStart is the first offset that may be read.
	LogStart int64
	// End is the offset after the last readable record: the high
	// watermark through a broker, the archive's end in a bucket.
	End int64
	// Follower is set when this log is a replica that does not lead the
	// partition: the leader, which uploads its segments, also indexes
	// them (one writer per index manifest).
	Follower bool
	// Aborted are aborted transactions the log knows of besides those the
	// archived segments list (a broker's, over what it holds locally).
	Aborted []tier3.AbortedTxn
}

// ArchivedEnd returns the offset after the last archived segment, or
// LogStart when nothing is archived.
func (p *Partition) ArchivedEnd() int64 {
	if len(p.Archived) == 0 {
		return p.LogStart
	}
	return max(p.LogStart, p.Archived[len(p.Archived)-1].Next)
}

// readChunk bounds one Read of a scan.
const readChunk = 4 << 20

// scan calls fn with every record of t's partition whose offset is in
// [from, to), in offset order. Records passed to fn share no buffers with
// later ones, so fn may keep them.
func scan(ctx context.Context, l Log, t Topic, partition int32, from, to int64, fn func(r *Record) error) error {
	rs := recordStream{topic: t.Name, partition: partition, next: from, to: to, limit: t.inflateLimit()}
	return readBatches(ctx, l, t, partition, from, to, func(b []byte) error { return rs.feed(b, fn) })
}

// readBatches calls fn with the whole stored batches that hold the
// partition's offsets [from, to), a Read at a time (each b a buffer of its
// own). The first and last batches may hold offsets outside the range.
//
// Only committed records are passed on, as a read_committed consumer sees
// them: transaction markers and the batches of aborted transactions are
// left out.
func readBatches(ctx context.Context, l Log, t Topic, partition int32, from, to int64, fn func(b []byte) error) error {
	var aborted []tier3.AbortedTxn
	if pi, err := l.Partition(ctx, t, partition); err == nil {
		aborted = pi.Aborted
		for _, s := range pi.Archived {
			aborted = append(aborted, s.Aborted...)
		}
	}
	next := from
	for next < to {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := l.Read(ctx, t, partition, next, readChunk)
		if err != nil {
			return fmt.Errorf("read %s/%d at %d: %w", t.Name, partition, next, err)
		}
		if len(b) == 0 {
			return nil
		}
		last := lastOffset(b)
		if last < next {
			return fmt.Errorf("read %s/%d at %d: the log returned offsets up to %d only", t.Name, partition, next, last)
		}
		if b = committedBatches(b, aborted); len(b) > 0 {
			if err := fn(b); err != nil {
				return err
			}
		}
		next = last + 1
	}
	return nil
}

// recordStream turns a partition's batches, as readBatches passes them,
// into the records of [next, to): a record below next (already passed on,
// or before the range) or from to on is skipped.
type recordStream struct {
	topic     string
	partition int32
	next, to  int64
	limit     int // the topic's inflate bound; 0: the default topic's
}

func (s *recordStream) feed(b []byte, fn func(r *Record) error) error {
	var ferr error
	limit := s.limit
	if limit <= 0 {
		limit = Topic{}.inflateLimit()
	}
	err := tier2.EachBatchRecord(b, limit, func(kr *kmsg.Record, off, ts int64) {
		if ferr != nil || off < s.next || off >= s.to {
			return
		}
		r := &Record{Topic: s.topic, Partition: s.partition, Offset: off, Timestamp: ts, Key: kr.Key, Value: kr.Value}
		if len(kr.Headers) > 0 {
			r.Headers = make([]Header, len(kr.Headers))
			for i, h := range kr.Headers {
				r.Headers[i] = Header{Key: h.Key, Value: h.Value}
			}
		}
		s.next = off + 1
		ferr = fn(r)
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("records of %s/%d before %d: %w", s.topic, s.partition, s.next, err)
	}
	return nil
}

// lastOffset returns the last offset of the last whole batch in b, or -1.
// committedBatches drops from b the transaction markers (control
// batches) and the batches of aborted transactions, in place.
func committedBatches(b []byte, aborted []tier3.AbortedTxn) []byte {
	out := b[:0]
	for rest := b; len(rest) >= 61; {
		l := int64(int32(binary.BigEndian.Uint32(rest[8:]))) + 12
		if l < 61 || l > int64(len(rest)) {
			break
		}
		batch := rest[:l]
		rest = rest[l:]
		if attrs := binary.BigEndian.Uint16(batch[21:]); attrs&0x20 != 0 || attrs&0x10 != 0 && isAborted(batch, aborted) {
			continue
		}
		out = append(out, batch...) // never ahead of what is read: copy moves it down
	}
	return out
}

// isAborted reports whether the transactional batch belongs to one of the
// aborted transactions.
func isAborted(batch []byte, aborted []tier3.AbortedTxn) bool {
	base := int64(binary.BigEndian.Uint64(batch))
	producer := int64(binary.BigEndian.Uint64(batch[43:]))
	for _, a := range aborted {
		if a.Producer == producer && base >= a.First && base <= a.Last {
			return true
		}
	}
	return false
}

func lastOffset(b []byte) int64 {
	last := int64(-1)
	for len(b) >= 61 {
		l := int64(int32(binary.BigEndian.Uint32(b[8:]))) + 12
		if l < 61 || l > int64(len(b)) {
			break
		}
		last = int64(binary.BigEndian.Uint64(b)) + int64(int32(binary.BigEndian.Uint32(b[23:])))
		b = b[l:]
	}
	return last
}
