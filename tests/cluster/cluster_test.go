// Package cluster_test runs three real chronik processes as one cluster on
// 127.0.0.1 and checks the Raft metadata controller through the Kafka
// protocol: topic creation through any broker, identical metadata on every
// broker, controller failover under SIGKILL with metadata operations that
// keep succeeding, rejoin after restart, and a minority (SIGSTOP) that can
// neither change metadata nor serve leadership it has lost; and that a
// SIGKILLed leader's partitions come back to it once it returns, by the
// controller's imbalance check or "chronik cluster elect-leaders"
// (elect_test.go).
//
//	go test ./tests/cluster -v
package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"os/exec"
	"reflect"
	"slices"
	"sort"
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

// node is one broker process and a client pinned to it.
type node struct {
	id int32
	b  *testharness.Broker
	cl *kgo.Client
}

func newNodes(t *testing.T, bs []*testharness.Broker) []*node {
	var ns []*node
	for i, b := range bs {
		// Produce v12 names topics by name (v13 by ID).
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(kversion.V3_9_0()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		ns = append(ns, &node{id: int32(i + 1), b: b, cl: cl})
	}
	return ns
}

// request sends req to this broker and no other.
func (n *node) request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	seeds := n.cl.SeedBrokers()
	if len(seeds) == 0 {
		return nil, fmt.Errorf("no seed broker")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return seeds[0].Request(ctx, req)
}

// partitionView is what a broker says about one partition.
type partitionView struct {
	Leader, Epoch int32
	Replicas, ISR []int32
	Err           int16
}

// view is one broker's metadata: live brokers and every topic's partitions.
type view struct {
	Brokers    []int32
	Controller int32
	Topics     map[string][]partitionView
}

func (n *node) metadata(ctx context.Context) (*view, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = nil // all
	resp, err := n.request(ctx, req)
	if err != nil {
		return nil, err
	}
	m := resp.(*kmsg.MetadataResponse)
	v := &view{Controller: m.ControllerID, Topics: map[string][]partitionView{}}
	for _, b := range m.Brokers {
		v.Brokers = append(v.Brokers, b.NodeID)
	}
	slices.Sort(v.Brokers)
	for _, tp := range m.Topics {
		ps := make([]partitionView, len(tp.Partitions))
		for _, p := range tp.Partitions {
			isr := slices.Clone(p.ISR)
			slices.Sort(isr)
			ps[p.Partition] = partitionView{Leader: p.Leader, Epoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: isr, Err: p.ErrorCode}
		}
		v.Topics[*tp.Topic] = ps
	}
	return v, nil
}

func (n *node) describeCluster(ctx context.Context) (*kmsg.DescribeClusterResponse, error) {
	req := kmsg.NewPtrDescribeClusterRequest()
	req.IncludeFencedBrokers = true
	resp, err := n.request(ctx, req)
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.DescribeClusterResponse), nil
}

func ready(b *testharness.Broker) error {
	resp, err := http.Get("http://" + b.HTTPAddr() + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// waitFormed waits until every listed node is ready and sees want live,
// unfenced brokers and a controller.
func waitFormed(t *testing.T, ns []*node, want int) {
	t.Helper()
	ctx := context.Background()
	testharness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, n := range ns {
			if err := ready(n.b); err != nil {
				return fmt.Errorf("broker %d: %v", n.id, err)
			}
			dc, err := n.describeCluster(ctx)
			if err != nil {
				return fmt.Errorf("broker %d: %v", n.id, err)
			}
			live := 0
			for _, b := range dc.Brokers {
				if !b.IsFenced {
					live++
				}
			}
			if live != want || dc.ControllerID < 1 {
				return fmt.Errorf("broker %d sees %d live brokers and controller %d; want %d and a controller", n.id, live, dc.ControllerID, want)
			}
		}
		return nil
	})
}

// waitIdentical waits until every node answers the same metadata holding
// every topic in names, and returns it.
func waitIdentical(t *testing.T, ns []*node, names []string) *view {
	t.Helper()
	var agreed *view
	testharness.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		var first *view
		for _, n := range ns {
			v, err := n.metadata(context.Background())
			if err != nil {
				return err
			}
			for _, name := range names {
				if v.Topics[name] == nil {
					return fmt.Errorf("broker %d does not list %s yet", n.id, name)
				}
			}
			if first == nil {
				first = v
			} else if !reflect.DeepEqual(first, v) {
				return fmt.Errorf("broker %d differs from broker %d", n.id, ns[0].id)
			}
		}
		agreed = first
		return nil
	})
	return agreed
}

