package broker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// electTopic creates a topic of n partitions at RF 3 on nodes and waits
// until every partition is led by its preferred replica with the full ISR.
func electTopic(t *testing.T, nodes []*testNode, name string, n int32) {
	t.Helper()
	if _, err := nodes[0].b.createTopic(name, n, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	waitPreferred(t, nodes[0], name, n, 3)
}

// waitPreferred waits until nd's controller state has every partition of
// name led by its preferred replica with isr members in its ISR.
func waitPreferred(t *testing.T, nd *testNode, name string, n int32, isr int) {
	t.Helper()
	waitFor(t, 60*time.Second, func() error {
		for p := range n {
			ps, ok := nd.partitionInfo(name, p)
			switch {
			case !ok:
				return fmt.Errorf("partition %d unknown", p)
			case ps.Leader != ps.Replicas[0]:
				return fmt.Errorf("partition %d led by %d; preferred %d", p, ps.Leader, ps.Replicas[0])
			case len(ps.ISR) < isr:
				return fmt.Errorf("partition %d ISR %v", p, ps.ISR)
			}
		}
		return nil
	})
}

// leaderships counts the partitions of name each broker leads.
func leaderships(nd *testNode, name string) map[int32]int {
	out := map[int32]int{}
	for _, ps := range nd.b.ctl.State().Topics[name].Partitions {
		out[ps.Leader]++
	}
	return out
}

// A broker that restarts leads none of its partitions at first: the
// others took them over. The controller's imbalance check hands them back
// once the broker is in their ISRs again, and producers carry on.
func TestAutoLeaderRebalanceAfterRestart(t *testing.T) {
	nodes := testCluster(t, 3, func(i int, c *Config) {
		c.Cluster.AutoLeaderRebalance = true
		c.Cluster.LeaderImbalanceCheckInterval = 500 * time.Millisecond
		c.Cluster.LeaderImbalancePerBrokerPercentage = 10
	})
	electTopic(t, nodes, "rebalance", 6)
	before := map[int32]int32{} // leader epochs of broker 1's partitions
	for p := range int32(6) {
		if ps, _ := nodes[1].partitionInfo("rebalance", p); ps.Leader == 1 {
			before[p] = ps.LeaderEpoch
		}
	}
	nodes[0].restart(t, nil)
	waitFor(t, 30*time.Second, func() error {
		if err := nodes[0].b.Ready(); err != nil {
			return err
		}
		return nil
	})
	// Broker 1's partitions went to the others (one epoch) and came back
	// (another), not merely stayed.
	waitFor(t, 60*time.Second, func() error {
		for p, epoch := range before {
			if ps, _ := nodes[1].partitionInfo("rebalance", p); ps.Leader != 1 || ps.LeaderEpoch < epoch+2 {
				return fmt.Errorf("partition %d: leader %d at epoch %d; broker 1 led it at epoch %d before its restart", p, ps.Leader, ps.LeaderEpoch, epoch)
			}
		}
		return nil
	})
	waitPreferred(t, nodes[1], "rebalance", 6, 3)
	if got := leaderships(nodes[1], "rebalance"); got[1] != 2 || got[2] != 2 || got[3] != 2 {
		t.Fatalf("leaders per broker %v; want 2 each", got)
	}
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.b.Addr().String())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p := range int32(6) {
		if err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "rebalance", Partition: p, Value: []byte("after")}).FirstErr(); err != nil {
			t.Fatalf("produce to partition %d after the rebalance: %v", p, err)
		}
	}
}

