package broker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier1"
)

// A full WAL queue throttles producers (the connection stops being read)
// instead of failing them, and memory stays bounded by the profile.
func TestBackpressureThrottlesWithoutErrors(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.Default)
	efs.SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync && strings.Contains(path, "wal") {
			time.Sleep(5 * time.Millisecond) // a slow disk
		}
		return nil
	})
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.FS = efs
		c.DefaultPartitions = 8
		c.WALProfile = tier1.Profile{Name: "tiny", QueueDepth: 4, MaxGroup: 2, MaxWait: time.Millisecond, MemoryBytes: 64 << 10}
	})
	cl := testClient(t, b, kgo.DefaultProduceTopic("slow"), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(16<<10))
	produceN(t, cl, "slow", 20000, kgo.NoCompression())
	if st := b.wal.Stats(); st.BackpressureWait == 0 {
		t.Fatalf("no append waited for room (stats %+v); the test did not exercise backpressure", st)
	}
	recs := consumeAll(t, b.Addr().String(), "slow", 20000)
	if len(recs) != 20000 {
		t.Fatalf("consumed %d records, want 20000", len(recs))
	}
}

// An fsync failure fails every waiting produce with KAFKA_STORAGE_ERROR,
// acknowledges nothing, stays failed, and a restart serves every record
// that was acknowledged before it.
func TestFsyncErrorFailsProducesAndIsSticky(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	var failing atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if failing.Load() && op == vfs.OpSync && strings.Contains(path, "wal") {
			return syscall.EIO
		}
		return nil
	})
	b := testBroker(t, dir, func(c *Config) { c.FS = efs })
	createTopic(t, b, "fragile", nil)
	c := dialRaw(t, b)
	for i := 0; i < 10; i++ {
		if sp := produceRaw(t, c, "fragile", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != 0 {
			t.Fatalf("produce %d before the fault: %v", i, kerr.ErrorForCode(sp.ErrorCode))
		}
	}
	failing.Store(true)
	for i := 0; i < 3; i++ {
		sp := produceRaw(t, c, "fragile", makeBatch(2, -1, -1, -1, 1))
		if sp.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("produce %d after fsync failure: %v, want KAFKA_STORAGE_ERROR", i, kerr.ErrorForCode(sp.ErrorCode))
		}
	}
	failing.Store(false) // the disk recovers, but the WAL error is sticky
	if sp := produceRaw(t, c, "fragile", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("produce after the fault cleared: %v, want KAFKA_STORAGE_ERROR until restart", kerr.ErrorForCode(sp.ErrorCode))
	}
	if _, hw := b.partitionOf(b.lookupTopic("fragile"), 0).offsets(); hw != 20 {
		t.Fatalf("high watermark %d after the fault, want 20 (nothing unsynced visible)", hw)
	}
	b.Close()

	b2 := testBroker(t, dir, nil)
	recs := consumeAll(t, b2.Addr().String(), "fragile", 20)
	if len(recs) < 20 || recs[19].Offset != 19 {
		t.Fatalf("after restart consumed %d records, want the 20 acknowledged", len(recs))
	}
	c2 := dialRaw(t, b2)
	if sp := produceRaw(t, c2, "fragile", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != 0 {
		t.Fatalf("produce after restart: %v", kerr.ErrorForCode(sp.ErrorCode))
	}
}

