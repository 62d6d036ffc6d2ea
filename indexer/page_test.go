package indexer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Pages continued with Next give the hits of one search, each once and in
// order, whether they end at their limit or at their byte bound.
func TestContinuationPagesLikeOneSearch(t *testing.T) {
	l, n := pagingLog()
	e := newTestEngine(t, l, nil)
	ctx := context.Background()
	for _, sortBy := range []string{"-time", "time", "score"} {
		for _, c := range []struct {
			limit, maxBytes int
		}{{37, 0}, {500, 2000}, {1, 0}} {
			q := "word:w1"
			all, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: n, Sort: sortBy})
			if err != nil {
				t.Fatal(err)
			}
			var paged []Hit
			after, pages, truncated := "", 0, 0
			for {
				r, err := e.Search(ctx, Request{Topics: []string{"events"}, Query: q, Limit: c.limit, MaxBytes: c.maxBytes, Sort: sortBy, After: after})
				if err != nil {
					t.Fatalf("%s %+v page %d: %v", sortBy, c, pages, err)
				}
				pages++
				paged = append(paged, r.Hits...)
				if r.Truncated == TruncatedBytes {
					truncated++
				}
				if r.Next == "" {
					break
				}
				if pages > n+1 {
					t.Fatalf("%s %+v: more pages than hits", sortBy, c)
				}
				after = r.Next
			}
			if d := cmp.Diff(all.Hits, paged); d != "" {
				t.Errorf("%s %+v: pages differ from one search (-one +pages):\n%s", sortBy, c, d)
			}
			if c.maxBytes > 0 && truncated == 0 {
				t.Errorf("%s %+v: no page ended at its byte bound", sortBy, c)
			}
		}
	}
	if _, err := e.Search(ctx, Request{Topics: []string{"events"}, After: "garbage"}); err == nil || !strings.Contains(err.Error(), "not a \"next\" token") {
		t.Errorf("a bad token: %v", err)
	}
	r, _ := e.Search(ctx, Request{Topics: []string{"events"}, Limit: 1, Sort: "time"})
	if _, err := e.Search(ctx, Request{Topics: []string{"events"}, After: r.Next, Sort: "score"}); err == nil || !strings.Contains(err.Error(), "sorted by time") {
		t.Errorf("a token of another sort: %v", err)
	}
}

// gatedLog is a Log whose reads block, once more than allow were
// served, until the gate opens or the reader's context ends.
type gatedLog struct {
	*memLog
	closed  atomic.Bool
	allow   atomic.Int64 // reads left before blocking; negative: never block
	gate    chan struct{}
	waiting chan struct{} // gets a value when a read blocks
	once    sync.Once
}

