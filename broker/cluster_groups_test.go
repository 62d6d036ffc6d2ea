package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The coordinator rule is Kafka's: Java's String.hashCode over UTF-16 code
// units, abs() with MinInt32 as 0, modulo the partition count.
func TestOffsetsPartitionIsKafkasRule(t *testing.T) {
	for _, c := range []struct {
		group string
		n     int
		want  int32
	}{
		{"hello", 50, 99162322 % 50},              // "hello".hashCode() = 99162322
		{"polygenelubricants", 50, 0},             // hashCode() = Integer.MIN_VALUE
		{"ü", 50, 252 % 50},                       // one UTF-16 unit, 0xFC
		{"😀", 50, 1772899 % 50},                   // a surrogate pair: 31*0xD83D + 0xDE00
		{"console-consumer-12345", 1, 0},          // one partition
		{"abcdefghijklmnop", 50, 2093879032 % 50}, // hashCode() = -2093879032
	} {
		if got := offsetsPartition(c.group, c.n); got != c.want {
			t.Errorf("offsetsPartition(%q, %d) = %d, want %d", c.group, c.n, got, c.want)
		}
	}
}

// findCoordinator asks node nd who coordinates group.
func findCoordinator(t *testing.T, cl *kgo.Client, group string) (int32, error) {
	t.Helper()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey = group
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
	const group = "survivor"
	commit := func(at int64) {
		t.Helper()
		os := kadm.Offsets{}
		for p := int32(0); p < 3; p++ {
			os.Add(kadm.Offset{Topic: "src", Partition: p, At: at + int64(p), LeaderEpoch: -1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := adm.CommitOffsets(ctx, group, os)
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
			fetched, err = adm.FetchOffsets(ctx, group)
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
	coord, err := findCoordinator(t, cl, group)
	if err != nil {
		t.Fatal(err)
	}
	ti := nodes[0].b.ctl.State().Topics[offsetsTopic]
	if ti == nil || len(ti.Partitions) != 50 || len(ti.Partitions[0].Replicas) != 3 {
		t.Fatalf("%s in the controller: %+v", offsetsTopic, ti)
	}
	if lead := ti.Partitions[offsetsPartition(group, 50)].Leader; lead != coord {
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
		now, err := findCoordinator(t, lcl, group)
		if err == nil && now == coord {
			err = fmt.Errorf("still the stopped broker %d", coord)
		}
		return err
	})
	t.Logf("a new coordinator %v after the old one stopped", time.Since(killed).Round(time.Millisecond))
	// A client that knew the old coordinator may keep dialing it for its
	// retry timeout (franz-go pins sharded group requests to the broker
	// ID); a new client, as a new member would, asks afresh.
	check(kadm.NewClient(lcl), 100)
	t.Logf("committed offsets served by the new coordinator %v after the old one stopped", time.Since(killed).Round(time.Millisecond))
	if now, err := findCoordinator(t, cl, group); err != nil || now == coord {
		t.Fatalf("coordinator after the loss: %d, %v (was %d)", now, err, coord)
	}
	commit(200)
	dead.restart(t, nil)
	check(adm, 200)
}
