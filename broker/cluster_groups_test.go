package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
	"github.com/chronik-go/chronik/replication"
)

// findCoordinator asks who coordinates group name.
func findCoordinator(t *testing.T, cl *kgo.Client, name string) (int32, error) {
	t.Helper()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey = name
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return -1, err
	}
	if resp.ErrorCode != 0 {
		return -1, fmt.Errorf("find coordinator: error code %d", resp.ErrorCode)
	}
	return resp.NodeID, nil
}

// Committed offsets survive the loss of the group's coordinator: they live
// in a replicated __consumer_offsets, and the new leader of the group's
// partition serves them.
func TestGroupOffsetsSurviveCoordinatorLoss(t *testing.T) {
	nodes := testCluster(t, 3, func(i int, c *Config) {
		c.MinInsyncReplicas = 2
	})
	if _, err := nodes[0].b.createTopic("src", 3, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.b.Addr().String())
	}
	waitFor(t, 10*time.Second, func() error {
		for _, nd := range nodes {
			if nd.b.lookupTopic("src") == nil {
				return fmt.Errorf("node %d has not applied the topic", nd.cfg.NodeID)
			}
		}
		return nil
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	const name = "survivor"
	commit := func(at int64) {
		t.Helper()
		os := kadm.Offsets{}
		for p := int32(0); p < 3; p++ {
			os.Add(kadm.Offset{Topic: "src", Partition: p, At: at + int64(p), LeaderEpoch: -1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := adm.CommitOffsets(ctx, name, os)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("commit %d: %v", at, err)
		}
	}
	check := func(adm *kadm.Client, at int64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var fetched kadm.OffsetResponses
		waitFor(t, 20*time.Second, func() error {
			var err error
			fetched, err = adm.FetchOffsets(ctx, name)
			if err == nil {
				err = fetched.Error()
			}
			return err
		})
		for p := int32(0); p < 3; p++ {
			o, ok := fetched.Lookup("src", p)
			if !ok || o.At != at+int64(p) {
				t.Fatalf("partition %d: committed %+v, want %d", p, o, at+int64(p))
			}
		}
	}
	commit(100)
	coord, err := findCoordinator(t, cl, name)
	if err != nil {
		t.Fatal(err)
	}
	ti := nodes[0].b.ctl.State().Topics[offsetsTopic]
	if ti == nil || len(ti.Partitions) != 50 || len(ti.Partitions[0].Replicas) != 3 {
		t.Fatalf("%s in the controller: %+v", offsetsTopic, ti)
	}
	if lead := ti.Partitions[group.Partition(name, 50)].Leader; lead != coord {
		t.Fatalf("FindCoordinator says %d, the group's partition is led by %d", coord, lead)
	}
	dead := nodes[coord-1]
	stopNodes(dead)
	killed := time.Now()
	var live []string
	for _, nd := range nodes {
		if nd != dead {
			live = append(live, nd.b.Addr().String())
		}
	}
	lcl, err := kgo.NewClient(kgo.SeedBrokers(live...))
	if err != nil {
		t.Fatal(err)
	}
	defer lcl.Close()
	waitFor(t, 20*time.Second, func() error {
		now, err := findCoordinator(t, lcl, name)
		if err == nil && now == coord {
			err = fmt.Errorf("still the stopped broker %d", coord)
		}
		return err
	})
	t.Logf("a new coordinator %v after the old one stopped", time.Since(killed).Round(time.Millisecond))
	// Each broker applies the controller's log at its own pace; one that
	// has not applied the fence yet still names the stopped coordinator,
	// and franz-go pins a client's group requests to what it first heard.
	waitFor(t, 5*time.Second, func() error {
		for _, nd := range nodes {
			if nd == dead {
				continue
			}
			ti := nd.b.ctl.State().Topics[offsetsTopic]
			if lead := ti.Partitions[group.Partition(name, 50)].Leader; lead == coord {
				return fmt.Errorf("broker %d still has %d leading the group's partition", nd.b.cfg.NodeID, coord)
			}
		}
		return nil
	})
	// A client that knew the old coordinator, or learned the brokers
	// before it was fenced, may keep dialing it for its retry timeout
	// (franz-go pins sharded group requests to the broker ID); a new
	// client, as a new member would, asks afresh.
	fresh, err := kgo.NewClient(kgo.SeedBrokers(live...))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	check(kadm.NewClient(fresh), 100)
	t.Logf("committed offsets served by the new coordinator %v after the old one stopped", time.Since(killed).Round(time.Millisecond))
	// The old client may ask a broker that has not applied the fence yet
	// (each applies the controller's log at its own pace): it learns the
	// new coordinator once that broker has.
	waitFor(t, 5*time.Second, func() error {
		if now, err := findCoordinator(t, cl, name); err != nil || now == coord {
			return fmt.Errorf("coordinator after the loss: %d, %v (was %d)", now, err, coord)
		}
		return nil
	})
	commit(200)
	dead.restart(t, nil)
	check(adm, 200)
}

// __consumer_offsets created with fewer replicas than
// offsets.topic.replication.factor (a lookup while one broker was live) is
// raised to it by the controller's leader once the brokers are there.
func TestOffsetsReplicationRaised(t *testing.T) {
	nodes := testCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := nodes[0].b.ctl.Propose(ctx, &replication.Request{CreateTopic: &replication.CreateTopicRequest{
		Name: offsetsTopic, ID: newTopicID(), Partitions: 6, ReplicationFactor: 1, Configs: offsetsTopicConfigs(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		ti := nodes[0].b.ctl.State().Topics[offsetsTopic]
		for i, ps := range ti.Partitions {
			if len(ps.Replicas) != 3 || len(ps.ISR) != 3 || len(ps.Adding) > 0 {
				return fmt.Errorf("partition %d: replicas %v isr %v adding %v", i, ps.Replicas, ps.ISR, ps.Adding)
			}
		}
		return nil
	})
}

// A NOT_COORDINATOR answer to an OffsetCommit v10, which names topics by
// ID, names them by ID too: a client cannot match a nameless, ID-less topic.
func TestNotCoordinatorOffsetCommitKeepsTopicIDs(t *testing.T) {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 10
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.TopicID = [16]byte{1, 2, 3}
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition = 4
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := notCoordinatorResponse(req, kerr.NotCoordinator).(*kmsg.OffsetCommitResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].TopicID != rt.TopicID ||
		len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("answer %+v: want topic %x, partition 4 NOT_COORDINATOR", resp.Topics, rt.TopicID)
	}
}
