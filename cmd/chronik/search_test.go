package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chronik-go/chronik/indexer"
)

// postSearch posts a search API request to a node.
func postSearch(t *testing.T, n *node, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+n.http+"/api/v1/search", "application/json", strings.NewReader(body))
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

type hitPos struct {
	Partition int32
	Offset    int64
	N         int
	Ts        time.Time
}

func hitsOf(t *testing.T, out map[string]any) []hitPos {
	t.Helper()
	var hs []hitPos
	list, _ := out["hits"].([]any)
	for _, h := range list {
		m := h.(map[string]any)
		ts, _ := time.Parse(time.RFC3339Nano, m["timestamp"].(string))
		v, _ := m["value"].(map[string]any)
		n, _ := v["n"].(float64)
		hs = append(hs, hitPos{int32(m["partition"].(float64)), int64(m["offset"].(float64)), int(n), ts})
	}
	return hs
}

// produceSearchable produces per records of about pad bytes to each of
// parts partitions of a new topic, value {"n": i, ...} with i from 0 up
// across them, and waits until a search sees them all.
func produceSearchable(t *testing.T, n *node, topic string, parts, per, pad int) {
	t.Helper()
	mustChronik(t, "", "topic", "create", topic, "--brokers", n.kafka, "--partitions", fmt.Sprint(parts))
	i := 0
	for p := range parts {
		var lines strings.Builder
		for range per {
			fmt.Fprintf(&lines, `{"n":%d,"word":"w","pad":%q}`+"\n", i, strings.Repeat("x", pad))
			i++
		}
		mustChronik(t, lines.String(), "produce", "--brokers", n.kafka, "--topic", topic, "--partition", fmt.Sprint(p))
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, _, out := postSearch(t, n, fmt.Sprintf(`{"topics":[%q],"query":"","limit":1,"exact_total":true}`, topic))
		if got, _ := out["total"].(float64); int(got) != parts*per {
			return fmt.Errorf("total %v of %d: %v", out["total"], parts*per, out["error"])
		}
		return nil
	})
}

// checkAllOnce checks that hits are the n records, each once, newest
// first (ties: offset, then partition, both descending).
func checkAllOnce(t *testing.T, hits []hitPos, n int) {
	t.Helper()
	seen := map[int]bool{}
	for i, h := range hits {
		if seen[h.N] {
			t.Fatalf("record %d (%d/%d) twice", h.N, h.Partition, h.Offset)
		}
		seen[h.N] = true
		if i > 0 {
			a := hits[i-1]
			if a.Ts.Before(h.Ts) || a.Ts.Equal(h.Ts) && (a.Offset < h.Offset || a.Offset == h.Offset && a.Partition < h.Partition) {
				t.Fatalf("hits %d and %d out of order: %+v %+v", i-1, i, a, h)
			}
		}
	}
	if len(hits) != n {
		t.Fatalf("%d hits, want %d", len(hits), n)
	}
}

// A page larger than CHRONIK_SEARCH_MAX_HITS (10,000 by default) is a 400
// that names the bound and how to page.
func TestSearchAPIRefusesTooLargePage(t *testing.T) {
	n := startNode(t)
	produceSearchable(t, n, "big", 1, 3, 10)
	for _, body := range []string{
		`{"topics":["big"],"query":"","limit":10001}`,
		`{"topics":["big"],"query":"","limit":10000,"offset":1}`,
		`{"topics":["big"],"query":"","limit":10000000}`,
	} {
		code, _, out := postSearch(t, n, body)
		msg, _ := out["error"].(string)
		if code != 400 || out["max_hits"] != 10000.0 || !strings.Contains(msg, "CHRONIK_SEARCH_MAX_HITS") || !strings.Contains(msg, `"next"`) {
			t.Errorf("%s: %d %v", body, code, out)
		}
	}
	if code, _, out := postSearch(t, n, `{"topics":["big"],"query":"","limit":10000}`); code != 200 || len(hitsOf(t, out)) != 3 {
		t.Errorf("a page of 10000: %d %v", code, out)
	}
}

