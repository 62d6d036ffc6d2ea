// Package search_test checks `chronik search` end to end: a real broker
// process archiving to a real MinIO server, a corpus of JSON and text
// records with known contents produced by franz-go, and queries whose
// hits must equal a brute-force oracle evaluated over the corpus here —
// through the broker's HTTP API and the CLI, straight from the bucket
// with the broker stopped, and with no uploaded index (the indexer's work
// undone: every segment indexed on the fly).
//
//	go test ./tests/search                                   # 1,000,000 records: about 10 min on 2 cores
//	CHRONIK_SEARCH_RECORDS=10000 go test ./tests/search      # a quick run (under a minute)
//
// The corpus is indexed three times (by the batch indexer, on the fly from
// the bucket without indexes, by a broker without indexer); each phase's
// time is logged (-v).
package search_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/indexer"
	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const (
	topic      = "corpus"
	partitions = 3
	prefix     = "chronik"
)

var (
	cities   = []string{"paris", "berlin", "lisbon", "rome", "madrid", "oslo", "vienna"}
	statuses = []string{"ok", "failed", "pending", "retry", "refunded"}
	levels   = []string{"info", "warn", "error"}
	sources  = []string{"web", "mobile", "batch", "partner"}
	base     = time.Now().Add(-time.Hour).Truncate(time.Second) // recent: retention must not delete the corpus
)

func records() int {
	if v := os.Getenv("CHRONIK_SEARCH_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil && n > 0 {
			return n
		}
	}
	return 1_000_000
}

// Record i: partition i%3, timestamp base+i ms, key k-<i>, header src,
// value JSON for even i and text for odd i.
func value(i int) []byte {
	if i%2 == 0 {
		return fmt.Appendf(nil, `{"n":%d,"city":"%s","status":"%s","amount":%d,"paid":%t,"order":{"total":%d}}`,
			i, cities[i%7], statuses[i%5], i%1000, i%3 == 0, i%500)
	}
	return fmt.Appendf(nil, "event %d from %s level %s", i, cities[i%7], levels[i%3])
}

func ts(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }

// query is a search and its oracle.
type query struct {
	q        string
	from, to int // record index bounds (inclusive) for --from/--to; -1 none
	match    func(i int) bool
}

func queries() []query {
	json := func(i int) bool { return i%2 == 0 }
	return []query{
		{"lisbon", -1, -1, func(i int) bool { return cities[i%7] == "lisbon" }},                     // word, JSON and text
		{`"level warn"`, -1, -1, func(i int) bool { return !json(i) && levels[i%3] == "warn" }},     // phrase
		{"status:failed", -1, -1, func(i int) bool { return json(i) && statuses[i%5] == "failed" }}, // JSON string field
		{"amount:>=990", -1, -1, func(i int) bool { return json(i) && i%1000 >= 990 }},              // numeric range
		{"order.total:<3", -1, -1, func(i int) bool { return json(i) && i%500 < 3 }},                // nested numeric
		{"+headers.src:batch +city:oslo", -1, -1, func(i int) bool { return json(i) && sources[i%4] == "batch" && cities[i%7] == "oslo" }},
		{"headers.src:partner", 500, 2000, func(i int) bool { return sources[i%4] == "partner" }}, // header, time range
		{"+status:retry -paid:true", -1, -1, func(i int) bool { return json(i) && statuses[i%5] == "retry" && i%3 != 0 }},
		{"status:refunded", 1000, 9999, func(i int) bool { return json(i) && statuses[i%5] == "refunded" }}, // time range
	}
}

type env struct {
	t      *testing.T
	srv    *miniotest.Server
	bucket string
	store  tier3.Store
	n      int
}

func (e *env) url() string { return e.srv.URL(e.bucket, prefix) }

