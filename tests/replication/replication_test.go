// Package replication_test runs three real chronik brokers, each in a
// network namespace of its own, with RF=3 and min.insync.replicas=2,
// produces with idempotent acks=all producers through repeated faults —
// SIGKILL of a partition leader, SIGKILL of a follower, the leader cut off
// the network, SIGSTOP of the leader — and proves afterwards that every
// acknowledged record is readable exactly once at its acknowledged offset,
// in order, and that all three replicas hold identical records up to the
// high watermark. It runs twice: with plaintext between brokers, and with
// mutual TLS between them (replica fetches and the controller port). Needs
// root and iproute2 (network namespaces).
//
//	go test ./tests/replication -v
//	CHRONIK_REPLICATION_ROUNDS=16 go test ./tests/replication -v -timeout 30m
package replication_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const (
	topic      = "acked"
	partitions = 3
)

type node struct {
	id int32
	b  *testharness.Broker
	cl *kgo.Client // pinned to this broker
}

func (n *node) request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return n.cl.SeedBrokers()[0].Request(ctx, req)
}

// partitionMeta is the cluster's view of one partition, read from a broker
// that holds a lease.
type partitionMeta struct {
	leader, epoch int32
	isr           []int32
}

func metadata(ctx context.Context, ns []*node) (map[int32]partitionMeta, error) {
	var last error
	for _, n := range ns {
		if !n.b.Running() {
			continue
		}
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		name := topic
		rt.Topic = &name
		req.Topics = append(req.Topics, rt)
		resp, err := n.request(ctx, req)
		if err != nil {
			last = err
			continue
		}
		out := map[int32]partitionMeta{}
		ok := true
		for _, t := range resp.(*kmsg.MetadataResponse).Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					ok = false
				}
				out[p.Partition] = partitionMeta{leader: p.Leader, epoch: p.LeaderEpoch, isr: p.ISR}
			}
		}
		if ok && len(out) == partitions {
			return out, nil
		}
		last = fmt.Errorf("broker %d: partitions without a leader", n.id)
	}
	return nil, last
}

// acked is one acknowledged record.
type acked struct {
	partition int32
	offset    int64
}

type ackLog struct {
	mu       sync.Mutex
	byValue  map[string]acked
	newest   map[int32]time.Time // per partition: the latest produce time of an acknowledged record
	ackedAt  map[int32]time.Time // when that acknowledgement came
	failures int
	firstErr error
}

func (a *ackLog) add(r *kgo.Record, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.failures++
		if a.firstErr == nil {
			a.firstErr = err
		}
		return
	}
	a.byValue[string(r.Value)] = acked{r.Partition, r.Offset}
	if r.Timestamp.After(a.newest[r.Partition]) {
		a.newest[r.Partition], a.ackedAt[r.Partition] = r.Timestamp, time.Now()
	}
}

// waitAckAfter waits for the acknowledgement of a record on partition p
// produced after the fault at t (so no leader that failed could have
// acknowledged it) and returns when it came.
func (a *ackLog) waitAckAfter(t *testing.T, p int32, fault time.Time) time.Time {
	t.Helper()
	var at time.Time
	testharness.CheckFor(t, 60*time.Second, 5*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.newest[p].After(fault) {
			at = a.ackedAt[p]
			return nil
		}
		return fmt.Errorf("no record produced after the fault acknowledged on partition %d", p)
	})
	return at
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("CHRONIK_REPLICATION_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 8
}

func TestAckedRecordsSurviveFaults(t *testing.T) {
	t.Run("plaintext", func(t *testing.T) { ackedRecordsSurviveFaults(t, false) })
	// The same with the brokers authenticating one another: replica
	// fetches over an SSL listener that requires their certificates, the
	// controller port mutual TLS.
	t.Run("mutual-tls", func(t *testing.T) { ackedRecordsSurviveFaults(t, true) })
}

