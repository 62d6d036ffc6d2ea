package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
	"github.com/chronik-go/chronik/tier3/tier3test"
)

// BenchmarkArchivedRead reads a partition whose every segment is only in
// MinIO, sequentially in 4 MiB reads as a catching-up consumer's fetches
// do (views of the archive's chunks, as Fetch takes them), with the
// broker's chunk cache cold for each pass: the archive read path without
// the network and encoding of Fetch. ratio is against MinIO's raw GET of
// the same objects by 4 streams, measured before each pass.
//
//	go test ./broker -run '^$' -bench ArchivedRead -benchtime 5x
func BenchmarkArchivedRead(b *testing.B) { benchArchivedRead(b, false) }

// BenchmarkArchivedFetch is BenchmarkArchivedRead through Fetch requests
// over loopback (a franz-go client sending them one after another, as a
// consumer does, records not decoded): the archive read path plus Fetch's
// encoding and vectored writes.
//
//	go test ./broker -run '^$' -bench ArchivedFetch -benchtime 5x
func BenchmarkArchivedFetch(b *testing.B) { benchArchivedRead(b, true) }

func benchArchivedRead(b *testing.B, overKafka bool) {
	srv := miniotest.Start(b)
	store := srv.Store(b, srv.NewBucket(b))
	dir := b.TempDir()
	mod := func(c *Config) {
		tier2Config(c)
		c.Tier3 = store
	}
	br := testBroker(b, dir, mod)
	p := testPartition(b, br, "bench", map[string]string{"segment.bytes": "16777216", "local.retention.bytes": "0", "retention.ms": "-1"})
	val := make([]byte, 100)
	recs := make([]testRecord, 1000)
	for i := range recs {
		recs[i] = testRecord{ts: time.Now().UnixMilli(), value: string(val)}
	}
	batch := makeRecordBatch(recs)
	for range 1000 { // 1M records, ~110 MB
		appendDurable(b, br, p, batch)
	}
	setTopicConfigTB(b, br, "bench", "segment.ms", "10")
	waitFor(b, time.Minute, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) > 0 || len(p.batches) > 0 {
			return errNotYet
		}
		return nil
	})
	p.mu.RLock()
	segs := p.archSegs
	_, hw := p.logStart, p.hw
	p.mu.RUnlock()
	var total int64
	for _, s := range segs {
		total += s.Size
	}
	// MinIO's raw GET of the same objects, whole, by as many streams as
	// read-ahead runs GETs (4), measured before each pass: the ratio's
	// baseline on a machine whose speed varies.
	keys := make([]string, len(segs))
	for i, s := range segs {
		keys[i] = tier3.PartitionPrefix(p.topic.id, 0) + s.Log
	}
	rawGet := func() time.Duration {
		d, err := tier3test.RawGet(context.Background(), store, keys, 4)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	var raw, read, wait time.Duration
	var rawCPU, readCPU cpuUse
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c0 := cpuNow()
		raw += rawGet()
		rawCPU = rawCPU.add(cpuNow().sub(c0))
		br.Close()
		br = testBroker(b, dir, mod) // a cold cache
		p = br.lookupTopic("bench").partitions[0]
		waitFor(b, 10*time.Second, func() error {
			p.mu.RLock()
			defer p.mu.RUnlock()
			if !p.archLoaded {
				return errNotYet
			}
			return nil
		})
		var cl *kgo.Client
		if overKafka {
			cl = testClient(b, br)
		}
		b.StartTimer()
		c0 = cpuNow()
		start := time.Now()
		views := make([][]byte, 0, 8)
		for next := int64(0); next < hw; {
			if overKafka {
				next = fetchNext(b, cl, p.topic.id, next)
				continue
			}
			var err error
			var hold tier3.Hold
			_, views, err = br.readPartitionVec(p, next, 4<<20, nil, views[:0], &hold)
			if err != nil {
				b.Fatal(err)
			}
			last, ok := lastViewOffset(views)
			hold.Release() // as Fetch does once the views are written
			if !ok {
				b.Fatalf("nothing read at %d", next)
			}
			next = last + 1
		}
		read += time.Since(start)
		readCPU = readCPU.add(cpuNow().sub(c0))
		wait += br.tier.arch.ReadStats().Wait
		if cl != nil {
			cl.Close()
		}
	}
	b.ReportMetric(float64(total)*float64(b.N)/raw.Seconds()/1e6, "rawGET4-MB/s")
	b.ReportMetric(raw.Seconds()/read.Seconds(), "ratio")
	// CPU seconds per pass: this process (broker and client) and MinIO.
	k := float64(b.N)
	b.ReportMetric(rawCPU.self/k, "rawGET-cpu-s")
	b.ReportMetric(rawCPU.minio/k, "rawGET-minio-cpu-s")
	b.ReportMetric(readCPU.self/k, "read-cpu-s")
	b.ReportMetric(readCPU.minio/k, "read-minio-cpu-s")
	// Time the reader waited for GETs per pass: the pipeline's stalls.
	b.ReportMetric(wait.Seconds()/k, "read-wait-s")
}