func newGatedLog(l *memLog) *gatedLog {
	g := &gatedLog{memLog: l, gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	g.allow.Store(-1)
	return g
}

func (g *gatedLog) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedLog) Read(ctx context.Context, t Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	if g.allow.Load() >= 0 && g.allow.Add(-1) < 0 {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.memLog.Read(ctx, t, p, offset, maxBytes)
}

// oneLog is 100 records of one partition, 20 archived segments of 5.
func oneLog() *memLog {
	l := newMemLog()
	l.addTopic("one", 1, 1)
	for b := 0; b < 20; b++ {
		var recs []*Record
		for i := 0; i < 5; i++ {
			recs = append(recs, &Record{Timestamp: t0 + int64(b*5+i), Value: []byte(fmt.Sprintf(`{"n":%d}`, b*5+i))})
		}
		l.add("one", 0, recs)
	}
	return l
}

func post(t *testing.T, url, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: answer %d: %v", body, resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, out
}

func offsetsOf(out map[string]any) []int {
	var offs []int
	hits, _ := out["hits"].([]any)
	for _, h := range hits {
		offs = append(offs, int(h.(map[string]any)["offset"].(float64)))
	}
	return offs
}

// A page larger than MaxHits is refused with the bound and the way on.
func TestHandlerRefusesPagesPastMaxHits(t *testing.T) {
	srv := httptest.NewServer(Handler(newTestEngine(t, oneLog(), nil), Limits{MaxHits: 10, MaxConcurrent: 1}))
	defer srv.Close()
	for _, body := range []string{`{"topics":["one"],"query":"","limit":11}`, `{"topics":["one"],"query":"","limit":5,"offset":6}`} {
		code, _, out := post(t, srv.URL, body)
		msg, _ := out["error"].(string)
		if code != 400 || out["max_hits"] != 10.0 || !strings.Contains(msg, "CHRONIK_SEARCH_MAX_HITS") || !strings.Contains(msg, `"after"`) {
			t.Errorf("%s: %d %v", body, code, out)
		}
	}
	code, _, out := post(t, srv.URL, `{"topics":["one"],"query":"","limit":10}`)
	if code != 200 || len(offsetsOf(out)) != 10 || out["next"] == nil {
		t.Errorf("a page of the largest size: %d %v", code, out)
	}
}

// Past MaxConcurrent searches a request is answered 429 with Retry-After
// at once; the search running is not disturbed.
func TestHandlerRefusesSearchesPastMaxConcurrent(t *testing.T) {
	g := newGatedLog(oneLog())
	g.allow.Store(0) // every read waits: the first search holds its slot
	srv := httptest.NewServer(Handler(newTestEngine(t, g, nil), Limits{MaxHits: 100, MaxConcurrent: 1, Timeout: time.Minute}))
	defer srv.Close()
	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"topics":["one"],"query":""}`))
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	<-g.waiting
	start := time.Now()
	code, h, out := post(t, srv.URL, `{"topics":["one"],"query":""}`)
	if code != 429 || h.Get("Retry-After") != "1" || !strings.Contains(out["error"].(string), "CHRONIK_SEARCH_MAX_CONCURRENT") {
		t.Errorf("second search: %d Retry-After %q %v", code, h.Get("Retry-After"), out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the 429 took %v", d)
	}
	g.open()
	if code := <-first; code != 200 {
		t.Errorf("first search: %d", code)
	}
	// The slot is free once the first answer is written.
	for i := 0; ; i++ {
		code, _, _ := post(t, srv.URL, `{"topics":["one"],"query":""}`)
		if code == 200 {
			break
		}
		if i == 100 {
			t.Fatalf("a search after the first ended: %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// At its timeout a search that has read no hit yet is answered 503; one
// that has read some answers them with a "next" that continues it.
func TestHandlerTimeout(t *testing.T) {
	g := newGatedLog(oneLog())
	e := newTestEngine(t, g, nil)
	srv := httptest.NewServer(Handler(e, Limits{MaxHits: 100, MaxResponseBytes: 1 << 20, MaxConcurrent: 1, Timeout: 300 * time.Millisecond}))
	defer srv.Close()

	g.allow.Store(0) // the indexes cannot be built
	code, _, out := post(t, srv.URL, `{"topics":["one"],"query":""}`)
	if msg, _ := out["error"].(string); code != 503 || out["timeout_ms"] != 300.0 || !strings.Contains(msg, "CHRONIK_SEARCH_TIMEOUT_MS") {
		t.Errorf("no index ready: %d %v", code, out)
	}

	g.allow.Store(-1)
	if _, err := e.Search(context.Background(), Request{Topics: []string{"one"}, Limit: 1}); err != nil { // builds the indexes
		t.Fatal(err)
	}
	g.allow.Store(1) // the first window of hits is read, the rest waits
	code, _, out = post(t, srv.URL, `{"topics":["one"],"query":"","limit":100}`)
	got := offsetsOf(out)
	if code != 200 || out["truncated"] != TruncatedTimeout || out["next"] == nil || len(got) == 0 || len(got) >= 100 {
		t.Fatalf("hits read before the timeout: %d %d hits %v", code, len(got), out["truncated"])
	}
	g.allow.Store(-1)
	code, _, out = post(t, srv.URL, fmt.Sprintf(`{"topics":["one"],"query":"","limit":100,"after":%q}`, out["next"]))
	if code != 200 {
		t.Fatalf("continuation: %d %v", code, out)
	}
	got = append(got, offsetsOf(out)...)
	if len(got) != 100 {
		t.Fatalf("%d hits over both pages, want 100: %v", len(got), got)
	}
	for i, off := range got {
		if off != 99-i {
			t.Fatalf("hit %d is offset %d, want %d (newest first, each once)", i, off, 99-i)
		}
	}
}
