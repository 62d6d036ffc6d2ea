package broker

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier2"
)

func initProducerIDRaw(t *testing.T, c *rawConn, id int64, epoch int16) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.SetVersion(4)
	req.ProducerID, req.ProducerEpoch = id, epoch
	c.send(req)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if err := c.recv(resp); err != nil {
		t.Fatalf("InitProducerID response: %v", err)
	}
	return resp
}

// A client claiming another client's producer ID and epoch in
// InitProducerID gets a fresh ID, as from Kafka: it can neither take the ID
// over nor fence the producer that owns it.
func TestInitProducerIDClaimDoesNotFenceOwner(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "owned", nil)
	owner, thief := dialRaw(t, b), dialRaw(t, b)

	got := initProducerIDRaw(t, owner, -1, -1)
	if got.ErrorCode != 0 || got.ProducerID < 0 || got.ProducerEpoch != 0 {
		t.Fatalf("owner's InitProducerID: %v id %d epoch %d", kerr.ErrorForCode(got.ErrorCode), got.ProducerID, got.ProducerEpoch)
	}
	id := got.ProducerID
	if r := produceRaw(t, owner, "owned", makeBatch(1, id, 0, 0, 1)); r.ErrorCode != 0 {
		t.Fatalf("owner's first batch: %v", kerr.ErrorForCode(r.ErrorCode))
	}

	stolen := initProducerIDRaw(t, thief, id, 0)
	if stolen.ErrorCode != 0 || stolen.ProducerID == id || stolen.ProducerEpoch != 0 {
		t.Fatalf("claiming producer %d epoch 0 answered %v id %d epoch %d; want a fresh ID at epoch 0",
			id, kerr.ErrorForCode(stolen.ErrorCode), stolen.ProducerID, stolen.ProducerEpoch)
	}
	// The thief writes with what it was given; the owner carries on.
	if r := produceRaw(t, thief, "owned", makeBatch(1, stolen.ProducerID, stolen.ProducerEpoch, 0, 1)); r.ErrorCode != 0 {
		t.Fatalf("thief's batch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := produceRaw(t, owner, "owned", makeBatch(1, id, 0, 1, 1)); r.ErrorCode != 0 {
		t.Fatalf("owner's second batch after another client claimed its ID: %v", kerr.ErrorForCode(r.ErrorCode))
	}

	// Half a claim is malformed, as Kafka answers it.
	for _, claim := range [][2]int64{{id, -1}, {-1, 0}} {
		if r := initProducerIDRaw(t, thief, claim[0], int16(claim[1])); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("claim id %d epoch %d: %v, want INVALID_REQUEST", claim[0], claim[1], kerr.ErrorForCode(r.ErrorCode))
		}
	}
}

// producersOf is how many idempotent producers p remembers.
func producersOf(p *partition) int {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	return len(p.producers)
}

// A client inventing 50,000 producer IDs leaves at most
// CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION (default 10,000) producers in the
// partition's memory and in its producers checkpoint, while an idempotent
// franz-go producer writing alongside keeps working, every record once.
func TestInventedProducerIDsStayBounded(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.Fsync = tier1.FsyncNever })
	createTopicWith(t, b, "flood", map[string]string{"segment.ms": "1"})
	const invented = 50_000
	limit := DefaultConfig().ProducerIDsMaxPerPartition

	live := testClient(t, b, kgo.DefaultProduceTopic("flood"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	stop := make(chan struct{})
	liveErr := make(chan error, 1)
	var liveSent atomic.Int64
	go func() {
		defer close(liveErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := live.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("live-" + strconv.Itoa(i))}).FirstErr(); err != nil {
				liveErr <- fmt.Errorf("live producer's record %d: %w", i, err)
				return
			}
			liveSent.Add(1)
		}
	}()

	floodProducerIDs(t, dialRaw(t, b), "flood", 1_000_000, invented)
	close(stop)
	if err := <-liveErr; err != nil {
		t.Fatal(err)
	}
	if liveSent.Load() == 0 {
		t.Fatal("the live producer wrote nothing during the flood")
	}

	p := b.lookupTopic("flood").partitions[0]
	if n := producersOf(p); n > limit {
		t.Errorf("after %d invented producer IDs the partition remembers %d producers; want at most %d", invented, n, limit)
	}
	// The checkpoint written at the seal is bounded too.
	if err := b.seal(p, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, ps, _, ok, err := tier2.ReadProducers(b.fs, p.dir)
	if err != nil || !ok {
		t.Fatalf("producers checkpoint: ok %v, %v", ok, err)
	}
	if len(ps) == 0 {
		t.Error("producers checkpoint is empty: the flood never reached it")
	}
	if len(ps) > limit {
		t.Errorf("producers checkpoint holds %d producers; want at most %d", len(ps), limit)
	}

	// The live producer still works, and every one of its records landed once.
	if err := live.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("live-last")}).FirstErr(); err != nil {
		t.Fatalf("live producer after the flood: %v", err)
	}
	want := liveSent.Load() + 1
	seen := map[string]int{}
	cons := testClient(t, b, kgo.ConsumeTopics("flood"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for total := int64(0); total < invented+want; {
		fs := cons.PollFetches(testCtx(t))
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			total++
			if strings.HasPrefix(string(r.Value), "live-") {
				seen[string(r.Value)]++
			}
		})
	}
	if int64(len(seen)) != want {
		t.Errorf("read %d distinct live records; want %d", len(seen), want)
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("live record %q read %d times", v, n)
		}
	}
}