// cpuUse is CPU time used, in seconds, by this process and by its MinIO
// child (read from /proc; 0 where that is not available).
type cpuUse struct{ self, minio float64 }

func (c cpuUse) add(d cpuUse) cpuUse { return cpuUse{c.self + d.self, c.minio + d.minio} }
func (c cpuUse) sub(d cpuUse) cpuUse { return cpuUse{c.self - d.self, c.minio - d.minio} }

func cpuNow() cpuUse {
	var c cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	// Children are listed by the thread that started them.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	var kids []string
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		kids = append(kids, strings.Fields(string(b))...)
	}
	for _, pid := range kids {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || !bytes.Contains(stat, []byte("(minio)")) {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64) // utime, clock ticks (USER_HZ, 100 on Linux)
			s, _ := strconv.ParseFloat(f[12], 64)
			c.minio += (u + s) / 100
		}
	}
	return c
}

var errNotYet = errors.New("not yet")

// fetchNext fetches up to 4 MiB of partition 0 at offset and returns the
// offset after the last batch served.
func fetchNext(b *testing.B, cl *kgo.Client, id [16]byte, offset int64) int64 {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MaxBytes = 500, 16<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = offset, 4<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		b.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != 0 {
		b.Fatalf("fetch at %d: error %d", offset, sp.ErrorCode)
	}
	last, ok := lastBatchOffset(sp.RecordBatches)
	if !ok {
		b.Fatalf("nothing fetched at %d", offset)
	}
	return last + 1
}

// lastViewOffset returns the last offset of the last batch in views (a
// batch's header may be split between views).
func lastViewOffset(views [][]byte) (int64, bool) {
	// at copies the n bytes at pos of the views joined.
	at := func(pos, n int) []byte {
		out := make([]byte, 0, n)
		for _, v := range views {
			if pos >= len(v) {
				pos -= len(v)
				continue
			}
			take := min(n-len(out), len(v)-pos)
			out = append(out, v[pos:pos+take]...)
			pos = 0
			if len(out) == n {
				break
			}
		}
		return out
	}
	total := viewsLen(views)
	last, ok := int64(-1), false
	for pos := 0; pos+batchHeaderLen <= total; {
		h := at(pos, batchHeaderLen)
		n := int(int32(binary.BigEndian.Uint32(h[offBatchLength:]))) + 12
		if n < batchHeaderLen || pos+n > total {
			break
		}
		last, ok = batchBaseOffset(h)+int64(readBatchHeader(h).LastOffsetDelta), true
		pos += n
	}
	return last, ok
}

// lastBatchOffset returns the last offset of the last batch in buf.
func lastBatchOffset(buf []byte) (int64, bool) {
	last, ok := int64(-1), false
	for rest := buf; len(rest) >= batchHeaderLen; {
		n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
		if n > len(rest) {
			break
		}
		h := readBatchHeader(rest)
		last, ok = batchBaseOffset(rest)+int64(h.LastOffsetDelta), true
		rest = rest[n:]
	}
	return last, ok
}

func setTopicConfigTB(t testing.TB, b *Broker, topic, key, value string) {
	t.Helper()
	tp := b.lookupTopic(topic)
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	next := maps.Clone(b.topicConfigs(tp))
	next[key] = value
	if err := b.setTopicConfigsLocked(tp, next); err != nil {
		t.Fatal(err)
	}
}