// createTopics sends CreateTopics to n itself (not to the controller, as
// Kafka clients would): any broker must take admin requests.
func createTopics(ctx context.Context, n *node, partitions int32, rf int16, names ...string) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 30000
	for _, name := range names {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, rf
		req.Topics = append(req.Topics, rt)
	}
	resp, err := n.request(ctx, req)
	if err != nil {
		return fmt.Errorf("create through broker %d: %w", n.id, err)
	}
	for _, rt := range resp.(*kmsg.CreateTopicsResponse).Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			msg := ""
			if rt.ErrorMessage != nil {
				msg = *rt.ErrorMessage
			}
			return fmt.Errorf("create %s through broker %d: %w (%s)", rt.Topic, n.id, err, msg)
		}
	}
	return nil
}

func topicNames(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%03d", prefix, i))
	}
	return out
}

func TestControllerQuorum(t *testing.T) {
	ns := newNodes(t, testharness.StartCluster(t, 3, testharness.Options{}))
	waitFormed(t, ns, 3)
	ctx := context.Background()

	// 100 topics with RF=3 through one broker; every broker then serves
	// identical metadata.
	names := topicNames("quorum", 100)
	if err := createTopics(ctx, ns[0], 3, 3, names...); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	v := waitIdentical(t, ns, names)
	t.Logf("100 topics created through broker 1; all three brokers served identical metadata %v after the response", time.Since(created).Round(time.Millisecond))
	leads := map[int32]int{}
	for _, name := range names {
		for _, p := range v.Topics[name] {
			if p.Err != 0 || len(p.Replicas) != 3 || len(p.ISR) != 3 || p.Leader != p.Replicas[0] {
				t.Fatalf("%s: partition %+v; want 3 replicas, all in sync, led by the preferred replica", name, p)
			}
			leads[p.Leader]++
		}
	}
	if leads[1] != 100 || leads[2] != 100 || leads[3] != 100 {
		t.Errorf("leaders per broker %v; want 100 each", leads)
	}

	// Too large a replication factor is refused.
	err := createTopics(ctx, ns[1], 1, 4, "too-many-replicas")
	if !errorsIs(err, kerr.InvalidReplicationFactor) {
		t.Errorf("RF 4 on 3 brokers: %v; want INVALID_REPLICATION_FACTOR", err)
	}

	// Records go to leaders: a client seeded with one broker produces to
	// and consumes from every partition; a produce sent to a follower gets
	// NOT_LEADER_OR_FOLLOWER.
	produceConsume(t, ns[2].b.Addr(), names[0], 3, 300)
	p0 := v.Topics[names[0]][0]
	follower := ns[p0.Replicas[1]-1]
	if code := produceTo(ctx, t, follower, names[0], 0); code != kerr.NotLeaderForPartition.Code {
		t.Errorf("produce to follower %d: code %d; want NOT_LEADER_OR_FOLLOWER", follower.id, code)
	}

	// SIGKILL the controller leader while topics keep being created
	// through the other brokers: every creation succeeds.
	leader := ns[v.Controller-1]
	var survivors []*node
	for _, n := range ns {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	var (
		mu       sync.Mutex
		failures []error
		slowest  time.Duration
		done     = make(chan struct{})
		madeN    int
	)
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := createTopics(ctx, survivors[i%2], 1, 2, fmt.Sprintf("during-failover-%03d", i))
			mu.Lock()
			slowest = max(slowest, time.Since(start))
			if err != nil {
				failures = append(failures, err)
			} else {
				madeN++
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	leader.b.Kill()
	testharness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		dc, err := survivors[0].describeCluster(ctx)
		if err != nil {
			return err
		}
		if dc.ControllerID < 1 || dc.ControllerID == leader.id {
			return fmt.Errorf("controller is %d", dc.ControllerID)
		}
		for _, b := range dc.Brokers {
			if b.NodeID == leader.id && !b.IsFenced {
				return fmt.Errorf("killed broker %d not fenced yet", leader.id)
			}
		}
		return nil
	})
	t.Logf("controller %d killed; new controller elected and the killed broker fenced after %v", leader.id, time.Since(killed).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // a few more creations against the new controller
	close(stop)
	<-done
	if len(failures) > 0 {
		t.Fatalf("%d of %d topic creations failed across the failover, first: %v", len(failures), len(failures)+madeN, failures[0])
	}
	if madeN < 5 {
		t.Fatalf("only %d topics created across the failover", madeN)
	}
	t.Logf("%d topic creations across the failover, all succeeded; slowest %v", madeN, slowest.Round(time.Millisecond))

	// Leadership left the killed broker; RF 3 needs three live brokers.
	after, err := survivors[0].metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range after.Topics {
		for i, p := range ps {
			if p.Leader == leader.id || p.Leader < 0 || slices.Contains(p.ISR, leader.id) {
				t.Fatalf("%s/%d after the failover: %+v; want a live leader and the killed broker out of the ISR", name, i, p)
			}
		}
	}
	if err := createTopics(ctx, survivors[1], 1, 3, "rf3-two-live"); !errorsIs(err, kerr.InvalidReplicationFactor) {
		t.Errorf("RF 3 with two live brokers: %v; want INVALID_REPLICATION_FACTOR", err)
	}
	produceConsume(t, survivors[0].b.Addr(), names[1], 3, 300)

	// `chronik cluster status` shows the fenced broker and the partitions
	// that lost a replica.
	st := clusterStatus(t, survivors[1].b.Addr())
	for _, b := range st.Brokers {
		if want := map[bool]string{true: "fenced", false: "live"}[b.ID == leader.id]; b.State != want {
			t.Errorf("cluster status: broker %d is %s; want %s", b.ID, b.State, want)
		}
	}
	if st.Controller == leader.id || st.Controller < 1 || len(st.Offline) != 0 || len(st.Under) < 300 {
		t.Errorf("cluster status: controller %d, %d offline, %d under-replicated; want a live controller, 0 offline and at least 300 under-replicated",
			st.Controller, len(st.Offline), len(st.Under))
	}

	// The cluster series on /metrics say the same.
	leaders := 0.0
	for _, n := range survivors {
		m := n.b.Scrape()
		if m["chronik_fenced_brokers"] != 1 || m["chronik_controller_lease_current"] != 1 || m["chronik_offline_partitions"] != 0 {
			t.Errorf("broker %d metrics: fenced %v, lease %v, offline %v; want 1, 1, 0", n.id,
				m["chronik_fenced_brokers"], m["chronik_controller_lease_current"], m["chronik_offline_partitions"])
		}
		leaders += m["chronik_controller_leader"]
	}
	if leaders != 1 {
		t.Errorf("%v survivors report being the controller leader; want 1", leaders)
	}

	// The killed broker restarts, rejoins and catches up.
	leader.b.Restart()
	waitFormed(t, ns, 3)
	all := append(slices.Clone(names), "during-failover-000")
	waitIdentical(t, ns, all)
}

// TestMinorityCannotChangeMetadataOrServeStaleLeadership pauses brokers
// with SIGSTOP: a broker left alone cannot create topics and stops
// presenting itself as leader, and a paused controller leader, once the
// majority fenced it and moved its partitions, never serves its old
// leadership after it resumes.
func TestMinorityCannotChangeMetadataOrServeStaleLeadership(t *testing.T) {
	ns := newNodes(t, testharness.StartCluster(t, 3, testharness.Options{}))
	waitFormed(t, ns, 3)
	ctx := context.Background()
	names := topicNames("minority", 20)
	if err := createTopics(ctx, ns[0], 3, 3, names...); err != nil {
		t.Fatal(err)
	}
	v := waitIdentical(t, ns, names)

	// 1. Broker 3 alone: pause 1 and 2.
	alone := ns[2]
	ns[0].b.Pause()
	ns[1].b.Pause()
	testharness.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		mv, err := alone.metadata(ctx)
		if err != nil {
			return err
		}
		for name, ps := range mv.Topics {
			for i, p := range ps {
				if p.Err == 0 || p.Leader != -1 {
					return fmt.Errorf("%s/%d still presented with leader %d", name, i, p.Leader)
				}
			}
		}
		return nil
	})
	for i, p := range v.Topics[names[0]] {
		if p.Leader == alone.id {
			if code := produceTo(ctx, t, alone, names[0], int32(i)); code != kerr.NotLeaderForPartition.Code {
				t.Errorf("produce to the isolated leader of %s/%d: code %d; want NOT_LEADER_OR_FOLLOWER", names[0], i, code)
			}
		}
	}
	err := createTopics(ctx, alone, 1, 1, "created-by-minority")
	if err == nil {
		t.Fatal("a broker cut off from the quorum created a topic")
	}
	t.Logf("create through the isolated broker: %v", err)
	if mv, err := alone.metadata(ctx); err != nil || mv.Topics["created-by-minority"] != nil {
		t.Fatalf("isolated broker lists the topic it could not create (err %v)", err)
	}
	ns[0].b.Resume()
	ns[1].b.Resume()
	waitFormed(t, ns, 3)
	v = waitIdentical(t, ns, names)

	// 2. Pause the controller leader until the majority fences it.
	paused := ns[v.Controller-1]
	var others []*node
	for _, n := range ns {
		if n != paused {
			others = append(others, n)
		}
	}
	var lost []string // partitions the paused broker led
	for _, name := range names {
		for i, p := range v.Topics[name] {
			if p.Leader == paused.id {
				lost = append(lost, fmt.Sprintf("%s/%d", name, i))
			}
		}
	}
	paused.b.Pause()
	var majority *view
	testharness.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		mv, err := others[0].metadata(ctx)
		if err != nil {
			return err
		}
		for _, name := range names {
			for i, p := range mv.Topics[name] {
				if p.Leader == paused.id || p.Leader < 0 {
					return fmt.Errorf("%s/%d led by %d", name, i, p.Leader)
				}
			}
		}
		majority = mv
		return nil
	})
	paused.b.Resume()
	// From the moment it resumes, whatever the paused broker presents as
	// current must be the majority's truth.
	stale, answers := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		mv, err := paused.metadata(ctx)
		if err != nil {
			continue
		}
		answers++
		for _, name := range names {
			for i, p := range mv.Topics[name] {
				if p.Err != 0 {
					continue // not presented as current
				}
				want := majority.Topics[name][i]
				if p.Leader != want.Leader || p.Epoch < want.Epoch {
					stale++
					t.Errorf("resumed broker presented %s/%d as led by %d epoch %d; the majority has %d epoch %d",
						name, i, p.Leader, p.Epoch, want.Leader, want.Epoch)
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if stale > 0 || answers == 0 {
		t.Fatalf("%d stale leaderships in %d metadata answers of the resumed broker", stale, answers)
	}
	t.Logf("resumed broker: %d metadata answers in 3 s, none presenting lost leadership of %d partitions", answers, len(lost))
	waitFormed(t, ns, 3)
	waitIdentical(t, ns, names)
}

func errorsIs(err error, target *kerr.Error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// produceTo sends one record straight to n for topic/partition and returns
// the partition's error code.
func produceTo(ctx context.Context, t *testing.T, n *node, topic string, partition int32) int16 {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = oneRecordBatch()
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := n.request(ctx, req)
	if err != nil {
		t.Fatalf("produce to broker %d: %v", n.id, err)
	}
	return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
}

// oneRecordBatch is a valid uncompressed v2 batch of one record.
func oneRecordBatch() []byte {
	rec := kmsg.NewRecord()
	rec.Value = []byte("x")
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // a one-byte varint length
	recBytes := rec.AppendTo(nil)
	b := kmsg.NewRecordBatch()
	b.Magic = 2
	b.NumRecords = 1
	b.ProducerID = -1
	b.ProducerEpoch = -1
	b.FirstSequence = -1
	b.FirstTimestamp = time.Now().UnixMilli()
	b.MaxTimestamp = b.FirstTimestamp
	b.Records = recBytes
	raw := b.AppendTo(nil)
	b.Length = int32(len(raw) - 12)
	raw = b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b.AppendTo(nil)
}

// produceConsume writes n records through a client seeded with one broker
// and reads them back.
func produceConsume(t *testing.T, seed, topic string, partitions, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := map[string]bool{}
	for i := range n {
		v := fmt.Sprintf("%s-%d", topic, i)
		want[v] = true
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(seed), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := map[string]bool{}
	parts := map[int32]bool{}
	for len(got) < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(got), n, topic)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if want[string(r.Value)] {
				got[string(r.Value)] = true
				parts[r.Partition] = true
			}
		})
	}
	if len(parts) != partitions {
		keys := make([]int, 0, len(parts))
		for p := range parts {
			keys = append(keys, int(p))
		}
		sort.Ints(keys)
		t.Errorf("records of %s came from partitions %v; want all %d", topic, keys, partitions)
	}
}

// clusterStatus runs `chronik cluster status --output json`.
func clusterStatus(t *testing.T, addr string) (st struct {
	Controller int32
	Brokers    []struct {
		ID    int32
		State string
	}
	Under   []json.RawMessage `json:"under_replicated"`
	Offline []json.RawMessage `json:"offline"`
}) {
	t.Helper()
	out, err := exec.Command(testharness.Binary(t), "cluster", "status", "--brokers", addr, "--output", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("chronik cluster status: %v\n%s", err, out)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("chronik cluster status output: %v\n%s", err, out)
	}
	return st
}
