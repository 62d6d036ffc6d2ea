package indexer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/chronik-go/chronik/tier3"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()

// mappingLog holds a few records of every kind.
func mappingLog() *memLog {
	l := newMemLog()
	l.addTopic("orders", 2, 1)
	l.add("orders", 0, []*Record{
		{Timestamp: t0, Key: []byte("order-1"), Value: []byte(`{"city":"paris","order":{"total":120.5,"paid":true},"created":"2026-02-01T10:00:00.5Z","note":"disk full again","key":"inner"}`),
			Headers: []Header{{Key: "source", Value: []byte("billing api")}}},
		{Timestamp: t0 + 1000, Key: []byte("order-2"), Value: []byte(`{"city":"berlin","order":{"total":80,"paid":false},"tags":["urgent","eu"]}`)},
	})
	l.add("orders", 1, []*Record{
		{Timestamp: t0 + 2000, Key: []byte("order-3"), Value: []byte(`plain text mentions paris and disk`)},
		{Timestamp: t0 + 3000, Value: []byte(`{"city":"Paris","order":{"total":100}}`), Headers: []Header{{Key: "source", Value: []byte("web")}}},
	})
	l.add("orders", 1, []*Record{{Timestamp: t0 + 4000, Key: []byte("tail-1"), Value: []byte(`{"city":"rome"}`)}}) // tail
	return l
}

func coords(r *Result) []string {
	var out []string
	for _, h := range r.Hits {
		out = append(out, fmt.Sprintf("%d/%d", h.Partition, h.Offset))
	}
	slices.Sort(out)
	return out
}

func TestFieldMapping(t *testing.T) {
	e := newTestEngine(t, mappingLog(), nil)
	cases := []struct {
		q    string
		want []string
	}{
		{"city:paris", []string{"0/0", "1/1"}},               // text, lower-cased
		{"paris", []string{"0/0", "1/0", "1/1"}},             // bare term: JSON and plain values
		{`note:"disk full"`, []string{"0/0"}},                // phrase
		{`"full disk"`, nil},                                 // word order counts
		{"order.total:>=100", []string{"0/0", "1/1"}},        // numeric range on a dotted path
		{"order.total:80", []string{"0/1"}},                  // numeric equality
		{"order.paid:true", []string{"0/0"}},                 // boolean
		{`created:>"2026-01-31T00:00:00Z"`, []string{"0/0"}}, // RFC 3339 string typed as a date
		{"headers.source:billing", []string{"0/0"}},          // header value
		{"billing", []string{"0/0"}},                         // headers are in the bare-term field
		{"key:order-1", []string{"0/0"}},                     // key as one keyword
		{"key:order", nil},                                   // ... not its words
		{"key.text:order", []string{"0/0", "0/1", "1/0"}},    // key words
		{"value.key:inner", []string{"0/0"}},                 // JSON member colliding with a record field
		{"tags:urgent", []string{"0/1"}},                     // array element
		{"+city:paris -headers.source:web", []string{"0/0"}},
		{"city:rome", []string{"1/2"}},                                   // the tail, not archived
		{"partition:1 offset:>=1", []string{"0/1", "1/0", "1/1", "1/2"}}, // OR
		{"partition:1 +offset:>=1", []string{"0/1", "1/1", "1/2"}},       // optional beside a required clause
		{"+partition:1 +offset:>=1", []string{"1/1", "1/2"}},
		{"", []string{"0/0", "0/1", "1/0", "1/1", "1/2"}},
	}
	for _, c := range cases {
		r, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Query: c.q, Limit: 100})
		if err != nil {
			t.Errorf("%q: %v", c.q, err)
			continue
		}
		if d := cmp.Diff(c.want, coords(r)); d != "" {
			t.Errorf("%q: hits (-want +got):\n%s", c.q, d)
		}
	}
}

func TestHitShape(t *testing.T) {
	e := newTestEngine(t, mappingLog(), nil)
	r, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Query: "key:order-1 OR key:order-3", Sort: "time"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Hits) != 2 || r.Total != 2 {
		t.Fatalf("got %d hits of %d, want 2", len(r.Hits), r.Total)
	}
	h := r.Hits[0]
	if h.Topic != "orders" || h.Partition != 0 || h.Offset != 0 || h.Timestamp.UnixMilli() != t0 || *h.Key != "order-1" ||
		h.Headers["source"] != "billing api" || !strings.HasPrefix(string(h.Value), `{"city":"paris"`) {
		t.Errorf("first hit %+v value %s", h, h.Value)
	}
	if string(r.Hits[1].Value) != `"plain text mentions paris and disk"` {
		t.Errorf("a text value is a JSON string, got %s", r.Hits[1].Value)
	}
}