// An idempotent producer silent for longer than producer.id.expiration.ms
// (CHRONIK_PRODUCER_ID_EXPIRATION_MS, default a day) is forgotten by the
// periodic cleaning pass, in memory and in the next checkpoint; its next
// write is accepted at any sequence, as Kafka (2.5+) accepts a producer it
// has no state for.
func TestIdleProducersExpire(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "idle", nil)
	c := dialRaw(t, b)
	for id := int64(7000); id < 7010; id++ {
		if r := produceRaw(t, c, "idle", makeBatch(2, id, 0, 0, 1)); r.ErrorCode != 0 {
			t.Fatalf("producer %d: %v", id, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	p := b.lookupTopic("idle").partitions[0]
	if n := producersOf(p); n != 10 {
		t.Fatalf("remembering %d producers; want 10", n)
	}

	b.clean(time.Now().Add(time.Hour)) // well within the expiration
	if n := producersOf(p); n != 10 {
		t.Fatalf("an hour on, remembering %d producers; want all 10", n)
	}
	b.clean(time.Now().Add(25 * time.Hour))
	if n := producersOf(p); n != 0 {
		t.Fatalf("25 hours on, still remembering %d producers; want none", n)
	}
	if err := b.seal(p, time.Now().Add(25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ps, _, _, err := tier2.ReadProducers(b.fs, p.dir); err != nil || len(ps) != 0 {
		t.Fatalf("producers checkpoint after expiry holds %d producers (%v); want none", len(ps), err)
	}
	// Unknown again: its next batch is taken wherever its sequence is.
	if r := produceRaw(t, c, "idle", makeBatch(1, 7000, 0, 7, 1)); r.ErrorCode != 0 || r.BaseOffset != 20 {
		t.Fatalf("expired producer's next batch: %v at %d, want accepted at 20", kerr.ErrorForCode(r.ErrorCode), r.BaseOffset)
	}
}

// floodProducerIDs writes n one-record batches to topic's partition 0 on
// one connection, requests pipelined, each from a new producer ID (from
// first on) at a sequence no real producer would start from.
func floodProducerIDs(t *testing.T, c *rawConn, topic string, first int64, n int) {
	t.Helper()
	sendErr := make(chan error, 1)
	go func() {
		f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("flood"))
		var buf []byte
		for i := 0; i < n; i++ {
			req := produceReq(topic, 0, makeBatch(1, first+int64(i), 0, int32(i%1000), 1), -1)
			buf = f.AppendRequest(buf[:0], req, int32(i+1))
			c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.nc.Write(buf); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	for i := 0; i < n; i++ {
		resp := kmsg.NewPtrProduceResponse()
		resp.SetVersion(9)
		if err := c.recv(resp); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("invented producer %d: %v", first+int64(i), kerr.ErrorForCode(code))
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
}

// A follower remembers producers through the same bounded code as its
// leader: the invented IDs it replicates leave at most the limit.
func TestFollowerProducerIDsStayBounded(t *testing.T) {
	const limit, invented = 100, 1000
	nodes := testCluster(t, 2, func(_ int, c *Config) { c.ProducerIDsMaxPerPartition = limit })
	if _, err := nodes[0].b.createTopic("rep", 1, 2, nil, false); err != nil {
		t.Fatal(err)
	}
	var pi replication.PartitionInfo
	waitFor(t, 10*time.Second, func() error {
		pi, _ = nodes[0].partitionInfo("rep", 0)
		if len(pi.ISR) != 2 {
			return fmt.Errorf("ISR %v", pi.ISR)
		}
		return nil
	})
	leader, follower := nodes[pi.Leader-1], nodes[2-pi.Leader]
	waitFor(t, 10*time.Second, func() error {
		if leader.b.lookupTopic("rep") == nil || follower.b.lookupTopic("rep") == nil {
			return fmt.Errorf("topic not applied on both brokers yet")
		}
		return nil
	})
	floodProducerIDs(t, dialRaw(t, leader.b), "rep", 5_000_000, invented)
	fp := follower.b.lookupTopic("rep").partitions[0]
	waitFor(t, 10*time.Second, func() error {
		fp.appendMu.Lock()
		end := fp.nextOffset
		fp.appendMu.Unlock()
		if end != invented {
			return fmt.Errorf("the follower holds %d of %d batches", end, invented)
		}
		return nil
	})
	for name, nd := range map[string]*testNode{"leader": leader, "follower": follower} {
		if n := producersOf(nd.b.lookupTopic("rep").partitions[0]); n == 0 || n > limit {
			t.Errorf("the %s remembers %d producers after %d invented IDs; want 1 to %d", name, n, invented, limit)
		}
	}
}
