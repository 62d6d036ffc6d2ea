package broker

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier2"
)

// benchRecords is the records per consume run (CHRONIK_BENCH_RECORDS
// overrides the default).
func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("CHRONIK_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 2_000_000
}

func fill(b *testing.B, addr, topic string, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	// Random values: nothing compresses, and nothing is compressed.
	vals := make([]byte, 100*1024)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range vals {
		vals[i] = byte(rng.Uint32())
	}
	ctx := context.Background()
	errs := make(chan error, 1)
	for i := 0; i < n; i++ {
		j := (i % 1000) * 100
		cl.Produce(ctx, &kgo.Record{Value: vals[j : j+100 : j+100]}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// consumeFrom reads n records of partition 0 from the start with a fresh
// franz-go consumer and returns the records per second.
func consumeFrom(b *testing.B, addr, topic string, n int) float64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { b.Fatal(err) })
		fs.EachRecord(func(*kgo.Record) { got++ })
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkConsumeSealedVsKfake measures a franz-go consumer reading 100 B
// records that all live in sealed Tier 2 segments, and the same consumer
// reading the same records from franz-go's in-memory kfake, alternating in
// one run; it reports both rates and their ratio. Targets: >= 3 M msg/s and
// >= 0.75 x kfake. Run with -benchtime=3x.
func BenchmarkConsumeSealedVsKfake(b *testing.B) {
	n := benchRecords()
	br := testBroker(b, b.TempDir(), func(c *Config) {
		tier2Config(c)
		c.WALProfile = walProfile("high")
	})
	if _, err := br.createTopic("sealed", 1, -1, map[string]*string{"segment.bytes": ptr("16777216")}, false); err != nil {
		b.Fatal(err)
	}
	fill(b, br.Addr().String(), "sealed", n)
	p := br.lookupTopic("sealed").partitions[0]
	br.sealDue(time.Now().Add(30 * 24 * time.Hour)) // past segment.ms: seal the rest
	p.mu.RLock()
	segs, active := len(p.segs), len(p.batches)
	p.mu.RUnlock()
	if active != 0 || segs == 0 {
		b.Fatalf("%d segments, %d batches unsealed", segs, active)
	}

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sealed"))
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	fill(b, fake.ListenAddrs()[0], "sealed", n)

	b.ResetTimer()
	var chronik, kf float64
	for i := 0; i < b.N; i++ {
		chronik += consumeFrom(b, br.Addr().String(), "sealed", n)
		kf += consumeFrom(b, fake.ListenAddrs()[0], "sealed", n)
	}
	b.StopTimer()
	b.ReportMetric(chronik/float64(b.N), "chronik-msg/s")
	b.ReportMetric(kf/float64(b.N), "kfake-msg/s")
	b.ReportMetric(chronik/kf, "ratio")
	b.Logf("%d records in %d sealed segments; chronik %.2f M msg/s, kfake %.2f M msg/s, ratio %.2f",
		n, segs, chronik/float64(b.N)/1e6, kf/float64(b.N)/1e6, chronik/kf)
}

func ptr[T any](v T) *T { return &v }

// noSyncFS skips fsyncs: only for building a large fixture quickly.
type noSyncFS struct{ vfs.FS }

func (f noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}
func (noSyncFS) SyncDir(string) error { return nil }

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error { return nil }

// BenchmarkStartup10kSegments measures New (load and validate every sealed
// segment, replay the WAL, recover group offsets) on a data directory with
// 10,000 sealed segments: 100 partitions of 100 segments of 64 KiB. The
// fixture is built once per run.
func BenchmarkStartup10kSegments(b *testing.B) {
	dir := b.TempDir()
	const parts, perPart = 100, 100
	br := testBroker(b, dir, nil)
	if _, err := br.createTopic("many", parts, -1, nil, false); err != nil {
		b.Fatal(err)
	}
	t := br.lookupTopic("many")
	if err := br.Close(); err != nil {
		b.Fatal(err)
	}
	fs := noSyncFS{vfs.Default}
	files := tier2.NewFileCache(16)
	now := time.Now().UnixMilli()
	for pi := int32(0); pi < parts; pi++ {
		pdir := tier2.PartitionDir(filepath.Join(dir, "segments"), t.id, pi)
		off := int64(0)
		for s := 0; s < perPart; s++ {
			w, err := tier2.Create(fs, pdir, files, off)
			if err != nil {
				b.Fatal(err)
			}
			for w.Size() < 64<<10 {
				recs := make([]testRecord, 100)
				for i := range recs {
					recs[i] = testRecord{ts: now, value: "0123456789012345678901234567890123456789"}
				}
				batch := makeRecordBatch(recs)
				setBaseOffset(batch, off)
				if err := w.Append(batch); err != nil {
					b.Fatal(err)
				}
				off += 100
			}
			if _, err := w.Finish(off); err != nil {
				b.Fatal(err)
			}
		}
	}
	files.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		cfg := DefaultConfig()
		cfg.DataDir = dir
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		nb, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		np := nb.lookupTopic("many").partitions[0]
		if segCount(np) != perPart {
			b.Fatalf("%d segments loaded", segCount(np))
		}
		b.ReportMetric(float64(took.Milliseconds()), "ms/startup")
		b.ReportMetric(float64(nb.files.Open()), "open-files")
		nb.Close()
	}
}