func ackedRecordsSurviveFaults(t *testing.T, mutualTLS bool) {
	hosts := testharness.NewHosts(t, 3)
	bs := testharness.StartCluster(t, 3, testharness.Options{Hosts: hosts, MutualTLS: mutualTLS,
		Args: []string{"--min-insync-replicas", "2", "--default-replication-factor", "3"}})
	var ns []*node
	for i, b := range bs {
		// Kafka 2.8's versions: Fetch v12 names topics (v13+ use IDs) and
		// reads from followers (KIP-392, v11+).
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(kversion.V2_8_0()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		ns = append(ns, &node{id: int32(i + 1), b: b, cl: cl})
	}
	ctx := context.Background()
	createTopic(t, ns)
	waitFullISR(t, ns)

	// Producers: idempotent, acks=all, uncompressed (the check decodes raw
	// fetches), round-robin so every partition sees every fault.
	log := &ackLog{byValue: map[string]acked{}, newest: map[int32]time.Time{}, ackedAt: map[int32]time.Time{}}
	var seeds []string
	for _, b := range bs {
		seeds = append(seeds, b.Addr())
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for pi := range 2 {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.RecordDeliveryTimeout(60*time.Second),
			kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(2000),
			// Client tuning for fast failover: refresh metadata soon after
			// a leader fails (the default waits up to 5 s between
			// refreshes), and give up on a silent broker (cut off or
			// paused) after 5 s instead of 10 s + 10 s.
			kgo.MetadataMinAge(250*time.Millisecond),
			kgo.ProduceRequestTimeout(3*time.Second), kgo.RequestTimeoutOverhead(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Close()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					cl.Flush(context.Background())
					return
				default:
				}
				cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "p%d-%09d", pi, seq)}, log.add)
			}
		}()
	}

	var failovers []time.Duration
	for round := range rounds() {
		time.Sleep(time.Second)
		meta, err := metadata(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		part := int32(round % partitions)
		leader := ns[meta[part].leader-1]
		switch round % 4 {
		case 0: // SIGKILL the leader of part
			killed := time.Now()
			leader.b.Kill()
			at := log.waitAckAfter(t, part, killed)
			failovers = append(failovers, at.Sub(killed))
			t.Logf("round %d: killed leader %d of partition %d; next acks=all produce after %v", round, leader.id, part, at.Sub(killed).Round(time.Millisecond))
			time.Sleep(time.Second)
			leader.b.Restart()
		case 1: // SIGKILL a follower of part
			var f *node
			for _, id := range meta[part].isr {
				if id != leader.id {
					f = ns[id-1]
					break
				}
			}
			f.b.Kill()
			t.Logf("round %d: killed follower %d of partition %d", round, f.id, part)
			time.Sleep(3 * time.Second)
			f.b.Restart()
		case 2: // cut the leader of part off the network
			cut := time.Now()
			hosts.Cut(int(leader.id))
			at := log.waitAckAfter(t, part, cut)
			t.Logf("round %d: cut leader %d of partition %d off the network; next acks=all produce after %v", round, leader.id, part, at.Sub(cut).Round(time.Millisecond))
			time.Sleep(time.Second)
			hosts.Heal(int(leader.id))
		case 3: // SIGSTOP the leader of part past its session
			paused := time.Now()
			leader.b.Pause()
			at := log.waitAckAfter(t, part, paused)
			t.Logf("round %d: paused leader %d of partition %d; next acks=all produce after %v", round, leader.id, part, at.Sub(paused).Round(time.Millisecond))
			time.Sleep(time.Second)
			leader.b.Resume()
		}
		waitFullISR(t, ns)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.byValue) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	waitFullISR(t, ns)
	verify(t, ns, log)
	sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
	t.Logf("failover after SIGKILL of a leader (kill → next acks=all produce): %v", failovers)
}

func createTopic(t *testing.T, ns []*node) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 3
	v := "2"
	c := kmsg.NewCreateTopicsRequestTopicConfig()
	c.Name, c.Value = "min.insync.replicas", &v
	rt.Configs = append(rt.Configs, c)
	req.Topics = append(req.Topics, rt)
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := ns[0].request(context.Background(), req)
		if err != nil {
			return err
		}
		if err := kerr.ErrorForCode(resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode); err != nil && err != kerr.TopicAlreadyExists {
			return err
		}
		return nil
	})
}

// waitFullISR waits until every partition has a leader and all three
// replicas in its ISR.
func waitFullISR(t *testing.T, ns []*node) {
	t.Helper()
	testharness.CheckFor(t, 90*time.Second, 50*time.Millisecond, func() error {
		meta, err := metadata(context.Background(), ns)
		if err != nil {
			return err
		}
		for p, m := range meta {
			if len(m.isr) != 3 || m.leader < 1 {
				return fmt.Errorf("partition %d: leader %d ISR %v", p, m.leader, m.isr)
			}
		}
		return nil
	})
}

