package broker

import (
	"encoding/binary"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3/miniotest"
)

// BenchmarkArchivedRead reads a partition whose every segment is only in
// MinIO, sequentially in 4 MiB reads as a catching-up consumer's fetches
// do, with the broker's chunk cache cold for each pass: the archive read
// path without the network and encoding of Fetch.
//
//	go test ./broker -run '^$' -bench ArchivedRead -benchtime 5x
func BenchmarkArchivedRead(b *testing.B) {
	srv := miniotest.Start(b)
	store := srv.Store(b, srv.NewBucket(b))
	dir := b.TempDir()
	mod := func(c *Config) {
		tier2Config(c)
		c.Tier3 = store
	}
	br := testBroker(b, dir, mod)
	p := testPartition(b, br, "bench", map[string]string{"segment.bytes": "16777216", "local.retention.bytes": "0", "retention.ms": "-1"})
	val := make([]byte, 100)
	recs := make([]testRecord, 1000)
	for i := range recs {
		recs[i] = testRecord{ts: time.Now().UnixMilli(), value: string(val)}
	}
	batch := makeRecordBatch(recs)
	for range 1000 { // 1M records, ~110 MB
		appendDurable(b, br, p, batch)
	}
	setTopicConfigTB(b, br, "bench", "segment.ms", "10")
	waitFor(b, time.Minute, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) > 0 || len(p.batches) > 0 {
			return errNotYet
		}
		return nil
	})
	p.mu.RLock()
	segs := p.archSegs
	_, hw := p.logStart, p.hw
	p.mu.RUnlock()
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		br.Close()
		br = testBroker(b, dir, mod) // a cold cache
		p = br.lookupTopic("bench").partitions[0]
		waitFor(b, 10*time.Second, func() error {
			p.mu.RLock()
			defer p.mu.RUnlock()
			if !p.archLoaded {
				return errNotYet
			}
			return nil
		})
		b.StartTimer()
		var buf []byte
		for next := int64(0); next < hw; {
			var err error
			buf, err = br.readPartition(p, next, 4<<20, buf[:0])
			if err != nil {
				b.Fatal(err)
			}
			last, _ := lastBatchOffset(buf)
			next = last + 1
		}
	}
}

var errNotYet = errors.New("not yet")

// lastBatchOffset returns the last offset of the last batch in buf.
func lastBatchOffset(buf []byte) (int64, bool) {
	last, ok := int64(-1), false
	for rest := buf; len(rest) >= batchHeaderLen; {
		n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
		if n > len(rest) {
			break
		}
		h := readBatchHeader(rest)
		last, ok = batchBaseOffset(rest)+int64(h.LastOffsetDelta), true
		rest = rest[n:]
	}
	return last, ok
}

func setTopicConfigTB(t testing.TB, b *Broker, topic, key, value string) {
	t.Helper()
	tp := b.lookupTopic(topic)
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	next := maps.Clone(b.topicConfigs(tp))
	next[key] = value
	if err := b.setTopicConfigsLocked(tp, next); err != nil {
		t.Fatal(err)
	}
}
