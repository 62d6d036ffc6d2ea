package tier3_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/tier3test"
)

// BenchmarkCatchUpRead compares, in one run against the same MinIO
// server on loopback, MinIO's raw GET throughput of the archived segment
// objects with a Kafka consumer catching up from offset 0 through a
// broker whose local copies are all deleted (every byte from MinIO, the
// broker's chunk caches cold: they are emptied at each broker start).
// DESIGN.md targets catch-up >= 0.6 x raw GET. Raw GET reads each object
// whole, with one stream and with as many streams as the broker's
// read-ahead runs GETs at once (4); ratios are against the faster.
// Catch-up is measured twice: a franz-go consumer (ratio; includes the
// client decoding every record) and plain Fetch requests in a loop
// (fetch-ratio; the broker's side). The -cached measures repeat both with
// every chunk already in the broker's memory (it keeps 128 MiB): the
// Fetch path's and the consumer's own ceilings, which bound the archived
// ones. CPU seconds per pass are reported for the 4-stream raw GET and the
// cold Fetch pass (MinIO, broker, client), with the broker's minor page
// faults. The topic is not searchable (search.enabled=false): the batch
// indexer would compete with the passes for the cores.
//
//	go test ./tests/tier3 -run '^$' -bench CatchUp -benchtime 3x
//	CHRONIK_TIER3_RECORDS=2000000 go test ./tests/tier3 -run '^$' -bench CatchUp -benchtime 3x
func BenchmarkCatchUpRead(b *testing.B) {
	n := records()
	e := newEnv(b)
	dataDir := b.TempDir()
	br := testharness.Start(b, testharness.Options{DataDir: dataDir, Env: e.brokerEnv()})
	id := createTopic(b, br.Addr(), "bench", map[string]string{
		"segment.bytes": "16777216", "local.retention.bytes": "0", "retention.ms": "-1", "segment.ms": "1000",
		"search.enabled": "false", // no batch indexing competing for the 2 cores
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(200_000), kgo.ProducerLinger(2*time.Millisecond), kgo.ProducerBatchMaxBytes(256<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: "bench", Value: value(i), Timestamp: tsOf(base, i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	cl.Close()
	var m *tier3.Manifest
	if err := testharness.Poll(3*time.Minute, 200*time.Millisecond, func() error {
		m, err = tier3.LoadManifest(context.Background(), e.store, id, 0)
		if err != nil {
			return err
		}
		if m.End() != int64(n) {
			return fmt.Errorf("manifest ends at %d of %d", m.End(), n)
		}
		if bases, _ := localLogs(b, partDir(dataDir, id)); len(bases) > 0 {
			return fmt.Errorf("%d local segments left", len(bases))
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, s := range m.Segments {
		total += s.Size
	}
	pp := tier3.PartitionPrefix(id, 0)

	keys := make([]string, len(m.Segments))
	for i, s := range m.Segments {
		keys[i] = pp + s.Log
	}
	rawGet := func(streams int) float64 {
		d, err := tier3test.RawGet(context.Background(), e.store, keys, streams)
		if err != nil {
			b.Fatal(err)
		}
		return float64(total) / d.Seconds() / 1e6
	}
	catchUp := func(cold bool) float64 {
		if cold {
			br.Restart() // cold chunk caches
		}
		c, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.ConsumeTopics("bench"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(4<<20), kgo.FetchMaxBytes(16<<20))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		got := 0
		for got < n {
			fs := c.PollFetches(ctx)
			if ctx.Err() != nil {
				b.Fatalf("consumed %d of %d", got, n)
			}
			got += fs.NumRecords()
		}
		return float64(total) / time.Since(start).Seconds() / 1e6
	}

	// rawFetch reads the log with Fetch requests, one after another as a
	// consumer does, without decoding records: the broker's side of a
	// catch-up, the client's decoding cost aside.
	rawFetch := func(cold bool) float64 {
		if cold {
			br.Restart()
		}
		c, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		var bytes int64
		for next := int64(0); next < int64(n); {
			req := kmsg.NewPtrFetchRequest()
			req.MaxWaitMillis, req.MaxBytes = 500, 16<<20
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic, rt.TopicID = "bench", id
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.FetchOffset, rp.PartitionMaxBytes = next, 4<<20
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 {
				b.Fatalf("fetch at %d: %v", next, kerr.ErrorForCode(p.ErrorCode))
			}
			bytes += int64(len(p.RecordBatches))
			for rest := p.RecordBatches; len(rest) >= 61; {
				l := int(binary.BigEndian.Uint32(rest[8:])) + 12
				next = int64(binary.BigEndian.Uint64(rest)) + int64(binary.BigEndian.Uint32(rest[23:])) + 1
				rest = rest[min(l, len(rest)):]
			}
		}
		return float64(bytes) / time.Since(start).Seconds() / 1e6
	}

	var raw1, raw4, cu, cuWarm, rf, warm float64
	var rawCPU, fetchCPU cpuUse
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		raw1 += rawGet(1)
		c0 := cpuNow()
		raw4 += rawGet(4)
		rawCPU = rawCPU.add(cpuNow().sub(c0))
		br.Restart()
		c0 = cpuNow()
		rf += rawFetch(false) // cold: just restarted
		fetchCPU = fetchCPU.add(cpuNow().sub(c0))
		warm += rawFetch(false) // every chunk now in the broker's memory
		b.StartTimer()
		cu += catchUp(true)
		b.StopTimer()
		cuWarm += catchUp(false)
		b.StartTimer()
	}
	k := float64(b.N)
	raw1, raw4, cu, cuWarm, rf, warm = raw1/k, raw4/k, cu/k, cuWarm/k, rf/k, warm/k
	b.ReportMetric(raw1, "rawGET1-MB/s")
	b.ReportMetric(raw4, "rawGET4-MB/s")
	b.ReportMetric(cu, "catchup-MB/s")
	b.ReportMetric(cuWarm, "catchup-cached-MB/s")
	b.ReportMetric(rf, "fetch-MB/s")
	b.ReportMetric(warm, "fetch-cached-MB/s")
	b.ReportMetric(cu/max(raw1, raw4), "ratio")
	b.ReportMetric(rf/max(raw1, raw4), "fetch-ratio")
	// CPU seconds per pass: raw GET by 4 streams (MinIO, the GET client)
	// and the cold Fetch pass (MinIO, broker, Fetch client).
	b.ReportMetric(rawCPU.minio/k, "rawGET4-minio-cpu-s")
	b.ReportMetric(rawCPU.self/k, "rawGET4-client-cpu-s")
	b.ReportMetric(fetchCPU.minio/k, "fetch-minio-cpu-s")
	b.ReportMetric(fetchCPU.broker/k, "fetch-broker-cpu-s")
	b.ReportMetric(fetchCPU.self/k, "fetch-client-cpu-s")
	b.ReportMetric(fetchCPU.brokerFaults/k, "fetch-broker-minflt")
	b.Logf("%d records, %d archived segments, %.1f MB: raw GET %.0f MB/s (1 stream) %.0f MB/s (4 streams); "+
		"catch-up: franz-go consumer %.0f MB/s (ratio %.2f), raw Fetch %.0f MB/s (ratio %.2f); "+
		"every chunk in memory: consumer %.0f MB/s, raw Fetch %.0f MB/s",
		n, len(m.Segments), float64(total)/1e6, raw1, raw4, cu, cu/max(raw1, raw4), rf, rf/max(raw1, raw4), cuWarm, warm)
}

// cpuUse is CPU time used, in seconds, by this process (the clients) and
// by its MinIO and broker children, read from /proc (0 where that is not
// available). A broker restarted between two readings is not counted
// right: read both within one run of it.
// brokerFaults counts the broker's minor page faults (memory it touches
// for the first time).
type cpuUse struct{ self, minio, broker, brokerFaults float64 }

func (c cpuUse) add(d cpuUse) cpuUse {
	return cpuUse{c.self + d.self, c.minio + d.minio, c.broker + d.broker, c.brokerFaults + d.brokerFaults}
}

func (c cpuUse) sub(d cpuUse) cpuUse {
	return cpuUse{c.self - d.self, c.minio - d.minio, c.broker - d.broker, c.brokerFaults - d.brokerFaults}
}

func cpuNow() cpuUse {
	var c cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	// Children are listed by the thread that started them.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, pid := range strings.Fields(string(b)) {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if len(f) <= 12 {
				continue
			}
			u, _ := strconv.ParseFloat(f[11], 64) // utime, clock ticks (USER_HZ, 100 on Linux)
			s, _ := strconv.ParseFloat(f[12], 64)
			switch {
			case bytes.Contains(stat, []byte("(minio)")):
				c.minio += (u + s) / 100
			case bytes.Contains(stat, []byte("(chronik)")):
				c.broker += (u + s) / 100
				minflt, _ := strconv.ParseFloat(f[7], 64)
				c.brokerFaults += minflt
			}
		}
	}
	return c
}