type rec struct {
	offset int64
	value  string
}

// readReplica reads partition p from broker n (leader or follower, KIP-392)
// up to its high watermark.
func readReplica(t *testing.T, n *node, p int32) ([]rec, int64) {
	t.Helper()
	var out []rec
	var hw int64 = -1
	offset := int64(0)
	for hw < 0 || offset < hw {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MaxBytes = 8 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offset, 4<<20
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := n.request(context.Background(), req)
		if err != nil {
			t.Fatalf("fetch %d from broker %d: %v", p, n.id, err)
		}
		frp := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(frp.ErrorCode); err != nil {
			t.Fatalf("fetch %d from broker %d at %d: %v", p, n.id, offset, err)
		}
		hw = frp.HighWatermark
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: topic, Partition: p, Offset: offset}, &frp, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			t.Fatalf("decode %d from broker %d: %v", p, n.id, fp.Err)
		}
		if len(fp.Records) == 0 && offset < hw {
			t.Fatalf("broker %d returned nothing for partition %d at %d below its high watermark %d", n.id, p, offset, hw)
		}
		for _, r := range fp.Records {
			if r.Offset >= hw {
				t.Fatalf("broker %d served offset %d above its high watermark %d", n.id, r.Offset, hw)
			}
			out = append(out, rec{r.Offset, string(r.Value)})
			offset = r.Offset + 1
		}
	}
	return out, hw
}

func verify(t *testing.T, ns []*node, log *ackLog) {
	t.Helper()
	// Every replica's high watermark reaches the same value once quiet.
	hws := map[int32]int64{}
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for p := range int32(partitions) {
			var first int64 = -1
			for _, n := range ns {
				_, hw := readReplicaHW(t, n, p)
				if first == -1 {
					first = hw
				} else if hw != first {
					return fmt.Errorf("partition %d: high watermarks differ across replicas", p)
				}
			}
			hws[p] = first
		}
		return nil
	})
	seen := map[string]int{}
	lost, dups, moved := 0, 0, 0
	for p := range int32(partitions) {
		var ref []rec
		for i, n := range ns {
			recs, hw := readReplica(t, n, p)
			if hw != hws[p] {
				t.Fatalf("partition %d replica %d: high watermark %d, want %d", p, n.id, hw, hws[p])
			}
			for j := 1; j < len(recs); j++ {
				if recs[j].offset <= recs[j-1].offset {
					t.Fatalf("partition %d replica %d: offsets out of order at %d", p, n.id, recs[j].offset)
				}
			}
			if i == 0 {
				ref = recs
				continue
			}
			if !slices.Equal(ref, recs) {
				t.Fatalf("partition %d: replica %d differs from replica %d below the high watermark %d (%d vs %d records)",
					p, n.id, ns[0].id, hw, len(recs), len(ref))
			}
		}
		for _, r := range ref {
			seen[r.value]++
		}
		byOffset := map[int64]string{}
		for _, r := range ref {
			byOffset[r.offset] = r.value
		}
		for v, a := range log.byValue {
			if a.partition != p {
				continue
			}
			got, ok := byOffset[a.offset]
			switch {
			case !ok:
				lost++
			case got != v:
				moved++
			}
		}
	}
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("acked %d, lost %d, at another offset %d, duplicated %d, producer give-ups %d (first: %v)",
		len(log.byValue), lost, moved, dups, log.failures, log.firstErr)
	if lost > 0 || moved > 0 || dups > 0 {
		t.Fatalf("acknowledged records lost %d, moved %d, duplicated %d", lost, moved, dups)
	}
}

// readReplicaHW asks broker n for partition p's high watermark.
func readReplicaHW(t *testing.T, n *node, p int32) (int64, int64) {
	freq := kmsg.NewPtrFetchRequest()
	freq.ReplicaID = -1
	freq.MaxBytes = 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, 0, 1, -1
	rt.Partitions = append(rt.Partitions, rp)
	freq.Topics = append(freq.Topics, rt)
	resp, err := n.request(context.Background(), freq)
	if err != nil {
		return 0, -2
	}
	frp := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0]
	if frp.ErrorCode != 0 {
		return 0, -3
	}
	return 0, frp.HighWatermark
}
