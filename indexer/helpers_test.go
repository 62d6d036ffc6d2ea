package indexer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier3"
)

// memLog is an in-memory Log for this package's unit tests: each
// partition is a list of batches, split into "archived" segments of
// segSize batches and a tail.
type memLog struct {
	mu     sync.Mutex
	topics map[string]*memTopic
}

type memTopic struct {
	t     Topic
	parts [][]memBatch
	seg   int                 // batches per archived segment; the last partial group is the tail
	infos map[int32]Partition // Partition's answers until the next add
}

type memBatch struct {
	base, last, maxTs int64
	b                 []byte
}

func newMemLog() *memLog { return &memLog{topics: map[string]*memTopic{}} }

func (l *memLog) addTopic(name string, partitions int32, segBatches int) {
	id := sha256.Sum256([]byte(name))
	var tid [16]byte
	copy(tid[:], id[:])
	l.topics[name] = &memTopic{t: Topic{Name: name, ID: tid, Partitions: partitions, SearchEnabled: true},
		parts: make([][]memBatch, partitions), seg: segBatches}
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// add appends one batch of records to a partition.
func (l *memLog) add(topic string, p int32, recs []*Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mt := l.topics[topic]
	base := int64(0)
	if n := len(mt.parts[p]); n > 0 {
		base = mt.parts[p][n-1].last + 1
	}
	first := recs[0].Timestamp
	maxTs := first
	var raw []byte
	for i, r := range recs {
		r.Topic, r.Partition, r.Offset = topic, p, base+int64(i)
		maxTs = max(maxTs, r.Timestamp)
		kr := kmsg.Record{TimestampDelta64: r.Timestamp - first, OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		kr.Length = int32(len(kr.AppendTo(nil)) - 1) // the body after a one-byte zero length
		raw = kr.AppendTo(raw)
	}
	rb := kmsg.RecordBatch{FirstOffset: base, PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: first, MaxTimestamp: maxTs, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs)), Records: raw}
	b := rb.AppendTo(nil)
	n := len(b) - 12
	b[8], b[9], b[10], b[11] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	c := crc32.Checksum(b[21:], crc32c)
	b[17], b[18], b[19], b[20] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	delete(mt.infos, p)
	mt.parts[p] = append(mt.parts[p], memBatch{base: base, last: base + int64(len(recs)) - 1, maxTs: maxTs, b: b})
}

func (l *memLog) Topic(_ context.Context, name string) (Topic, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mt, ok := l.topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w %q", ErrUnknownTopic, name)
	}
	return mt.t, nil
}

func (l *memLog) Partition(_ context.Context, t Topic, p int32) (Partition, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	mt := l.topics[t.Name]
	if pi, ok := mt.infos[p]; ok {
		return pi, nil
	}
	bs := mt.parts[p]
	var pi Partition
	for i := 0; i+mt.seg <= len(bs); i += mt.seg {
		g := bs[i : i+mt.seg]
		h := sha256.New()
		var size, maxTs int64
		for _, b := range g {
			h.Write(b.b)
			size += int64(len(b.b))
			maxTs = max(maxTs, b.maxTs)
		}
		pi.Archived = append(pi.Archived, tier3.SegmentEntry{Base: g[0].base, Next: g[len(g)-1].last + 1, Size: size,
			MaxTs: maxTs, LogSHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if len(bs) > 0 {
		pi.End = bs[len(bs)-1].last + 1
	}
	if mt.infos == nil {
		mt.infos = map[int32]Partition{}
	}
	mt.infos[p] = pi
	return pi, nil
}

func (l *memLog) Read(_ context.Context, t Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bs := l.topics[t.Name].parts[p]
	i := sort.Search(len(bs), func(i int) bool { return bs[i].last >= offset })
	var out []byte
	for ; i < len(bs); i++ {
		if len(out) > 0 && len(out)+len(bs[i].b) > maxBytes {
			break
		}
		out = append(out, bs[i].b...)
	}
	return out, nil
}

func newTestEngine(t *testing.T, l Log, store tier3.Store) *Engine {
	t.Helper()
	c, err := OpenCache(t.TempDir(), 1<<30, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e, err := NewEngine(EngineConfig{Log: l, Store: store, Cache: c})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
