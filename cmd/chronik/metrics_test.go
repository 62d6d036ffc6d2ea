package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// node is a `chronik start` running in this process.
type node struct {
	kafka, http string // bound addresses
	logs        *syncBuffer
	stop        func() // cancels start and waits for it to exit 0
}

// startNode runs `chronik start` on loopback ports with extra args and
// waits for both listeners' ready lines.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	env := map[string]string{"CHRONIK_DATA_DIR": t.TempDir(), "CHRONIK_LOG_FORMAT": "json"}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{logs: &syncBuffer{}}
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, append([]string{"start", "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...),
			strings.NewReader(""), n.logs, n.logs, func(k string) string { return env[k] })
	}()
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("start exited with %d:\n%s", code, n.logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("start did not stop after its context ended:\n%s", n.logs.String())
		}
	}
	t.Cleanup(n.stop)
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		select {
		case code := <-exited:
			t.Fatalf("start exited with %d before it was ready:\n%s", code, n.logs.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(n.logs.String()))
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case "http listener ready":
				n.http, _ = rec["addr"].(string)
			case "kafka listener ready":
				n.kafka, _ = rec["addr"].(string)
			}
		}
		if n.http == "" || n.kafka == "" {
			return errors.New("no http and kafka listener ready lines yet")
		}
		return nil
	})
	if !strings.HasPrefix(n.http, "127.0.0.1:") || strings.HasSuffix(n.http, ":0") {
		t.Fatalf("http listener ready addr = %q; want the bound 127.0.0.1 port", n.http)
	}
	return n
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics into series text -> value, e.g.
// `chronik_requests_total{api="Produce"}` -> 12.
func scrape(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, "http://"+n.http+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", code, body)
	}
	out := make(map[string]float64)
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The key series move while a producer runs, as seen by scraping /metrics
// over HTTP during the load; fetch series move once the data is consumed.
func TestMetricsEndpointDuringProduceLoad(t *testing.T) {
	n := startNode(t)
	base := "http://" + n.http
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once the kafka listener is ready = %d %q", code, body)
	}
	if code, _ := httpGet(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof = %d; want 404", code)
	}

	before := scrape(t, n)
	for _, s := range []string{`chronik_requests_total{api="Produce"}`, "chronik_wal_queue_depth", "go_goroutines"} {
		if _, ok := before[s]; !ok {
			t.Errorf("/metrics lacks %s", s)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.kafka), kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("load"),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var produced atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() {
		value := []byte(strings.Repeat("v", 100))
		for loadCtx.Err() == nil {
			// Batches of 100 records, each awaited, keep the load steady
			// and bounded.
			rs := make([]*kgo.Record, 100)
			for i := range rs {
				rs[i] = &kgo.Record{Value: value}
			}
			if err := cl.ProduceSync(loadCtx, rs...).FirstErr(); err != nil {
				if loadCtx.Err() != nil {
					break
				}
				loadDone <- err
				return
			}
			produced.Add(int64(len(rs)))
		}
		loadDone <- nil
	}()

	// Scrape during the load until every key series has moved.
	moved := []string{
		`chronik_requests_total{api="Produce"}`,
		`chronik_request_duration_seconds_count{api="Produce"}`,
		"chronik_wal_group_batches_count",
		"chronik_wal_fsync_duration_seconds_count",
		"chronik_wal_group_bytes_sum",
		"chronik_wal_appends_total",
		"chronik_bytes_in_total",
		"chronik_bytes_out_total",
		"chronik_produce_records_total",
	}
	var during map[string]float64
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		during = scrape(t, n)
		for _, s := range moved {
			if during[s] <= before[s] {
				return fmt.Errorf("%s stayed at %v during the load", s, during[s])
			}
		}
		if produced.Load() == 0 {
			return errors.New("nothing acknowledged yet")
		}
		return nil
	})
	stopLoad()
	if err := <-loadDone; err != nil {
		t.Fatalf("produce load: %v", err)
	}
	after := scrape(t, n)
	if got, want := after["chronik_produce_records_total"], float64(produced.Load()); got < want {
		t.Errorf("chronik_produce_records_total = %v; the producer had %v records acknowledged", got, want)
	}
	if after["chronik_topics"] < 1 || after["chronik_partitions"] < 1 {
		t.Errorf("topics %v, partitions %v after producing to a new topic", after["chronik_topics"], after["chronik_partitions"])
	}

	// Consume everything: the fetch series move.
	cons, err := kgo.NewClient(kgo.SeedBrokers(n.kafka), kgo.ConsumeTopics("load"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for got := int64(0); got < produced.Load(); {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += int64(fs.NumRecords())
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		m := scrape(t, n)
		for _, s := range []string{`chronik_requests_total{api="Fetch"}`, `chronik_request_duration_seconds_count{api="Fetch"}`, "chronik_bytes_out_total"} {
			if m[s] <= after[s] {
				return fmt.Errorf("%s stayed at %v after consuming", s, m[s])
			}
		}
		return nil
	})

	n.stop()
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("/healthz still answers after start returned")
	}
}

func TestPprofFlag(t *testing.T) {
	n := startNode(t, "--pprof")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := httpGet(t, "http://"+n.http+path); code != http.StatusOK {
			t.Errorf("%s with --pprof = %d; want 200", path, code)
		}
	}
	if !strings.Contains(n.logs.String(), `"pprof":true`) {
		t.Errorf("the http listener ready line does not say pprof is on:\n%s", n.logs.String())
	}
}

// A taken HTTP port stops start with the setting named, before the broker
// opens (and recovers) its data directory.
func TestStartHTTPAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	dir := t.TempDir()
	r := chronik(t, "", "start", "--data-dir", dir, "--kafka-addr", "127.0.0.1:0", "--http-addr", addr)
	if want := fmt.Sprintf(`http listener on --http-addr=%q`, addr); r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("exit %d, stderr %q; want 1 and %s: ... address already in use", r.code, r.stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "wal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the broker was opened (a wal dir exists or cannot be checked: %v)", err)
	}
}
