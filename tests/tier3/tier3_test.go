// Package tier3_test runs a real Chronik broker against a real MinIO
// server (both separate processes on 127.0.0.1) and checks Tier 3 end to
// end: archiving under tiny local retention, consumption from offset 0
// across the archive / local boundary, ListOffsets by timestamp in both
// tiers, restore onto an empty data directory, MinIO going down during
// production, a broker killed mid-upload, and a damaged object.
//
//	go test ./tests/tier3                           # 1,000,000 records
//	CHRONIK_TIER3_RECORDS=200000 go test ./tests/tier3
//
// MinIO comes from tools/minio (make tools/minio) or CHRONIK_MINIO_BIN;
// without it the tests skip, except under CI=true.
package tier3_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const prefix = "chronik" // the URL's prefix inside the bucket

// env is one broker's world: MinIO, its bucket and the broker settings.
type env struct {
	t      testing.TB
	srv    *miniotest.Server
	bucket string
	store  tier3.Store // the bucket under prefix, for checks
}

func newEnv(t testing.TB) *env {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("Tier 3 needs the chronik binary")
	}
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	st, err := tier3.NewMinIOStore(tier3.MinIOOptions{Endpoint: srv.Endpoint(), Bucket: bucket, Prefix: prefix,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, bucket: bucket, store: st}
}

func (e *env) url() string { return e.srv.URL(e.bucket, prefix) }

func (e *env) brokerEnv() []string {
	return append(e.srv.Env(), "CHRONIK_TIER3_URL="+e.url())
}

func (e *env) startBroker(dataDir string) *testharness.Broker {
	return testharness.Start(e.t, testharness.Options{DataDir: dataDir, Env: e.brokerEnv()})
}

func client(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t testing.TB, addr, topic string, configs map[string]string) [16]byte {
	t.Helper()
	set := map[string]*string{}
	for k, v := range configs {
		set[k] = kadm.StringPtr(v)
	}
	adm := kadm.NewClient(client(t, addr))
	resp, err := adm.CreateTopic(context.Background(), 1, 1, set, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v %s", err, resp.Err, resp.ErrMessage)
	}
	return resp.ID
}

// value is record i's 100-byte value; ts its timestamp (100 per ms).
func value(i int) []byte {
	v := make([]byte, 100)
	copy(v, fmt.Sprintf("%010d|", i))
	for k := 11; k < 100; k++ {
		v[k] = byte('a' + (i*7+k)%26)
	}
	return v
}

func tsOf(base time.Time, i int) time.Time { return base.Add(time.Duration(i/100) * time.Millisecond) }

// produce writes records [from, to) and fails the test on any error.
func produce(t *testing.T, cl *kgo.Client, topic string, base time.Time, from, to int) {
	t.Helper()
	var failed atomic.Value
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: value(i), Timestamp: tsOf(base, i)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				failed.Store(err)
			} else if r.Offset != int64(i) {
				failed.Store(fmt.Errorf("record %d got offset %d", i, r.Offset))
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func producer(t *testing.T, addr string) *kgo.Client {
	return client(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(200_000),
		kgo.ProducerLinger(2*time.Millisecond), kgo.ProducerBatchMaxBytes(256<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // 100-byte records stay 100 bytes
}

// consumeAll reads [0, n) from a fresh consumer and checks every record
// byte for byte.
func consumeAll(t *testing.T, addr, topic string, base time.Time, n int) time.Duration {
	t.Helper()
	cl := client(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(4<<20), kgo.FetchMaxBytes(16<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	next := 0
	for next < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the timeout", next, n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch error (retried): %v", err) })
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			if bad != nil {
				return
			}
			switch {
			case r.Offset != int64(next):
				bad = fmt.Errorf("record at offset %d, want %d", r.Offset, next)
			case !bytes.Equal(r.Value, value(next)) || r.Key != nil:
				bad = fmt.Errorf("record %d differs: %q", next, r.Value)
			case !r.Timestamp.Equal(tsOf(base, next)):
				bad = fmt.Errorf("record %d timestamp %v, want %v", next, r.Timestamp, tsOf(base, next))
			}
			next++
		})
		if bad != nil {
			t.Fatal(bad)
		}
	}
	return time.Since(start)
}

// partDir returns the broker's directory of the topic's partition 0.
func partDir(dataDir string, id [16]byte) string {
	return filepath.Join(dataDir, "segments", hex.EncodeToString(id[:])+"-0")
}

