package broker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/broker/group"
)

// Compaction keeps exactly what an oracle over random keys says: the latest
// record per key, records without a key, and latest tombstones younger
// than delete.retention.ms; offsets and timestamps unchanged. It runs in
// several passes (the key map budget is small), over every codec, and again
// incrementally after more data; the result survives a restart.
func TestCompactionOracle(t *testing.T) {
	for name, codec := range map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "zstd": kgo.ZstdCompression(), "gzip": kgo.GzipCompression(), "lz4": kgo.Lz4Compression(), "snappy": kgo.SnappyCompression()} {
		t.Run(name, func(t *testing.T) { compactionOracle(t, codec) })
	}
}

type oracleRec struct {
	key   string
	value *string
	ts    int64
}

func compactionOracle(t *testing.T, codec kgo.CompressionCodec) {
	dir := t.TempDir()
	mod := func(c *Config) {
		tier2Config(c)
		c.CompactionMemoryBytes = 64 * 40 // 40 keys a pass
	}
	b := testBroker(t, dir, mod)
	const day = int64(24 * time.Hour / time.Millisecond)
	testPartition(t, b, "compacted", map[string]string{"cleanup.policy": "compact", "segment.bytes": "3000",
		"segment.ms": "20", "delete.retention.ms": fmt.Sprint(day)})
	cl := testClient(t, b, kgo.DefaultProduceTopic("compacted"), kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(2000))
	rng := rand.New(rand.NewPCG(5, 6))
	var log []oracleRec
	produce := func(n int) {
		now := time.Now().UnixMilli()
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", rng.IntN(200))), Value: []byte(fmt.Sprintf("v%d-%d", len(log), rng.IntN(1000))),
				Timestamp: time.UnixMilli(now)}
			switch rng.IntN(12) {
			case 0: // a tombstone
				r.Value = nil
				if rng.IntN(2) == 0 {
					r.Timestamp = time.UnixMilli(now - 2*day)
				}
			case 1:
				r.Key = nil
			}
			o := oracleRec{key: string(r.Key), ts: r.Timestamp.UnixMilli()}
			if r.Key == nil {
				o.key = "\x00nil"
			}
			if r.Value != nil {
				v := string(r.Value)
				o.value = &v
			}
			recs = append(recs, r)
			log = append(log, o)
		}
		if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p := b.lookupTopic("compacted").partitions[0]
	sealAll := func(p *partition) {
		waitFor(t, 5*time.Second, func() error {
			p.mu.RLock()
			defer p.mu.RUnlock()
			if len(p.batches) > 0 {
				return fmt.Errorf("%d batches unsealed", len(p.batches))
			}
			return nil
		})
	}
	check := func(b *Broker, p *partition) {
		t.Helper()
		latest := map[string]int{}
		for i, r := range log {
			latest[r.key] = i
		}
		now := time.Now().UnixMilli()
		var want []int
		for i, r := range log {
			switch {
			case r.key == "\x00nil":
			case latest[r.key] != i:
				continue
			case r.value == nil && r.ts < now-day:
				continue
			}
			want = append(want, i)
		}
		got := readAllRecords(t, b, p, 1<<20)
		if len(got) != len(want) {
			t.Fatalf("%d records after compaction, oracle keeps %d of %d", len(got), len(want), len(log))
		}
		for j, g := range got {
			w := log[want[j]]
			if g.offset != int64(want[j]) || g.null != (w.value == nil) || (w.value != nil && g.value != *w.value) || g.ts != w.ts {
				t.Fatalf("record %d: got offset %d value %q ts %d, oracle offset %d value %v ts %d", j, g.offset, g.value, g.ts, want[j], w.value, w.ts)
			}
		}
	}
	produce(1500)
	sealAll(p)
	b.clean(time.Now())
	if segCount(p) < 3 {
		t.Fatalf("only %d segments", segCount(p))
	}
	check(b, p)
	produce(500)
	sealAll(p)
	b.clean(time.Now())
	check(b, p)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, mod)
	p2 := b2.lookupTopic("compacted").partitions[0]
	check(b2, p2)
	if _, hw := p2.offsets(); hw != int64(len(log)) {
		t.Fatalf("hw %d after restart, want %d", hw, len(log))
	}
}

// Compacting __consumer_offsets keeps committed offsets correct across a
// restart: its replay only needs the latest record per key.
func TestCompactedConsumerOffsetsReplay(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(testCtx(t), 3, 1, nil, "src"); err != nil {
		t.Fatal(err)
	}
	var last kadm.Offsets
	for i := 0; i < 50; i++ {
		last = kadm.Offsets{}
		for p := int32(0); p < 3; p++ {
			last.Add(kadm.Offset{Topic: "src", Partition: p, At: int64(i*10 + int(p)), LeaderEpoch: -1})
		}
		if _, err := adm.CommitOffsets(testCtx(t), "g", last); err != nil {
			t.Fatal(err)
		}
	}
	ot := b.lookupTopic(offsetsTopic)
	seg := "20"
	if err := b.setTopicConfigsLocked(ot, map[string]string{"cleanup.policy": "compact", "segment.ms": seg}); err != nil {
		t.Fatal(err)
	}
	p := ot.partitions[group.Partition("g", len(ot.partitions))]
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.batches) > 0 {
			return fmt.Errorf("unsealed")
		}
		return nil
	})
	b.clean(time.Now())
	if got := len(readAllRecords(t, b, p, 1<<20)); got != 3 {
		t.Fatalf("%s holds %d records after compaction, want 3 (one per partition)", offsetsTopic, got)
	}
	cl.Close()
	b.Close()
	b2 := testBroker(t, dir, nil)
	fetched, err := kadm.NewClient(testClient(t, b2)).FetchOffsets(testCtx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		o, _ := fetched.Lookup("src", p)
		if want := int64(49*10 + int(p)); o.At != want {
			t.Fatalf("partition %d committed offset %d after compaction and restart, want %d", p, o.At, want)
		}
	}
}