// ElectLeaders through kadm: with automatic rebalancing off, a restarted
// broker's partitions stay with the others until a preferred election
// asks; partitions led by their preferred replica answer
// ELECTION_NOT_NEEDED; an election over all partitions lists only those it
// tried; an unclean election of a led partition is not needed; unknown
// partitions are named.
func TestElectLeaders(t *testing.T) {
	nodes := testCluster(t, 3, nil) // AutoLeaderRebalance off: the zero config
	electTopic(t, nodes, "elect", 3)
	nodes[0].restart(t, nil)
	// Broker 1's partitions moved (a restart is fenced first, however
	// quick), then broker 1 back in every ISR, leading nothing.
	waitFor(t, 60*time.Second, func() error {
		for p := range int32(3) {
			ps, _ := nodes[1].partitionInfo("elect", p)
			switch {
			case ps.Leader == 1:
				return fmt.Errorf("partition %d still led by the restarted broker 1", p)
			case len(ps.ISR) != 3:
				return fmt.Errorf("partition %d ISR %v", p, ps.ISR)
			}
		}
		return nil
	})
	var moved []int32
	for p := range int32(3) {
		ps, _ := nodes[1].partitionInfo("elect", p)
		if ps.Replicas[0] == 1 {
			moved = append(moved, p)
			if ps.Leader == 1 {
				t.Fatalf("partition %d: broker 1 leads again with rebalancing off", p)
			}
		}
	}
	if len(moved) != 1 {
		t.Fatalf("broker 1 is the preferred replica of partitions %v; want one", moved)
	}
	adm := kadm.NewClient(testClient(t, nodes[1].b))
	ctx := testCtx(t)
	// Over all partitions (null topics): only the one that moves is listed.
	res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res["elect"]) != 1 {
		t.Fatalf("election over all partitions answered %v; want partition %d of elect only", res, moved[0])
	}
	if r, ok := res["elect"][moved[0]]; !ok || r.Err != nil {
		t.Fatalf("partition %d: %+v; want elected", moved[0], r)
	}
	waitPreferred(t, nodes[1], "elect", 3, 3)

	// Named partitions: each led by its preferred replica now.
	res, err = adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, kadm.TopicsSet{"elect": {0: {}, 1: {}, 2: {}}, "nope": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if r := res["elect"][p]; !errors.Is(r.Err, kerr.ElectionNotNeeded) {
			t.Errorf("partition %d: %v (%s); want ELECTION_NOT_NEEDED", p, r.Err, r.ErrMessage)
		}
	}
	if r := res["nope"][0]; !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("unknown topic: %v; want UNKNOWN_TOPIC_OR_PARTITION", r.Err)
	}
	res, err = adm.ElectLeaders(context.Background(), kadm.ElectLiveReplica, kadm.TopicsSet{"elect": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := res["elect"][0]; !errors.Is(r.Err, kerr.ElectionNotNeeded) {
		t.Errorf("unclean election of a led partition: %v; want ELECTION_NOT_NEEDED", r.Err)
	}
}

// CreateTopics answers once every live broker serves the new topic: a
// client told it exists may ask any broker next, and one answering
// UNKNOWN_TOPIC_OR_PARTITION sends franz-go or librdkafka into a metadata
// backoff of seconds (the first acks=all writes to a fresh topic then wait
// that long). Here broker 3 applies changes only a second after they commit;
// the moment CreateTopics answers, it lists the topic with every partition
// led.
func TestCreateTopicsWaitsForEveryBroker(t *testing.T) {
	nodes := testCluster(t, 3, nil)
	hold := make(chan struct{})
	nodes[2].b.reconcileHold.Store(&hold)
	go func() {
		time.Sleep(time.Second)
		nodes[2].b.reconcileHold.Store(nil)
		close(hold)
	}()
	// Sent to broker 1 itself (an admin client would pick the controller).
	first, err := kgo.NewClient(kgo.SeedBrokers(nodes[0].b.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "everywhere", 4, 3
	create.Topics = append(create.Topics, ct)
	create.TimeoutMillis = 30000
	began := time.Now()
	cresp, err := first.SeedBrokers()[0].Request(testCtx(t), create)
	if err != nil {
		t.Fatal(err)
	}
	if code := cresp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode; code != 0 {
		t.Fatalf("CreateTopics: %v", kerr.ErrorForCode(code))
	}
	t.Logf("CreateTopics answered after %v", time.Since(began))
	pinned, err := kgo.NewClient(kgo.SeedBrokers(nodes[2].b.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("everywhere")}}
	resp, err := pinned.SeedBrokers()[0].Request(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	mt := resp.(*kmsg.MetadataResponse).Topics
	if len(mt) != 1 || mt[0].ErrorCode != 0 || len(mt[0].Partitions) != 4 {
		t.Fatalf("broker 3 right after CreateTopics answered: %+v; want the topic with 4 partitions", mt)
	}
	for _, p := range mt[0].Partitions {
		if p.ErrorCode != 0 || p.Leader < 0 {
			t.Fatalf("broker 3: partition %d error %d leader %d", p.Partition, p.ErrorCode, p.Leader)
		}
	}
}

// A broker that has not created a topic locally yet (a restarted or wiped
// broker catching up) answers a produce to it NOT_LEADER_OR_FOLLOWER, not
// UNKNOWN_TOPIC_OR_PARTITION: the topic exists in the cluster, and clients
// give up on records after a few unknown-topic answers but follow a
// leadership change as long as it takes.
func TestProduceToBrokerCatchingUpIsNotLeader(t *testing.T) {
	nodes := testCluster(t, 3, nil)
	hold := make(chan struct{})
	nodes[2].b.reconcileHold.Store(&hold)
	defer func() {
		nodes[2].b.reconcileHold.Store(nil)
		close(hold)
	}()
	if _, err := nodes[0].b.createTopic("catching-up", 1, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	id := nodes[0].b.ctl.State().Topics["catching-up"].ID
	produce := func(name string, topicID [16]byte, maxVersions *kversion.Versions) int16 {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(nodes[2].b.Addr().String()), kgo.MaxVersions(maxVersions))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = name, topicID
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = makeRecordBatch(seqRecords(0, 1, 1))
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := cl.SeedBrokers()[0].Request(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	for _, tc := range []struct {
		name     string
		topic    string
		id       [16]byte
		versions *kversion.Versions
		want     *kerr.Error
	}{
		{"by name", "catching-up", [16]byte{}, kversion.V3_5_0(), kerr.NotLeaderForPartition},
		{"by ID", "", [16]byte(id), kversion.Stable(), kerr.NotLeaderForPartition},
		{"a topic the cluster lacks, by name", "never-created", [16]byte{}, kversion.V3_5_0(), kerr.UnknownTopicOrPartition},
		{"a topic the cluster lacks, by ID", "", [16]byte{1}, kversion.Stable(), kerr.UnknownTopicID},
	} {
		if code := produce(tc.topic, tc.id, tc.versions); code != tc.want.Code {
			t.Errorf("produce %s to a broker that has not created the topic yet: %v; want %v", tc.name, kerr.ErrorForCode(code), tc.want)
		}
	}
}