// localLogs returns the base offsets of the sealed segments on disk, and
// which of them carry the archived marker.
func localLogs(t testing.TB, dir string) (bases []int64, archived map[int64]bool) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	archived = map[int64]bool{}
	for _, e := range ents {
		name := e.Name()
		if s, ok := strings.CutSuffix(name, ".log"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				bases = append(bases, n)
			}
		}
		if s, ok := strings.CutSuffix(name, ".archived"); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				archived[n] = true
			}
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, archived
}

func (e *env) manifest(id [16]byte) *tier3.Manifest {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := tier3.LoadManifest(ctx, e.store, id, 0)
	if err != nil {
		e.t.Fatalf("load manifest: %v", err)
	}
	return m
}

// checkManifestObjects checks that every object a manifest names exists
// with the recorded size and checksum.
func (e *env) checkManifestObjects(id [16]byte, m *tier3.Manifest) {
	ctx := context.Background()
	pp := tier3.PartitionPrefix(id, 0)
	for _, s := range m.Segments {
		for _, o := range []struct {
			key, sum string
			size     int64
		}{{s.Log, s.LogSHA256, s.Size}, {s.Index, s.IndexSHA256, -1}, {s.TimeIndex, s.TimeIndexSHA256, -1}} {
			info, err := e.store.Head(ctx, pp+o.key)
			if err != nil {
				e.t.Fatalf("manifest names %s: %v", o.key, err)
			}
			if info.SHA256 != o.sum || (o.size >= 0 && info.Size != o.size) {
				e.t.Fatalf("manifest names %s with sha %s size %d; stored: %+v", o.key, o.sum, o.size, info)
			}
		}
	}
}

func listOffset(t *testing.T, cl *kgo.Client, topic string, ts int64) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(9)
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = ts
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		t.Fatalf("ListOffsets(%d): %v", ts, err)
	}
	return p.Offset
}

func records() int {
	if s := os.Getenv("CHRONIK_TIER3_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n >= 10_000 {
			return n
		}
	}
	return 1_000_000
}

// The "must show" run: N records under tiny local retention. Local
// segments are deleted only once the manifest holds them; a consumer from
// offset 0 reads every record byte-identical across the archive / local
// boundary; ListOffsets by timestamp answers in both tiers; and the topic
// is restored from the bucket onto an empty data directory.
func TestArchiveConsumeRestore(t *testing.T) {
	e := newEnv(t)
	n := records()
	dataDir := t.TempDir()
	b := e.startBroker(dataDir)
	id := createTopic(t, b.Addr(), "big", map[string]string{
		"segment.bytes": "1048576", "local.retention.bytes": "0", "retention.ms": "-1",
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)

	// Watch the invariant while producing: a segment gone locally is in the
	// manifest (read after the listing, and manifests only grow here).
	stop := make(chan struct{})
	var watchErr atomic.Value
	var checks atomic.Int64
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			bases, _ := localLogs(t, partDir(dataDir, id))
			if len(bases) == 0 || bases[0] == 0 {
				continue
			}
			m, err := tier3.LoadManifest(context.Background(), e.store, id, 0)
			if err != nil {
				continue
			}
			checks.Add(1)
			if m.End() < bases[0] {
				watchErr.Store(fmt.Errorf("local segments below %d deleted, manifest ends at %d", bases[0], m.End()))
			}
		}
	}()
	start := time.Now()
	produce(t, producer(t, b.Addr()), "big", base, 0, n)
	t.Logf("produced %d records in %v", n, time.Since(start).Round(time.Millisecond))

	// Seal the tail so everything reaches the archive (for restore).
	adm := kadm.NewClient(client(t, b.Addr()))
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "segment.ms", Value: kadm.StringPtr("500")}}, "big"); err != nil {
		t.Fatal(err)
	}
	testharness.CheckFor(t, 3*time.Minute, 200*time.Millisecond, func() error {
		if end := e.manifest(id).End(); end != int64(n) {
			return fmt.Errorf("manifest ends at %d of %d", end, n)
		}
		if bases, _ := localLogs(t, partDir(dataDir, id)); len(bases) > 0 {
			return fmt.Errorf("%d local segments left (first %d)", len(bases), bases[0])
		}
		return nil
	})
	close(stop)
	watchWG.Wait()
	if err, _ := watchErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	m := e.manifest(id)
	e.checkManifestObjects(id, m)
	t.Logf("archived %d segments; invariant checked %d times during production", len(m.Segments), checks.Load())

	// Produce a few more so the log has a local part after the archive.
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "segment.ms", Value: kadm.StringPtr("604800000")}}, "big"); err != nil {
		t.Fatal(err)
	}
	extra := 5000
	produce(t, producer(t, b.Addr()), "big", base, n, n+extra)
	cl := client(t, b.Addr())
	local := listOffset(t, cl, "big", -4)
	if local != int64(n) {
		t.Fatalf("earliest local offset %d, want %d", local, n)
	}
	if got := listOffset(t, cl, "big", -2); got != 0 {
		t.Fatalf("earliest offset %d, want 0", got)
	}
	if got := listOffset(t, cl, "big", -5); got != int64(n-1) {
		t.Fatalf("latest tiered offset %d, want %d", got, n-1)
	}
	for _, i := range []int{0, 150, n / 2, n - 1, n, n + extra - 1} {
		want := int64(i / 100 * 100)
		if got := listOffset(t, cl, "big", tsOf(base, i).UnixMilli()); got != want {
			t.Errorf("ListOffsets(ts of record %d) = %d, want %d", i, got, want)
		}
	}
	took := consumeAll(t, b.Addr(), "big", base, n+extra)
	t.Logf("consumed %d records from offset 0 (%d archived) in %v", n+extra, n, took.Round(time.Millisecond))

	// Disaster recovery: a new, empty data directory rebuilt from the bucket.
	b.Stop()
	restored := t.TempDir()
	cmd := exec.Command(testharness.Binary(t), "topic", "restore", "big", "--data-dir", restored, "--tier3-url", e.url())
	cmd.Env = append(os.Environ(), e.srv.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chronik topic restore: %v\n%s", err, out)
	}
	t.Logf("restore: %s", out)
	b2 := e.startBroker(restored)
	consumeAll(t, b2.Addr(), "big", base, n)
	produce(t, producer(t, b2.Addr()), "big", base, n, n+10) // offsets continue after the archive
}