// An answer holds at most CHRONIK_SEARCH_MAX_RESPONSE_BYTES of hits; its
// "next" continues it until every hit came, once, in order.
func TestSearchAPIPagesByBytes(t *testing.T) {
	n := startNode(t, "--search-max-response-bytes", "4096")
	produceSearchable(t, n, "wide", 3, 20, 200)
	var all []hitPos
	after, pages := "", 0
	for {
		body := `{"topics":["wide"],"query":"","limit":60`
		if after != "" {
			body += fmt.Sprintf(`,"after":%q`, after)
		}
		code, _, out := postSearch(t, n, body+"}")
		if code != 200 {
			t.Fatalf("page %d: %d %v", pages, code, out)
		}
		hits := hitsOf(t, out)
		b, _ := json.Marshal(out["hits"])
		if len(b) > 4096+512 { // the bound is on an estimate of each hit's size
			t.Errorf("page %d holds %d bytes of hits", pages, len(b))
		}
		all = append(all, hits...)
		pages++
		next, _ := out["next"].(string)
		if next == "" {
			break
		}
		if out["truncated"] != "max_response_bytes" && len(hits) < 60 {
			t.Errorf("page %d of %d hits ended early, truncated %v", pages, len(hits), out["truncated"])
		}
		after = next
		if pages > 60 {
			t.Fatal("more pages than hits")
		}
	}
	if pages < 4 {
		t.Errorf("%d pages: the byte bound did not end any", pages)
	}
	checkAllOnce(t, all, 60)
}

// chronik search follows "next" itself: any --limit (0: every hit) and
// --offset give the hits one large page gives, across pages of the
// broker's size.
func TestSearchCLIPagesTransparently(t *testing.T) {
	n := startNode(t, "--search-max-hits", "7", "--search-max-response-bytes", "2048")
	produceSearchable(t, n, "paged", 3, 20, 100)
	search := func(args ...string) []hitPos {
		t.Helper()
		r := mustChronik(t, "", append([]string{"search", "--server", "http://" + n.http, "--topic", "paged", "-o", "json"}, append(args, "")...)...)
		var out map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, r.stdout)
		}
		return hitsOf(t, out)
	}
	all := search("--limit", "0")
	checkAllOnce(t, all, 60)
	for _, c := range []struct {
		limit, offset int
	}{{100, 0}, {25, 0}, {25, 10}, {5, 20}, {3, 58}, {10, 60}} {
		got := search("--limit", fmt.Sprint(c.limit), "--offset", fmt.Sprint(c.offset))
		want := all[min(c.offset, 60):min(c.offset+c.limit, 60)]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("--limit %d --offset %d:\n got %v\nwant %v", c.limit, c.offset, got, want)
		}
	}
	// jsonl prints each page as it comes: the same hits.
	r := mustChronik(t, "", "search", "--server", "http://"+n.http, "--topic", "paged", "-o", "jsonl", "--limit", "0", "")
	if lines := strings.Count(r.stdout, "\n"); lines != 60 {
		t.Errorf("jsonl: %d lines, want 60", lines)
	}
}

// A search past CHRONIK_SEARCH_TIMEOUT_MS that read no hit yet is a 503
// naming the bound.
func TestSearchAPITimeout(t *testing.T) {
	n := startNode(t, "--search-timeout", "20")
	// Not archived: the tail is indexed in memory at each search, which
	// takes seconds for these records (tens of seconds on a busy machine).
	produceSearchable2(t, n, "slow", 10000)
	start := time.Now()
	code, _, out := postSearch(t, n, `{"topics":["slow"],"query":"w"}`)
	took := time.Since(start)
	msg, _ := out["error"].(string)
	if code != 503 || out["timeout_ms"] != 20.0 || !strings.Contains(msg, "CHRONIK_SEARCH_TIMEOUT_MS") {
		t.Errorf("%d %v", code, out)
	}
	// The search stops within a batch of documents of its timeout (a
	// second or so on a busy machine), not at the end of the build.
	if took > 10*time.Second {
		t.Errorf("the 503 came after %v", took)
	}
	t.Logf("503 after %v", took)
}

// produceSearchable2 produces count small records to one partition
// without waiting for a search to see them (which would cost as much as
// the search under test).
func produceSearchable2(t *testing.T, n *node, topic string, count int) {
	t.Helper()
	mustChronik(t, "", "topic", "create", topic, "--brokers", n.kafka, "--partitions", "1")
	var lines strings.Builder
	for i := range count {
		fmt.Fprintf(&lines, `{"n":%d,"word":"w %d","k":"v%d"}`+"\n", i, i, i)
	}
	mustChronik(t, lines.String(), "produce", "--brokers", n.kafka, "--topic", topic)
}

