package broker

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// gathered reads one series from reg: a counter's or gauge's value, or a
// histogram's sample count. labels are name=value pairs the series must
// have. ok is false when no such series exists.
func gathered(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for _, l := range labels {
				k, want, _ := strings.Cut(l, "=")
				if have[k] != want {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func mustGather(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, ok := gathered(t, reg, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// The key series move under a produce load and a consume, and the
// registered families are exactly the documented ones.
func TestMetricsMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := testBroker(t, t.TempDir(), func(c *Config) { c.Metrics = reg })
	ctx := testCtx(t)

	if v := mustGather(t, reg, "chronik_requests_total", "api=Produce"); v != 0 {
		t.Fatalf("Produce requests before any produce = %v", v)
	}
	topics0, parts0 := mustGather(t, reg, "chronik_topics"), mustGather(t, reg, "chronik_partitions")
	const n = 200
	cl := testClient(t, b, kgo.DefaultProduceTopic("m"), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := range n {
		r := &kgo.Record{Value: []byte(strings.Repeat("x", 100))}
		if i%50 == 49 {
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	produces := mustGather(t, reg, "chronik_requests_total", "api=Produce")
	if produces < 1 {
		t.Errorf("Produce requests = %v", produces)
	}
	// The duration is observed once the response is written, which may be
	// just after the client has read it.
	waitFor(t, 5*time.Second, func() error {
		if v := mustGather(t, reg, "chronik_request_duration_seconds", "api=Produce"); v != produces {
			return fmt.Errorf("Produce duration samples = %v; want one per request (%v)", v, produces)
		}
		return nil
	})
	if v := mustGather(t, reg, "chronik_produce_records_total"); v != n {
		t.Errorf("produced records = %v; want %d", v, n)
	}
	groups := mustGather(t, reg, "chronik_wal_group_batches")
	if groups < 1 || mustGather(t, reg, "chronik_wal_fsync_duration_seconds") != groups || mustGather(t, reg, "chronik_wal_group_bytes") != groups {
		t.Errorf("wal group histograms disagree or are empty: %v groups", groups)
	}
	if v := mustGather(t, reg, "chronik_wal_appends_total"); v < 1 || v > produces {
		t.Errorf("wal appends = %v with %v produce requests of one batch", v, produces)
	}
	// Records carry 100 value bytes each, so the request frames and the
	// WAL hold more than n*100 bytes.
	for _, name := range []string{"chronik_bytes_in_total", "chronik_wal_written_bytes_total"} {
		if v := mustGather(t, reg, name); v < n*100 {
			t.Errorf("%s = %v; want at least %d", name, v, n*100)
		}
	}
	if v := mustGather(t, reg, "chronik_bytes_out_total"); v <= 0 {
		t.Errorf("chronik_bytes_out_total = %v", v)
	}
	if v := mustGather(t, reg, "chronik_topics"); v != topics0+1 {
		t.Errorf("topics = %v; want %v", v, topics0+1)
	}
	if v := mustGather(t, reg, "chronik_partitions"); v != parts0+1 {
		t.Errorf("partitions = %v; want %v", v, parts0+1)
	}
	if v := mustGather(t, reg, "chronik_connections"); v < 1 {
		t.Errorf("connections = %v with a client connected", v)
	}

	// Consuming moves the fetch series.
	cons := testClient(t, b, kgo.ConsumeTopics("m"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	if v := mustGather(t, reg, "chronik_requests_total", "api=Fetch"); v < 1 {
		t.Errorf("Fetch requests = %v after consuming", v)
	}
	waitFor(t, 5*time.Second, func() error {
		if v := mustGather(t, reg, "chronik_request_duration_seconds", "api=Fetch"); v < 1 {
			return fmt.Errorf("Fetch duration samples = %v after consuming", v)
		}
		return nil
	})

	// Per-partition error codes are counted by name.
	raw := dialRaw(t, b)
	raw.send(produceReq("m", 7, makeBatch(1, -1, -1, -1, time.Now().UnixMilli()), 1))
	var resp kmsg.ProduceResponse
	resp.Version = 9
	if err := raw.recv(&resp); err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to partition 7 got code %d", code)
	}
	waitFor(t, 5*time.Second, func() error {
		if v, _ := gathered(t, reg, "chronik_request_errors_total", "api=Produce", "code=UNKNOWN_TOPIC_OR_PARTITION"); v != 1 {
			return fmt.Errorf("Produce UNKNOWN_TOPIC_OR_PARTITION errors = %v; want 1", v)
		}
		return nil
	})

	// What is registered is what is documented.
	docs := map[string]MetricDoc{}
	for _, d := range MetricDocs() {
		docs[d.Name] = d
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		d, ok := docs[mf.GetName()]
		if !ok {
			t.Errorf("%s is registered but not in MetricDocs", mf.GetName())
			continue
		}
		delete(docs, mf.GetName())
		if typ := strings.ToLower(mf.GetType().String()); typ != d.Type || mf.GetHelp() != d.Help {
			t.Errorf("%s: registered as %s %q, documented as %s %q", mf.GetName(), typ, mf.GetHelp(), d.Type, d.Help)
		}
	}
	for name := range docs {
		t.Errorf("%s is documented but has no series", name)
	}

	// Close unregisters, so a restarted broker can use the same registry.
	b.Close()
	if _, ok := gathered(t, reg, "chronik_requests_total"); ok {
		t.Errorf("series still registered after Close")
	}
	testBroker(t, b.cfg.DataDir, func(c *Config) { c.Metrics = reg })
	if _, ok := gathered(t, reg, "chronik_requests_total", "api=Produce"); !ok {
		t.Errorf("a reopened broker registered no series")
	}
}

func TestReady(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.KafkaAddr = "127.0.0.1:0"
	b := testBrokerUnstarted(t, cfg)
	if err := b.Ready(); err == nil {
		t.Errorf("Ready before Start = nil")
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready after Start = %v", err)
	}
	b.Close()
	if err := b.Ready(); err == nil {
		t.Errorf("Ready after Close = nil")
	}
}

func testBrokerUnstarted(t *testing.T, cfg Config) *Broker {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