// MinIO stops during production: produce continues, nothing unarchived is
// deleted locally, and the uploads catch up once it is back.
func TestMinIODownDuringProduce(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	b := e.startBroker(dataDir)
	id := createTopic(t, b.Addr(), "down", map[string]string{
		"segment.bytes": "262144", "local.retention.bytes": "0", "retention.ms": "-1",
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	pr := producer(t, b.Addr())
	produce(t, pr, "down", base, 0, 20_000)
	testharness.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
		if e.manifest(id).End() <= 0 {
			return errors.New("nothing archived yet")
		}
		return nil
	})

	e.srv.Stop()
	before, archived := localLogs(t, partDir(dataDir, id))
	produce(t, pr, "down", base, 20_000, 100_000) // every record acknowledged
	time.Sleep(2 * time.Second)                   // uploads fail and back off meanwhile
	after, _ := localLogs(t, partDir(dataDir, id))
	still := map[int64]bool{}
	for _, s := range after {
		still[s] = true
	}
	// A segment gone without its .archived marker may have finished its
	// upload as MinIO stopped, the marker written after the listing:
	// the manifest, read once MinIO is back, must then cover it.
	var unmarked []int64
	for _, s := range before {
		if !archived[s] && !still[s] {
			unmarked = append(unmarked, s)
		}
	}
	if len(after) <= len(before) {
		t.Fatalf("%d local segments before the outage, %d after: produce did not seal new ones", len(before), len(after))
	}

	e.srv.Restart()
	if len(unmarked) > 0 {
		m := e.manifest(id)
		for _, s := range unmarked {
			if s >= m.End() {
				t.Fatalf("segment %d deleted locally while MinIO was down and before it was archived (manifest %v)", s, m)
			}
		}
	}
	testharness.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		bases, _ := localLogs(t, partDir(dataDir, id))
		m := e.manifest(id)
		if len(bases) > 0 && m.End() < bases[len(bases)-1] {
			return fmt.Errorf("manifest ends at %d, local segments reach %d", m.End(), bases[len(bases)-1])
		}
		if len(bases) > 0 {
			return fmt.Errorf("%d local segments not deleted yet", len(bases))
		}
		return nil
	})
	e.checkManifestObjects(id, e.manifest(id))
	consumeAll(t, b.Addr(), "down", base, 100_000)
}