// A full disk fails produces with KAFKA_STORAGE_ERROR and leaves no trace
// of them; once space returns the same broker takes produces again at the
// next offset, an idempotent producer that kept retrying lands its batch
// exactly once, and a restart serves the same log.
func TestDiskFullFailsProducesAndRecovers(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default)
	var full atomic.Bool
	var refused atomic.Int64
	efs.SetHook(func(op vfs.Op, path string) error {
		if full.Load() && op == vfs.OpWrite && strings.Contains(path, "wal") {
			refused.Add(1)
			return syscall.ENOSPC
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	b := testBroker(t, dir, func(c *Config) { c.FS = efs; c.Metrics = reg })
	createTopic(t, b, "cramped", nil)
	c := dialRaw(t, b)
	for i := 0; i < 10; i++ {
		if sp := produceRaw(t, c, "cramped", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != 0 {
			t.Fatalf("produce %d before the disk filled: %v", i, kerr.ErrorForCode(sp.ErrorCode))
		}
	}
	full.Store(true)
	for i := 0; i < 3; i++ {
		if sp := produceRaw(t, c, "cramped", makeBatch(2, -1, -1, -1, 1)); sp.ErrorCode != kerr.KafkaStorageError.Code {
			t.Fatalf("produce %d on a full disk: %v, want KAFKA_STORAGE_ERROR", i, kerr.ErrorForCode(sp.ErrorCode))
		}
	}
	if full, groups := mustGather(t, reg, "chronik_wal_disk_full"), mustGather(t, reg, "chronik_wal_disk_full_groups_total"); full != 1 || groups < 3 {
		t.Fatalf("chronik_wal_disk_full %v, chronik_wal_disk_full_groups_total %v on a full disk; want 1 and at least 3", full, groups)
	}
	// An idempotent producer retries its batch until the disk has room.
	cl := testClient(t, b, kgo.DefaultProduceTopic("cramped"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	acked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		acked <- cl.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("retried")}).FirstErr()
	}()
	before := refused.Load()
	waitFor(t, 10*time.Second, func() error {
		if refused.Load() == before {
			return errors.New("the idempotent producer's batch has not met the full disk yet")
		}
		return nil
	})
	full.Store(false)
	if err := <-acked; err != nil {
		t.Fatalf("idempotent produce across the full disk: %v", err)
	}
	sp := produceRaw(t, c, "cramped", makeBatch(2, -1, -1, -1, 1))
	if sp.ErrorCode != 0 || sp.BaseOffset != 21 {
		t.Fatalf("produce once space returned: %v at offset %d, want offset 21", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
	if full := mustGather(t, reg, "chronik_wal_disk_full"); full != 0 {
		t.Fatalf("chronik_wal_disk_full %v once produces succeed again, want 0", full)
	}
	check := func(b *Broker) {
		t.Helper()
		recs := consumeAll(t, b.Addr().String(), "cramped", 23)
		if len(recs) != 23 {
			t.Fatalf("consumed %d records, want 23", len(recs))
		}
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Fatalf("record %d at offset %d: the log has a gap or a repeat", i, r.Offset)
			}
		}
		if string(recs[20].Value) != "retried" {
			t.Fatalf("offset 20 holds %q, want the idempotent producer's record", recs[20].Value)
		}
	}
	check(b)
	b.Close()
	check(testBroker(t, dir, nil))
}

// An idempotent producer whose batches were all taken back after a full
// disk must resend them from the first one's sequence.
func TestDiskFullKeepsSequenceOrder(t *testing.T) {
	efs := vfs.NewErrorFS(vfs.Default)
	var full atomic.Bool
	efs.SetHook(func(op vfs.Op, path string) error {
		if full.Load() && op == vfs.OpWrite && strings.Contains(path, "wal") {
			return syscall.ENOSPC
		}
		return nil
	})
	b := testBroker(t, t.TempDir(), func(c *Config) { c.FS = efs })
	createTopic(t, b, "ordered", nil)
	c := dialRaw(t, b)
	const pid = 77
	if sp := produceRaw(t, c, "ordered", makeBatch(2, pid, 0, 0, 1)); sp.ErrorCode != 0 {
		t.Fatalf("first batch: %v", kerr.ErrorForCode(sp.ErrorCode))
	}
	full.Store(true)
	if sp := produceRaw(t, c, "ordered", makeBatch(2, pid, 0, 2, 1)); sp.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("batch on a full disk: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(sp.ErrorCode))
	}
	full.Store(false)
	if sp := produceRaw(t, c, "ordered", makeBatch(2, pid, 0, 4, 1)); sp.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("batch skipping the failed one: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(sp.ErrorCode))
	}
	if sp := produceRaw(t, c, "ordered", makeBatch(2, pid, 0, 2, 1)); sp.ErrorCode != 0 || sp.BaseOffset != 2 {
		t.Fatalf("the failed batch resent: %v at %d, want offset 2", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
	// A producer with no batch left at all must start from its first one.
	full.Store(true)
	if sp := produceRaw(t, c, "ordered", makeBatch(1, pid+1, 0, 0, 1)); sp.ErrorCode != kerr.KafkaStorageError.Code {
		t.Fatalf("new producer on a full disk: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(sp.ErrorCode))
	}
	full.Store(false)
	if sp := produceRaw(t, c, "ordered", makeBatch(1, pid+1, 0, 1, 1)); sp.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("new producer skipping its failed first batch: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(sp.ErrorCode))
	}
	if sp := produceRaw(t, c, "ordered", makeBatch(1, pid+1, 0, 0, 1)); sp.ErrorCode != 0 || sp.BaseOffset != 4 {
		t.Fatalf("new producer's first batch resent: %v at %d, want offset 4", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
}

// A produce with acks=0 gets no response, yet the record is stored.
func TestAcksZero(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "fire", nil)
	c := dialRaw(t, b)
	c.send(produceReq("fire", 0, makeBatch(3, -1, -1, -1, 1), 0))
	// The next response on the connection must be for the next request.
	req := kmsg.NewPtrApiVersionsRequest()
	c.send(req)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if err := c.recv(resp); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions after acks=0 produce: %v %v", err, resp.ErrorCode)
	}
	p := b.partitionOf(b.lookupTopic("fire"), 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, hw := p.offsets(); hw == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("acks=0 records never became durable")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = errors.New

// The broker-wide request budget bounds what all connections hold, is
// waited for rather than failed, and is fully returned once every request
// has been answered.
func TestRequestBytesBudget(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.MaxRequestBytes = 64 << 10
		c.MessageMaxBytes = 16 << 10
		c.QueuedMaxRequestBytes = 64 << 10
		c.DefaultPartitions = 4
	})
	var clients []*kgo.Client
	for i := 0; i < 4; i++ {
		clients = append(clients, testClient(t, b, kgo.DefaultProduceTopic("budget"), kgo.ProducerBatchMaxBytes(16<<10)))
	}
	errc := make(chan error, len(clients))
	for _, cl := range clients {
		go func(cl *kgo.Client) {
			var recs []*kgo.Record
			for i := 0; i < 3000; i++ {
				recs = append(recs, &kgo.Record{Value: make([]byte, 100)})
			}
			errc <- cl.ProduceSync(testCtx(t), recs...).FirstErr()
		}(cl)
	}
	for range clients {
		if err := <-errc; err != nil {
			t.Fatalf("produce under a small request budget: %v", err)
		}
	}
	for _, cl := range clients {
		cl.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !b.reqBytes.TryAcquire(b.cfg.QueuedMaxRequestBytes) {
		if time.Now().After(deadline) {
			t.Fatal("request budget not fully released after every request was answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.reqBytes.Release(b.cfg.QueuedMaxRequestBytes)
}

// FetchMaxBytes caps a response whatever MaxBytes the client asks for.
func TestFetchMaxBytesCap(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.FetchMaxBytes = 4096 })
	createTopic(t, b, "capped", nil)
	c := dialRaw(t, b)
	for i := 0; i < 40; i++ {
		if sp := produceRaw(t, c, "capped", makeBatch(20, -1, -1, -1, 1)); sp.ErrorCode != 0 {
			t.Fatal(kerr.ErrorForCode(sp.ErrorCode))
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxBytes = 1 << 30
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "capped"
	ft.Partitions = []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 1 << 30, CurrentLeaderEpoch: -1}}
	req.Topics = append(req.Topics, ft)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	got := len(resp.Topics[0].Partitions[0].RecordBatches)
	one := len(makeBatch(20, -1, -1, -1, 1))
	if got == 0 || got > 4096 {
		t.Fatalf("fetch returned %d bytes (batches of %d); want some, at most the 4096-byte cap", got, one)
	}
}