// Past CHRONIK_SEARCH_MAX_CONCURRENT (4 by default) searches at once, a
// search is answered 429 with Retry-After at once, not queued.
func TestSearchAPIRefusesPastMaxConcurrent(t *testing.T) {
	n := startNode(t)
	produceSearchable2(t, n, "busy", 1000)
	const searches = 10
	type answer struct {
		code  int
		retry string
		took  time.Duration
	}
	answers := make(chan answer, searches)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range searches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			resp, err := http.Post("http://"+n.http+"/api/v1/search", "application/json", strings.NewReader(`{"topics":["busy"],"query":"w"}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(t0)}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	var ok, busy int
	var slowest time.Duration
	for a := range answers {
		switch {
		case a.code == 200:
			ok++
			slowest = max(slowest, a.took)
		case a.code == 429 && a.retry == "1":
			busy++
			if a.took > slowest/2 && a.took > time.Second {
				t.Errorf("a 429 took %v: it waited", a.took)
			}
		default:
			t.Errorf("answer %d, Retry-After %q", a.code, a.retry)
		}
	}
	t.Logf("%d answered, %d refused, slowest answer %v", ok, busy, slowest)
	if busy == 0 || ok == 0 || ok > 4 {
		t.Errorf("%d searches answered, %d refused: want at most 4 run at once and the rest refused", ok, busy)
	}
}

// The CLI retries a 429 after its Retry-After, a few times, then says
// the broker is busy.
func TestSearchCLIRetriesBusyBroker(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if c < 3 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":"4 searches are running"}`)
			return
		}
		fmt.Fprint(w, `{"total":1,"total_exact":true,"hits":[{"topic":"t","partition":0,"offset":7,"timestamp":"2026-03-01T12:00:00Z","key":null,"headers":{},"value":{"n":7}}],"sort":"-time"}`)
	}))
	defer srv.Close()
	r := mustChronik(t, "", "search", "--server", srv.URL, "--topic", "t", "-o", "jsonl", "x")
	if !strings.Contains(r.stdout, `"offset":7`) || strings.Count(r.stderr, "retrying") != 2 {
		t.Errorf("after two 429s: stdout %q stderr %q", r.stdout, r.stderr)
	}
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":"4 searches are running"}`)
	}))
	defer busy.Close()
	r = chronik(t, "", "search", "--server", busy.URL, "--topic", "t", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "429") || !strings.Contains(r.stderr, "after 5 tries") {
		t.Errorf("always busy: exit %d, stderr %q", r.code, r.stderr)
	}
}

// chronik search --bucket pages in its own process with the search API's
// bounds: pages of at most MaxHits and MaxResponseBytes, continued, give
// the hits of one unbounded search; a larger page is refused.
func TestSearchBucketPagesInProcess(t *testing.T) {
	arch := t.TempDir()
	n := startNode(t, "--tier3-url", "file://"+arch)
	mustChronik(t, "", "topic", "create", "cold", "--brokers", n.kafka, "--partitions", "2", "--config", "segment.bytes=4096")
	for p := range 2 {
		var lines strings.Builder
		for i := range 60 {
			fmt.Fprintf(&lines, `{"n":%d,"pad":%q}`+"\n", p*1000+i, strings.Repeat("y", 100))
		}
		mustChronik(t, lines.String(), "produce", "--brokers", n.kafka, "--topic", "cold", "--partition", fmt.Sprint(p))
	}
	ctx := context.Background()
	eng, closeEng, err := bucketEngine(ctx, searchOpts{bucket: "file://" + arch, cacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEng()
	// Wait until the sealed segments are archived and no more come.
	last := uint64(0)
	checkFor(t, 30*time.Second, 500*time.Millisecond, func() error {
		r, err := eng.Search(ctx, indexer.Request{Topics: []string{"cold"}, Limit: 1, ExactTotal: true})
		if err != nil {
			return err
		}
		if r.Total < 40 || r.Total != last {
			last = r.Total
			return fmt.Errorf("%d archived hits", r.Total)
		}
		return nil
	})
	one, err := eng.Search(ctx, indexer.Request{Topics: []string{"cold"}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d archived hits", len(one.Hits))
	lim := indexer.Limits{MaxHits: 7, MaxResponseBytes: 2048}
	page := bucketPage(eng, lim, newSearchProgress(io.Discard))
	if _, err := page(ctx, indexer.APIRequest{Topics: []string{"cold"}, Limit: 8}); err == nil || !strings.Contains(err.Error(), "CHRONIK_SEARCH_MAX_HITS") {
		t.Errorf("a page of 8 of at most 7: %v", err)
	}
	paged, err := searchPages(ctx, indexer.APIRequest{Topics: []string{"cold"}}, 0, 0, page, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(one.Hits, paged.Hits); d != "" || len(one.Hits) != int(one.Total) {
		t.Errorf("pages of 7 differ from one search of %d hits (-one +pages):\n%s", one.Total, d)
	}
	r := mustChronik(t, "", "search", "--bucket", "file://"+arch, "--cache-dir", t.TempDir(), "--topic", "cold", "-o", "jsonl", "--limit", "0", "")
	if lines := strings.Count(r.stdout, "\n"); lines != len(one.Hits) {
		t.Errorf("chronik search --bucket --limit 0: %d hits, want %d", lines, len(one.Hits))
	}
}