// A broker killed (SIGKILL) while uploading leaves no manifest naming a
// missing or partial object; after a restart the uploads resume from the
// manifest, unreferenced objects are swept and every record reads back.
func TestKilledMidUpload(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	b := e.startBroker(dataDir)
	id := createTopic(t, b.Addr(), "kill", map[string]string{
		"segment.bytes": "262144", "local.retention.bytes": "0", "retention.ms": "-1",
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	total := 0
	for round := 0; round < 3; round++ {
		produce(t, producer(t, b.Addr()), "kill", base, total, total+40_000)
		total += 40_000
		b.Kill() // mid-upload, most likely: sealing and uploading never stop for long
		e.checkManifestObjects(id, e.manifest(id))
		b.Restart()
	}
	testharness.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		m := e.manifest(id)
		bases, _ := localLogs(t, partDir(dataDir, id))
		if len(bases) > 0 || m.End() <= 0 {
			return fmt.Errorf("manifest ends at %d; %d local segments", m.End(), len(bases))
		}
		// No unreferenced segment objects once the uploader has run (the
		// search indexer's objects beside them are its own business).
		objs, err := e.store.List(context.Background(), tier3.PartitionPrefix(id, 0))
		if err != nil {
			return err
		}
		n := 0
		for _, o := range objs {
			if k := o.Key; !strings.HasSuffix(k, ".bleve") && !strings.HasSuffix(k, "/search.json") {
				n++
			}
		}
		if n != 3*len(m.Segments)+1 {
			return fmt.Errorf("%d uploader objects for %d segments", n, len(m.Segments))
		}
		return nil
	})
	e.checkManifestObjects(id, e.manifest(id))
	consumeAll(t, b.Addr(), "kill", base, total)
}

// A damaged archived object is detected by its checksum and never served:
// the fetch fails with KAFKA_STORAGE_ERROR, and everything served before
// it is intact.
func TestCorruptObjectNeverServed(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	b := e.startBroker(dataDir)
	id := createTopic(t, b.Addr(), "rot", map[string]string{
		"segment.bytes": "262144", "local.retention.bytes": "0", "retention.ms": "-1",
	})
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	produce(t, producer(t, b.Addr()), "rot", base, 0, 20_000)
	var m *tier3.Manifest
	testharness.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
		m = e.manifest(id)
		if bases, _ := localLogs(t, partDir(dataDir, id)); len(m.Segments) == 0 || (len(bases) > 0 && bases[0] < m.Segments[0].Next) {
			ents, _ := os.ReadDir(filepath.Join(dataDir, "segments"))
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return fmt.Errorf("first segment not archived and deleted locally yet: id %x dirs %v local %v, manifest %d segments", id, names, bases, len(m.Segments))
		}
		return nil
	})
	seg := m.Segments[0]
	e.srv.Corrupt(t, e.bucket, prefix+"/"+tier3.PartitionPrefix(id, 0)+seg.Log, seg.Size/2)

	cl := client(t, b.Addr())
	next := int64(0)
	for next < seg.Next {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(12)
		req.MaxWaitMillis, req.MaxBytes = 100, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "rot", id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = next, 16<<10
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		p := &resp.Topics[0].Partitions[0]
		if p.ErrorCode == kerr.KafkaStorageError.Code {
			if len(p.RecordBatches) != 0 {
				t.Fatal("records served with a storage error")
			}
			t.Logf("damaged object detected at offset %d of segment [%d, %d)", next, seg.Base, seg.Next)
			return
		}
		if p.ErrorCode != 0 {
			t.Fatalf("fetch at %d: %v", next, kerr.ErrorForCode(p.ErrorCode))
		}
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: next, Topic: "rot"}, p, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil || len(fp.Records) == 0 {
			t.Fatalf("fetch at %d: %v, %d records", next, fp.Err, len(fp.Records))
		}
		for _, r := range fp.Records {
			if r.Offset != next || !bytes.Equal(r.Value, value(int(next))) {
				t.Fatalf("served a wrong record at %d: %q", r.Offset, r.Value)
			}
			next++
		}
	}
	t.Fatalf("read the whole damaged segment [%d, %d) without an error", seg.Base, seg.Next)
}