func TestQueryErrors(t *testing.T) {
	e := newTestEngine(t, mappingLog(), nil)
	cases := []struct{ q, bad string }{
		{`order.total:>5 city:"paris`, `city:"paris`},
		{`city:paris timestamp:>"yesterday"`, `timestamp:>"yesterday"`},
		{"city:paris order.total:>>5", "order.total:>>5"},
	}
	for _, c := range cases {
		_, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Query: c.q})
		var qe *QueryError
		if !errors.As(err, &qe) {
			t.Errorf("%q: got %v, want a query error", c.q, err)
			continue
		}
		if c.bad != "" && qe.Query[qe.Pos:qe.End] != c.bad {
			t.Errorf("%q: blamed %q, want %q", c.q, qe.Query[qe.Pos:qe.End], c.bad)
		}
		if !strings.Contains(qe.Caret(), "^") {
			t.Errorf("%q: caret %q", c.q, qe.Caret())
		}
	}
	if _, err := e.Search(context.Background(), Request{Topics: []string{"nope"}, Query: "x"}); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("unknown topic: %v", err)
	}
	if _, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Sort: "size"}); err == nil {
		t.Errorf("a bad sort was accepted")
	}
	// Offsets that would overflow offset + limit are refused, in every order.
	for _, sortBy := range []string{"-time", "time", "score"} {
		for _, off := range []int{math.MaxInt, math.MaxInt - 50, MaxLimit + 1} {
			_, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Sort: sortBy, Offset: off, Limit: 100})
			if !errors.Is(err, errBadRequest) {
				t.Errorf("sort %s offset %d: %v, want a bad request", sortBy, off, err)
			}
		}
	}
	// Nothing to search is an exact 0.
	r, err := e.Search(context.Background(), Request{Topics: []string{"orders"}, Query: "nomatchword"})
	if err != nil || r.Total != 0 || !r.TotalExact {
		t.Errorf("no match: %v, total %d exact %t", err, r.Total, r.TotalExact)
	}
}

// pagingLog: 3 partitions, 10 segments of 4 batches of 5 records each,
// timestamps interleaved across partitions, and a tail.
func pagingLog() (*memLog, int) {
	l := newMemLog()
	l.addTopic("events", 3, 4)
	n := 0
	for b := 0; b < 41; b++ {
		for p := int32(0); p < 3; p++ {
			var recs []*Record
			for i := 0; i < 5; i++ {
				ts := t0 + int64(n%97)*10 + int64(p) // duplicates across batches: ties broken by partition, offset
				recs = append(recs, &Record{Timestamp: ts, Value: []byte(fmt.Sprintf(`{"n":%d,"word":"w%d"}`, n, n%3))})
				n++
			}
			l.add("events", p, recs)
		}
	}
	return l, n
}

func TestPagingAndMergeOrder(t *testing.T) {
	l, _ := pagingLog()
	e := newTestEngine(t, l, nil)
	ctx := context.Background()
	all, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: "word:w1", Limit: 10000, Sort: "time"})
	if err != nil {
		t.Fatal(err)
	}
	if int(all.Total) != len(all.Hits) || len(all.Hits) == 0 {
		t.Fatalf("total %d, hits %d", all.Total, len(all.Hits))
	}
	for i := 1; i < len(all.Hits); i++ {
		a, b := all.Hits[i-1], all.Hits[i]
		if a.Timestamp.After(b.Timestamp) || a.Timestamp.Equal(b.Timestamp) && (a.Offset > b.Offset || a.Offset == b.Offset &&
			DocID(a.Topic, a.Partition, a.Offset) >= DocID(b.Topic, b.Partition, b.Offset)) {
			t.Fatalf("hits %d and %d out of order: %+v %+v", i-1, i, a, b)
		}
	}
	for _, sortBy := range []string{"time", "-time", "score"} {
		one, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: "word:w1", Limit: 10000, Sort: sortBy})
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Hits) != int(one.Total) || !one.TotalExact {
			t.Errorf("sort %s: %d hits of %d (exact %t)", sortBy, len(one.Hits), one.Total, one.TotalExact)
		}
	}
	var paged []Hit
	for off := 0; off < len(all.Hits); off += 37 {
		r, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: "word:w1", Limit: 37, Offset: off, Sort: "time"})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, r.Hits...)
	}
	if d := cmp.Diff(all.Hits, paged); d != "" {
		t.Errorf("pages differ from one search (-one +pages):\n%s", d)
	}
	desc, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: "word:w1", Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(desc.Hits)
	if d := cmp.Diff(all.Hits, desc.Hits); d != "" {
		t.Errorf("-time is not time reversed:\n%s", d)
	}
	// A time range keeps what falls in it, bounds included.
	from, to := time.UnixMilli(t0+100), time.UnixMilli(t0+200)
	r, err := e.Search(ctx, Request{Topics: []string{"events"}, Limit: 10000, From: from, To: to, Sort: "time"})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	all2, _ := e.Search(ctx, Request{Topics: []string{"events"}, Limit: 10000})
	for _, h := range all2.Hits {
		if !h.Timestamp.Before(from) && !h.Timestamp.After(to) {
			want++
		}
	}
	if len(r.Hits) != want || want == 0 {
		t.Errorf("time range: %d hits, want %d", len(r.Hits), want)
	}
}

