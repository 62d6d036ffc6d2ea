package indexer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

var cities = []string{"paris", "berlin", "lisbon", "rome", "madrid", "oslo", "vienna"}

// benchRecord is record k of the benchmark corpus: about 100-150 bytes,
// half JSON log events (two strings, one number), half text.
func benchRecord(k int) *Record {
	var v []byte
	if k%2 == 0 {
		v = fmt.Appendf(nil, `{"level":"l%d","city":"%s","status":"s%d","latency_ms":%d,"msg":"order %d shipped"}`, k%3, cities[k%7], k%5, k%1000, k)
	} else {
		v = fmt.Appendf(nil, "event %d from %s level l%d", k, cities[k%7], k%3)
	}
	return &Record{Timestamp: t0 + int64(k), Key: []byte("k-" + strconv.Itoa(k)), Value: v,
		Headers: []Header{{Key: "src", Value: []byte("h" + strconv.Itoa(k%4))}}}
}

// benchLog holds n records in 3 partitions, in batches of 100 records and
// segments of segBatches batches.
func benchLog(n, segBatches int) *memLog {
	l := newMemLog()
	l.addTopic("bench", 3, segBatches)
	for i := 0; i < n; i += 300 {
		for p := int32(0); p < 3; p++ {
			var recs []*Record
			for k := i + int(p); k < min(i+300, n); k += 3 {
				recs = append(recs, benchRecord(k))
			}
			if len(recs) > 0 {
				l.add("bench", p, recs)
			}
		}
	}
	return l
}

// BenchmarkIndexSegment measures indexing throughput: one partition's
// 20,000 records into one on-disk segment index (what an indexer worker
// does per segment, upload aside), on one core.
func BenchmarkIndexSegment(b *testing.B) {
	l := benchLog(60_000, 1<<30)
	t, _ := l.Topic(context.Background(), "bench")
	var bytes int64
	for _, mb := range l.topics["bench"].parts[0] {
		bytes += int64(len(mb.b))
	}
	b.SetBytes(bytes)
	b.ReportAllocs()
	recs := 0
	for i := 0; b.Loop(); i++ {
		d, err := newDiskBuilder(filepath.Join(b.TempDir(), strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		recs = 0
		if err := scan(context.Background(), l, t, 0, 0, 1<<62, func(r *Record) error { recs++; return d.add(r) }); err != nil {
			b.Fatal(err)
		}
		if err := d.close(); err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.ReportMetric(float64(dirSize(d.dir))/float64(recs), "index-bytes/record")
		}
	}
	b.ReportMetric(float64(recs)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// searchQueries are selective (about 100 hits per million records) and
// broad queries.
var searchQueries = []string{"+status:s1 +latency_ms:>=990 +city:paris", "lisbon", `"level l2" +berlin`}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkSearch measures whole searches through the engine (plan,
// indexes, one alias search, every hit's record read back) over 60,000
// archived records in 6 segments: cached (indexes in the cache) and cold
// (every index downloaded from the store and unpacked again).
func BenchmarkSearch(b *testing.B) {
	l := benchLog(60_000, 100) // 6 segments of 10,000 records
	store := tier3.NewMemStore()
	x := &Indexer{cfg: Config{Log: l, Store: store}, mans: map[partKey]*IndexManifest{}, m: newPoolMetrics(nil)}
	x.cfg.TempDir = b.TempDir()
	x.log = discardLogger()
	for p := int32(0); p < 3; p++ {
		if err := x.indexPartition(context.Background(), partKey{"bench", p}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, cold := range []bool{false, true} {
		for _, qs := range searchQueries {
			b.Run(fmt.Sprintf("cold=%t/q=%s", cold, qs), func(b *testing.B) {
				e := newBenchEngine(b, l, store)
				if _, err := e.Search(ctx, Request{Topics: []string{"bench"}, Query: qs}); err != nil {
					b.Fatal(err)
				}
				var lat []time.Duration
				for b.Loop() {
					if cold {
						b.StopTimer()
						e = newBenchEngine(b, l, store)
						b.StartTimer()
					}
					start := time.Now()
					r, err := e.Search(ctx, Request{Topics: []string{"bench"}, Query: qs, Limit: 100})
					if err != nil || len(r.Hits) == 0 || r.Built > 0 {
						b.Fatal(err, len(r.Hits), r.Built)
					}
					lat = append(lat, time.Since(start))
				}
				reportLatency(b, lat)
			})
		}
	}
}

func newBenchEngine(b *testing.B, l Log, store tier3.Store) *Engine {
	c, err := OpenCache(b.TempDir(), 4<<30, 64)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	e, err := NewEngine(EngineConfig{Log: l, Store: store, Cache: c})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkSearchArchive measures whole searches through the engine
// (plan, every index, ordering, each hit's record read back) over
// CHRONIK_BENCH_RECORDS (10.2 M) records in 3 partitions, in segments of
// 100,000 records, every segment index cached and open: the first search
// builds them into CHRONIK_BENCH_CACHE (a temporary directory unless set;
// a kept directory skips the build next time).
func BenchmarkSearchArchive(b *testing.B) {
	n := 10_200_000
	if v, err := strconv.Atoi(os.Getenv("CHRONIK_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	l := benchLog(n, 1000)
	dir := os.Getenv("CHRONIK_BENCH_CACHE")
	if dir == "" {
		dir = b.TempDir()
	}
	open := func() (*Cache, *Engine) {
		c, err := OpenCache(dir, 1<<40, 64)
		if err != nil {
			b.Fatal(err)
		}
		e, err := NewEngine(EngineConfig{Log: l, Cache: c})
		if err != nil {
			b.Fatal(err)
		}
		return c, e
	}
	c, e := open()
	defer func() { c.Close() }()
	ctx := context.Background()
	start := time.Now()
	r, err := e.Search(ctx, Request{Topics: []string{"bench"}, Query: searchQueries[0]})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d records, %d indexes (%d built) ready in %s", n, r.Indexes, r.Built, time.Since(start).Round(time.Millisecond))
	// "-time/exact": newest first, every match counted (ExactTotal).
	for _, sortBy := range []string{"-time", "-time/exact", "score"} {
		for _, qs := range searchQueries {
			b.Run(fmt.Sprintf("sort=%s/q=%s", sortBy, qs), func(b *testing.B) {
				var lat []time.Duration
				var total uint64
				req := Request{Topics: []string{"bench"}, Query: qs, Sort: strings.TrimSuffix(sortBy, "/exact"), ExactTotal: strings.HasSuffix(sortBy, "/exact")}
				for b.Loop() {
					start := time.Now()
					r, err := e.Search(ctx, req)
					if err != nil || len(r.Hits) == 0 || r.Built > 0 {
						b.Fatal(err, r)
					}
					lat = append(lat, time.Since(start))
					total = r.Total
				}
				reportLatency(b, lat)
				b.ReportMetric(float64(total), "matches")
			})
		}
	} // After a restart: the indexes on disk, closed, their coordinates
	// not read yet.
	for _, qs := range searchQueries {
		b.Run(fmt.Sprintf("reopened/q=%s", qs), func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				c.Close()
				c, e = open()
				b.StartTimer()
				start := time.Now()
				r, err := e.Search(ctx, Request{Topics: []string{"bench"}, Query: qs})
				if err != nil || len(r.Hits) == 0 || r.Built > 0 {
					b.Fatal(err, r)
				}
				lat = append(lat, time.Since(start))
			}
			reportLatency(b, lat)
		})
	}
}