func TestSearchMatchesOracle(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("search needs the chronik binary")
	}
	srv := miniotest.Start(t)
	e := &env{t: t, srv: srv, bucket: srv.NewBucket(t), n: records()}
	var err error
	e.store, err = tier3.NewMinIOStore(tier3.MinIOOptions{Endpoint: srv.Endpoint(), Bucket: e.bucket, Prefix: prefix,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	// No time bound on a search (CHRONIK_SEARCH_TIMEOUT_MS): searches here
	// build indexes of up to a million records on the fly, which takes
	// minutes on a small machine; this test is about their hits.
	b := testharness.Start(t, testharness.Options{Env: append(srv.Env(), "CHRONIK_TIER3_URL="+e.url(), "CHRONIK_INDEX_WORKERS=2",
		"CHRONIK_SEARCH_TIMEOUT_MS=0")})
	start := time.Now()
	phase := func(what string) { t.Logf("%s done at %s", what, time.Since(start).Round(time.Millisecond)) }
	id := e.produce(b.Addr())
	phase(fmt.Sprintf("produce of %d records", e.n))
	bin := testharness.Binary(t)

	// Through the broker: archived segments (indexed by the indexer) and
	// the local tail alike.
	e.waitIndexed(id)
	phase("indexing by the batch indexer")
	for _, q := range queries() {
		got := e.searchHTTP(b.HTTPAddr(), q)
		e.compare("http "+q.q, q, got, e.n)
	}
	q := queries()[2]
	e.compare("cli --server "+q.q, q, e.searchCLI(bin, []string{"--server", "http://" + b.HTTPAddr()}, q, ""), e.n)

	phase("searches through the broker")
	// From the bucket, the broker stopped: what is archived.
	archived := e.archivedRecords(id)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	for _, q := range queries() {
		e.compare("bucket "+q.q, q, e.searchCLI(bin, []string{"--bucket", e.url(), "--cache-dir", cacheDir}, q, ""), archived)
	}

	phase("searches of the bucket")
	// No uploaded index at all (the indexer never ran): the same hits.
	objs, err := e.store.List(context.Background(), "topics/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".bleve") || strings.HasSuffix(o.Key, "/search.json") {
			if err := e.store.Delete(context.Background(), o.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	fresh := t.TempDir()
	for _, q := range queries() {
		e.compare("unindexed bucket "+q.q, q, e.searchCLI(bin, []string{"--bucket", e.url(), "--cache-dir", fresh}, q, ""), archived)
	}
	phase("searches of the bucket without indexes")
	// And through a broker whose indexer is off, its index cache emptied.
	if err := os.RemoveAll(filepath.Join(b.DataDir(), "search-cache")); err != nil {
		t.Fatal(err)
	}
	b2 := testharness.Start(t, testharness.Options{DataDir: b.DataDir(), Env: append(srv.Env(), "CHRONIK_TIER3_URL="+e.url(), "CHRONIK_INDEX_WORKERS=0",
		"CHRONIK_SEARCH_TIMEOUT_MS=0")})
	for _, q := range queries() {
		e.compare("indexer off, http "+q.q, q, e.searchHTTP(b2.HTTPAddr(), q), e.n)
	}
	phase("searches through a broker without indexer")
	// A bad query names its bad part.
	cmd := exec.Command(bin, "search", "--server", "http://"+b2.HTTPAddr(), "--topic", topic, `status:failed amount:>>5`)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "amount:>>5") {
		t.Errorf("bad query: err %v, output %s", err, out)
	}
}

func (e *env) produce(addr string) [16]byte {
	t := e.t
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(100_000),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(64<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // sizes as computed below
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	segBytes := strconv.Itoa(max(16<<10, e.n*140/partitions/8)) // about 8 archived segments per partition
	resp, err := adm.CreateTopic(context.Background(), partitions, 1, map[string]*string{"segment.bytes": &segBytes, "retention.ms": kadm.StringPtr("-1")}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	var failed atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < e.n; i++ {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Partition: int32(i % partitions), Key: []byte("k-" + strconv.Itoa(i)), Value: value(i),
			Timestamp: ts(i), Headers: []kgo.RecordHeader{{Key: "src", Value: []byte(sources[i%4])}}}
		cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				failed.Store(err)
			} else if r.Offset != int64(i/partitions) {
				failed.Store(fmt.Errorf("record %d got offset %d", i, r.Offset))
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("produce: %v", err)
	}
	return resp.ID
}

// waitIndexed waits until every partition has archived segments and an
// index of each.
func (e *env) waitIndexed(id [16]byte) {
	// One worker indexes a few thousand records a second on a busy core.
	testharness.CheckFor(e.t, 10*time.Minute+time.Duration(e.n)*time.Millisecond, 500*time.Millisecond, func() error {
		for p := int32(0); p < partitions; p++ {
			m, err := tier3.LoadManifest(context.Background(), e.store, id, p)
			if err != nil {
				return err
			}
			im, err := indexer.LoadIndexManifest(context.Background(), e.store, id, p)
			if err != nil {
				return err
			}
			if len(m.Segments) < 2 || len(im.Indexes) != len(m.Segments) {
				return fmt.Errorf("partition %d: %d segments archived, %d indexed", p, len(m.Segments), len(im.Indexes))
			}
		}
		return nil
	})
}

// archivedRecords returns how many corpus records (by index) are
// archived: record i is offset i/3 of partition i%3.
func (e *env) archivedRecords(id [16]byte) func(i int) bool {
	ends := make([]int64, partitions)
	for p := int32(0); p < partitions; p++ {
		m, err := tier3.LoadManifest(context.Background(), e.store, id, p)
		if err != nil {
			e.t.Fatal(err)
		}
		ends[p] = m.End()
	}
	return func(i int) bool { return int64(i/partitions) < ends[i%partitions] }
}

func (e *env) request(q query) indexer.APIRequest {
	r := indexer.APIRequest{Topics: []string{topic}, Query: q.q, Limit: e.n}
	if q.from >= 0 {
		r.From, r.To = ts(q.from).Format(time.RFC3339Nano), ts(q.to).Format(time.RFC3339Nano)
	}
	return r
}

// searchHTTP gets every hit of q through the search API, a page of the
// largest size (CHRONIK_SEARCH_MAX_HITS' default) at a time, each page
// continuing the last with its next; then checks one exact total.
func (e *env) searchHTTP(addr string, q query) []indexer.Hit {
	post := func(r indexer.APIRequest) indexer.Result {
		body, _ := json.Marshal(r)
		resp, err := http.Post("http://"+addr+"/api/v1/search", "application/json", bytes.NewReader(body))
		if err != nil {
			e.t.Fatal(err)
		}
		defer resp.Body.Close()
		var res indexer.Result
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&res) != nil {
			e.t.Fatalf("%s: status %s", q.q, resp.Status)
		}
		return res
	}
	r := e.request(q)
	r.Limit = min(r.Limit, indexer.DefaultLimits().MaxHits)
	var hits []indexer.Hit
	for {
		res := post(r)
		hits = append(hits, res.Hits...)
		if res.Next == "" {
			break
		}
		r.After = res.Next
	}
	r.After, r.Limit, r.ExactTotal = "", 1, true
	if res := post(r); int(res.Total) != len(hits) || !res.TotalExact {
		e.t.Errorf("%s: total %d (exact %t) but %d hits", q.q, res.Total, res.TotalExact, len(hits))
	}
	return hits
}

func (e *env) searchCLI(bin string, where []string, q query, _ string) []indexer.Hit {
	r := e.request(q)
	args := append([]string{"search"}, where...)
	args = append(args, "--topic", topic, "--limit", strconv.Itoa(e.n), "--output", "jsonl")
	if r.From != "" {
		args = append(args, "--from", r.From, "--to", r.To)
	}
	cmd := exec.Command(bin, append(args, q.q)...)
	cmd.Env = append(os.Environ(), e.srv.Env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("chronik %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var hits []indexer.Hit
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var h indexer.Hit
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			e.t.Fatalf("jsonl line %q: %v", sc.Text(), err)
		}
		hits = append(hits, h)
	}
	return hits
}

// compare checks hits against the oracle over the records in scope, and
// each hit's content and the newest-first order.
func (e *env) compare(what string, q query, hits []indexer.Hit, scope any) {
	t := e.t
	in := func(i int) bool { return true }
	if f, ok := scope.(func(int) bool); ok {
		in = f
	}
	var want, got []int
	for i := 0; i < e.n; i++ {
		if in(i) && q.match(i) && (q.from < 0 || i >= q.from && i <= q.to) {
			want = append(want, i)
		}
	}
	for k, h := range hits {
		i := int(h.Offset)*partitions + int(h.Partition)
		got = append(got, i)
		if h.Topic != topic || !h.Timestamp.Equal(ts(i)) || h.Key == nil || *h.Key != "k-"+strconv.Itoa(i) || h.Headers["src"] != sources[i%4] {
			t.Errorf("%s: hit %+v is not record %d", what, h, i)
			return
		}
		if v := value(i); i%2 == 0 && string(h.Value) != string(v) || i%2 == 1 && string(h.Value) != strconv.Quote(string(v)) {
			t.Errorf("%s: hit %d value %s, want %s", what, i, h.Value, v)
			return
		}
		if k > 0 && hits[k-1].Timestamp.Before(h.Timestamp) {
			t.Errorf("%s: hits not newest first at %d", what, k)
			return
		}
	}
	slices.Sort(got)
	if len(want) == 0 {
		t.Errorf("%s: the oracle matches nothing; the query tests nothing", what)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s: %d hits, oracle %d (-oracle +got):\n%.2000s", what, len(got), len(want), d)
	}
}