// TestUploadedIndexesGiveTheSameHits: the indexer uploads an index per
// archived segment; a search then downloads them instead of building, and
// finds what a search over on-the-fly indexes finds. Retention dropping a
// segment drops its index.
func TestUploadedIndexesGiveTheSameHits(t *testing.T) {
	l, _ := pagingLog()
	store := tier3.NewMemStore()
	x, err := NewIndexer(Config{Log: l, Store: store, Topics: func() []string { return []string{"events"} }, TempDir: t.TempDir(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for p := int32(0); p < 3; p++ {
		if err := x.indexPartition(ctx, partKey{"events", p}); err != nil {
			t.Fatal(err)
		}
	}
	pi, _ := l.Partition(ctx, Topic{Name: "events"}, 0)
	im, err := LoadIndexManifest(ctx, store, l.topics["events"].t.ID, 0)
	if err != nil || len(im.Indexes) != len(pi.Archived) || len(pi.Archived) < 2 {
		t.Fatalf("index manifest %+v (%v) for %d segments", im, err, len(pi.Archived))
	}
	if segs, recs := x.Lag(); segs != 0 || recs != 0 {
		t.Errorf("lag %d segments %d records after indexing", segs, recs)
	}
	uploaded := newTestEngine(t, l, store)
	onTheFly := newTestEngine(t, l, nil)
	for i, q := range []string{"word:w2", "n:>=100", ""} {
		a, err := uploaded.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		b, err := onTheFly.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if a.Built != 0 || (i == 0) != (b.Built > 0) {
			t.Errorf("%q: built %d with uploaded indexes, %d without", q, a.Built, b.Built)
		}
		if d := cmp.Diff(b.Hits, a.Hits); d != "" || a.Total != b.Total {
			t.Errorf("%q: uploaded indexes differ from on-the-fly ones:\n%s", q, d)
		}
	}
	// A damaged index object is not used: the segment is indexed here.
	key := tier3.PartitionPrefix(l.topics["events"].t.ID, 0) + im.Indexes[0].Object
	if _, err := store.Put(ctx, key, strings.NewReader("garbage"), 7); err != nil {
		t.Fatal(err)
	}
	fresh := newTestEngine(t, l, store)
	r, err := fresh.Search(ctx, Request{Topics: []string{"events"}, Query: "word:w2", Limit: 10000})
	if err != nil || r.Built != 1 {
		t.Errorf("damaged index: built %d, err %v", r.Built, err)
	}
}

// TestRealtimeTail: with the realtime index, a search finds the same
// records as without, as the tail grows and its front is archived.
func TestRealtimeTail(t *testing.T) {
	l := newMemLog()
	l.addTopic("live", 1, 3)
	c, err := OpenCache(t.TempDir(), 1<<30, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rt, err := NewEngine(EngineConfig{Log: l, Cache: c, Realtime: true})
	if err != nil {
		t.Fatal(err)
	}
	plain := newTestEngine(t, l, nil)
	ctx := context.Background()
	n := 0
	for step := 0; step < 7; step++ { // 7 batches: segments archive at 3 and 6
		var recs []*Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &Record{Timestamp: t0 + int64(n), Value: []byte(fmt.Sprintf(`{"n":%d,"w":"w%d"}`, n, n%4))})
			n++
		}
		l.add("live", 0, recs)
		if step == 4 {
			// The background loop may run between searches.
			loopCtx, cancel := context.WithCancel(ctx)
			go rt.RunRealtime(loopCtx, func() []string { return []string{"live"} }, time.Millisecond)
			time.Sleep(20 * time.Millisecond)
			cancel()
		}
		for _, q := range []string{"w:w1", "n:>=5", ""} {
			a, err := rt.Search(ctx, Request{Topics: []string{"live"}, Query: q, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			b, err := plain.Search(ctx, Request{Topics: []string{"live"}, Query: q, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(b.Hits, a.Hits); d != "" || a.Total != b.Total {
				t.Fatalf("step %d %q: realtime differs (-plain +realtime):\n%s", step, q, d)
			}
		}
	}
}

// A topic with search.enabled=false is not indexed, and is still searched.
func TestSearchDisabledTopicNotIndexed(t *testing.T) {
	l, _ := pagingLog()
	l.topics["events"].t.SearchEnabled = false
	store := tier3.NewMemStore()
	x, err := NewIndexer(Config{Log: l, Store: store, Topics: func() []string { return []string{"events"} }, TempDir: t.TempDir(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := x.indexPartition(ctx, partKey{"events", 0}); err != nil {
		t.Fatal(err)
	}
	if objs, _ := store.List(ctx, ""); len(objs) != 0 {
		t.Errorf("indexed a topic with search disabled: %v", objs)
	}
	r, err := newTestEngine(t, l, store).Search(ctx, Request{Topics: []string{"events"}, Query: "word:w1", Limit: 1})
	if err != nil || r.Total == 0 {
		t.Errorf("search of a topic with search disabled: %v, %d hits", err, r.Total)
	}
}

// TestTimeOrderMatchesOracle: searches sorted by time visit indexes
// newest (or oldest) first and only count those that cannot reach the
// page; pages, totals and time ranges must equal a brute-force sort of the
// matching records, with timestamps that jitter across segment bounds
// and tie across partitions.
func TestTimeOrderMatchesOracle(t *testing.T) {
	l := newMemLog()
	l.addTopic("jitter", 3, 3) // segments of 3 batches of 10 records
	var all []*Record
	for b := 0; b < 40; b++ {
		for p := int32(0); p < 3; p++ {
			var recs []*Record
			for i := 0; i < 10; i++ {
				n := len(all) + len(recs)
				ts := t0 + int64(n/3)*10 + int64((n*7919)%400) - 200 // mostly rising, out of order by up to 400 ms
				recs = append(recs, &Record{Timestamp: ts, Value: []byte(fmt.Sprintf("w%d x%d", n%4, n%5))})
			}
			l.add("jitter", p, recs)
			all = append(all, recs...)
		}
	}
	e := newTestEngine(t, l, nil)
	ctx := context.Background()
	type key struct {
		ts, off int64
		p       int32
	}
	for _, tc := range []struct {
		q        string
		match    func(r *Record) bool
		from, to int64 // ms, 0: open
	}{
		{"w1", func(r *Record) bool { return strings.Contains(string(r.Value), "w1 ") }, 0, 0},
		{"+w2 +x3", func(r *Record) bool { return strings.Contains(string(r.Value), "w2 x3") }, 0, 0},
		{"", func(*Record) bool { return true }, t0 + 500, t0 + 2500},
		{"x0", func(r *Record) bool { return strings.HasSuffix(string(r.Value), "x0") }, t0 + 1000, 0},
	} {
		var want []key
		for _, r := range all {
			if tc.match(r) && (tc.from == 0 || r.Timestamp >= tc.from) && (tc.to == 0 || r.Timestamp <= tc.to) {
				want = append(want, key{r.Timestamp, r.Offset, r.Partition})
			}
		}
		for _, sortBy := range []string{"time", "-time"} {
			sorted := slices.Clone(want)
			slices.SortFunc(sorted, func(a, b key) int {
				c := cmpInt(a.ts, b.ts)
				if c == 0 {
					c = cmpInt(a.off, b.off)
				}
				if c == 0 {
					c = cmpInt(int64(a.p), int64(b.p))
				}
				if sortBy == "-time" {
					return -c
				}
				return c
			})
			for _, page := range [][2]int{{1, 0}, {10, 0}, {10, 25}, {100, 3}, {5000, 0}, {10, 5000}} {
				req := Request{Topics: []string{"jitter"}, Query: tc.q, Sort: sortBy, Limit: page[0], Offset: page[1]}
				if tc.from != 0 {
					req.From = time.UnixMilli(tc.from)
				}
				if tc.to != 0 {
					req.To = time.UnixMilli(tc.to)
				}
				exp := sorted[min(page[1], len(sorted)):min(page[1]+page[0], len(sorted))]
				for _, exact := range []bool{false, true} {
					req.ExactTotal = exact
					r, err := e.Search(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					var got []key
					for _, h := range r.Hits {
						got = append(got, key{h.Timestamp.UnixMilli(), h.Offset, h.Partition})
					}
					// Without ExactTotal the total may be a lower bound,
					// never below the hits up to the page's end.
					totalOK := int(r.Total) == len(want) && r.TotalExact
					if !exact && !r.TotalExact {
						totalOK = int(r.Total) < len(want) && int(r.Total) >= page[1]+len(exp)
					}
					if !totalOK || !slices.Equal(got, exp) {
						t.Errorf("%q sort %s limit %d offset %d exact %t: total %d (exact %t) want %d; hits %v want %v",
							tc.q, sortBy, page[0], page[1], exact, r.Total, r.TotalExact, len(want), got, exp)
					}
				}
			}
		}
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// trimmedLog is a Log whose partitions lost their records below start
// after they were indexed (retention between a search and its reads).
type trimmedLog struct {
	Log
	start int64
}

func (l trimmedLog) Read(ctx context.Context, t Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	return l.Log.Read(ctx, t, p, max(offset, l.start), maxBytes)
}

// TestFetchReadsHitsAndCountsMissing: hits are read back in offset order
// with reads sized to the hits, whatever their density, and a hit whose
// record is gone is counted missing, not returned.
func TestFetchReadsHitsAndCountsMissing(t *testing.T) {
	l, n := pagingLog()
	e := newTestEngine(t, l, nil)
	ctx := context.Background()
	all, err := e.Search(ctx, Request{Topics: []string{"events"}, Limit: n})
	if err != nil || len(all.Hits) != n || all.Missing != 0 {
		t.Fatalf("all: %v, %d hits of %d, %d missing", err, len(all.Hits), n, all.Missing)
	}
	for _, h := range all.Hits {
		var v struct{ N int }
		if err := json.Unmarshal(h.Value, &v); err != nil || v.N%5 != int(h.Offset%5) {
			t.Fatalf("hit %d/%d has value %s", h.Partition, h.Offset, h.Value)
		}
	}
	const start = 35 // a batch boundary: retention drops whole batches
	// The same indexes (cached by the first engine), read back from the
	// trimmed log.
	e2, err := NewEngine(EngineConfig{Log: trimmedLog{l, start}, Cache: e.cache})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"", "word:w1"} {
		r, err := e2.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		gone := 0
		for _, h := range r.Hits {
			if h.Offset < start {
				t.Fatalf("%q: hit at offset %d below the log start %d", q, h.Offset, start)
			}
		}
		all, _ := e.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: n})
		for _, h := range all.Hits {
			if h.Offset < start {
				gone++
			}
		}
		if r.Missing != gone || r.Fetched != len(all.Hits)-gone || len(r.Hits) != r.Fetched || gone == 0 {
			t.Errorf("%q: %d missing, %d fetched, %d hits; want %d missing of %d", q, r.Missing, r.Fetched, len(r.Hits), gone, len(all.Hits))
		}
	}
}

// TestCoordsKeptAcrossRuns: a cached index's coordinates are written
// beside it and read back by the next run; a damaged file is read again
// from the index, with the same hits either way.
func TestCoordsKeptAcrossRuns(t *testing.T) {
	l, n := pagingLog()
	dir := t.TempDir()
	search := func() *Result {
		c, err := OpenCache(dir, 1<<30, 64)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		e, err := NewEngine(EngineConfig{Log: l, Cache: c})
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.Search(context.Background(), Request{Topics: []string{"events"}, Query: "word:w2", Limit: n})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := search()
	files, _ := filepath.Glob(filepath.Join(dir, "*", coordsFile))
	if len(files) != 30 {
		t.Fatalf("%d coordinate files, want one per segment index (30)", len(files))
	}
	before, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(first, search(), cmpopts.IgnoreFields(Result{}, "Took", "TookMs", "Built")); d != "" {
		t.Errorf("second run differs:\n%s", d)
	}
	if after, err := os.Stat(files[0]); err != nil || !os.SameFile(before, after) {
		t.Errorf("the second run wrote the coordinates again instead of reading them: %v", err)
	}
	b, err := os.ReadFile(files[3])
	if err != nil {
		t.Fatal(err)
	}
	b[40] ^= 0xff
	if err := os.WriteFile(files[3], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(first, search(), cmpopts.IgnoreFields(Result{}, "Took", "TookMs", "Built")); d != "" {
		t.Errorf("run with a damaged coordinate file differs:\n%s", d)
	}
	if b2, _ := os.ReadFile(files[3]); bytes.Equal(b, b2) {
		t.Errorf("the damaged coordinate file was not written again")
	}
}
