package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/tier3/miniotest"
)

// The Tier 3 series move under load against a real MinIO: uploads (and
// the lag before them), failed uploads and their retries while the store
// is down, GETs and bytes of archived reads by a Kafka consumer, and the
// memory and disk caches' hits and misses as the log is read again.
func TestTier3MetricsMove(t *testing.T) {
	srv := miniotest.Start(t)
	store := &flakyStore{Store: srv.Store(t, srv.NewBucket(t))}
	reg := prometheus.NewRegistry()
	b := testBroker(t, t.TempDir(), func(c *Config) {
		tier3Config(store)(c)
		c.Metrics = reg
	})
	val := func(name string, labels ...string) float64 { return mustGather(t, reg, name, labels...) }
	for _, name := range []string{"chronik_tier3_uploaded_segments_total", "chronik_tier3_read_gets_total", "chronik_tier3_upload_lag_segments"} {
		if v := val(name); v != 0 {
			t.Fatalf("%s = %v before any load", name, v)
		}
	}

	p := testPartition(t, b, "m3", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	n := fillTiered(t, b, p, 600, 1)
	segs := val("chronik_tier3_uploaded_segments_total")
	if segs < 2 || val("chronik_tier3_uploaded_objects_total") != 3*segs {
		t.Fatalf("uploaded %v segments, %v objects", segs, val("chronik_tier3_uploaded_objects_total"))
	}
	if v := val("chronik_tier3_uploaded_bytes_total"); v < float64(n)*3 {
		t.Fatalf("uploaded %v bytes for %d records", v, n)
	}

	// Store down: uploads fail and retry, the lag grows; back up: it drains.
	store.down.Store(true)
	for i := 0; i < 60; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, int64(n+1))))
		n += 3
	}
	waitFor(t, 10*time.Second, func() error {
		if val("chronik_tier3_upload_errors_total") < 2 || val("chronik_tier3_upload_retries_total") < 1 {
			return fmt.Errorf("upload errors %v, retries %v", val("chronik_tier3_upload_errors_total"), val("chronik_tier3_upload_retries_total"))
		}
		if val("chronik_tier3_upload_lag_segments") < 1 || val("chronik_tier3_upload_lag_bytes") < 1000 {
			return fmt.Errorf("upload lag %v segments, %v bytes", val("chronik_tier3_upload_lag_segments"), val("chronik_tier3_upload_lag_bytes"))
		}
		return nil
	})
	store.down.Store(false)
	waitFor(t, 10*time.Second, func() error {
		if v := val("chronik_tier3_upload_lag_segments"); v != 0 || val("chronik_tier3_upload_lag_bytes") != 0 {
			return fmt.Errorf("upload lag %v segments after the store came back", v)
		}
		return nil
	})
	if v := val("chronik_tier3_uploaded_segments_total"); v <= segs {
		t.Fatalf("uploaded segments %v, was %v before the store went down", v, segs)
	}
	b.clean(time.Now())

	// A consumer reads everything: archived chunks come from GETs.
	cons := testClient(t, b, kgo.ConsumeTopics("m3"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx := testCtx(t)
	for got := 0; got < n; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	gets, bytes := val("chronik_tier3_read_gets_total"), val("chronik_tier3_read_bytes_total")
	if gets < 1 || bytes < 1000 {
		t.Fatalf("archived reads: %v GETs, %v bytes", gets, bytes)
	}
	if val("chronik_tier3_cache_misses_total", "cache=memory") < 1 || val("chronik_tier3_cache_misses_total", "cache=disk") < 1 {
		t.Fatal("a cold read counted no cache misses")
	}

	// Read again in small steps: each read starts in the chunk the last
	// one used (a memory hit); chunks that left memory (it holds 32 KiB
	// here) come back by GET, which admits them to the disk cache; the
	// read after that finds them on disk.
	checkRecords(t, readAllTiered(t, b, p, 100), n)
	if val("chronik_tier3_cache_hits_total", "cache=memory") < 1 {
		t.Fatal("small sequential reads counted no memory hits")
	}
	if v := val("chronik_tier3_read_gets_total"); v <= gets {
		t.Fatalf("second read: %v GETs, %v before", v, gets)
	}
	waitFor(t, 10*time.Second, func() error {
		if v := val("chronik_tier3_cache_writes_total"); v < 1 {
			return fmt.Errorf("cache writes %v after reading the log twice", v)
		}
		return nil
	})
	checkRecords(t, readAllTiered(t, b, p, 1000), n)
	if v := val("chronik_tier3_cache_hits_total", "cache=disk"); v < 1 {
		t.Fatalf("third read: %v disk cache hits", v)
	}
}
