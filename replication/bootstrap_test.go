package replication

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// reopen closes node i, lets wipe change its directory, and opens it again
// with its config changed by tune.
func reopen(t *testing.T, cs []*Controller, cfgs []Config, i int, wipe bool, tune func(*Config)) {
	t.Helper()
	cs[i].Close()
	if wipe {
		if err := os.RemoveAll(cfgs[i].Dir); err != nil {
			t.Fatal(err)
		}
	}
	if tune != nil {
		tune(&cfgs[i])
	}
	c, err := Open(cfgs[i])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cs[i] = c
	c.Start(BrokerInfo{Host: "127.0.0.1", Port: int32(9000 + i)})
}

// Two of three nodes lose their Raft directories (replaced disks) and come
// back while the third, which holds the metadata, is down: they wait for
// it instead of forming a quorum, then join its quorum and get the
// metadata back. Before, the two bootstrapped a quorum of their own with an
// empty log (a new cluster ID, no topics) that every broker would have
// reconciled its topics against.
func TestWipedMajorityWaitsForTheNodeWithState(t *testing.T) {
	cs, cfgs := startQuorum(t, 3)
	waitAllLive(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cs[0].Propose(ctx, &Request{CreateTopic: &CreateTopicRequest{Name: "kept", ID: TopicID{7}, Partitions: 3, ReplicationFactor: 3}}); err != nil {
		t.Fatal(err)
	}
	id := cs[2].State().ClusterID
	waitFor(t, "node 3 to apply the topic", func() bool { return cs[2].State().Topics["kept"] != nil })
	for _, c := range cs {
		c.Close()
	}
	for i := range 2 {
		reopen(t, cs, cfgs, i, true, nil)
	}
	time.Sleep(3 * time.Second) // several probe rounds and election timeouts
	for i := range 2 {
		if st := cs[i].State(); cs[i].LeaderID() != -1 || st.ClusterID != "" {
			t.Fatalf("node %d formed a quorum without the node holding the metadata: leader %d, cluster %q, %d topics",
				i+1, cs[i].LeaderID(), st.ClusterID, len(st.Topics))
		}
	}
	reopen(t, cs, cfgs, 2, false, nil)
	waitAllLive(t, cs)
	for i, c := range cs {
		st := c.State()
		if st.Topics["kept"] == nil || st.ClusterID != id {
			t.Fatalf("node %d: cluster %q with %d topics; want cluster %s with topic kept", i+1, st.ClusterID, len(st.Topics), id)
		}
	}
}

// Every node lost its Raft directory but their data directories were
// members of a cluster: the quorum refuses to form an empty one over that
// data; started to recover, it forms one named after that cluster.
func TestLostQuorumRefusedThenRecovered(t *testing.T) {
	cs, cfgs := startQuorum(t, 3)
	waitAllLive(t, cs)
	id := cs[0].State().ClusterID
	for _, c := range cs {
		c.Close()
	}
	member := func(c *Config) { c.DataClusterID, c.DataMember = id, true }
	for i := range cs {
		reopen(t, cs, cfgs, i, true, member)
	}
	waitFor(t, "every node to refuse", func() bool {
		for _, c := range cs {
			if !errors.Is(c.Err(), ErrQuorumLost) {
				return false
			}
		}
		return true
	})
	if st := cs[0].State(); st.ClusterID != "" || cs[0].hasState() {
		t.Fatalf("a refusing node formed state: cluster %q", st.ClusterID)
	}

	for i := range cs {
		reopen(t, cs, cfgs, i, false, func(c *Config) { c.Recover = true })
	}
	waitAllLive(t, cs)
	if got := cs[1].State().ClusterID; got != id {
		t.Fatalf("recovered quorum named %q; want the cluster's %s", got, id)
	}
}

// A quorum formed over a standalone broker's data directory takes its
// cluster ID; data directories of two clusters never form one.
func TestClusterIDFromDataDirectories(t *testing.T) {
	cs, _ := startQuorum(t, 3, func(c *Config) {
		if c.NodeID == 2 {
			c.DataClusterID = "standalone-id"
		}
	})
	waitAllLive(t, cs)
	for i, c := range cs {
		if got := c.State().ClusterID; got != "standalone-id" {
			t.Fatalf("node %d: cluster %q; want the standalone broker's standalone-id", i+1, got)
		}
	}

	mixed, _ := startQuorum(t, 3, func(c *Config) {
		if c.NodeID != 3 {
			c.DataClusterID = "cluster-" + string(rune('a'+c.NodeID))
		}
	})
	waitFor(t, "the nodes to refuse mixed data directories", func() bool {
		for _, c := range mixed {
			if !errors.Is(c.Err(), ErrMixedClusters) {
				return false
			}
		}
		return true
	})
}

// A new quorum forms only once every voter has answered: two nodes of
// three started alone wait instead of forming a majority of their own.
func TestNewQuorumWaitsForEveryVoter(t *testing.T) {
	cfgs := quorumConfigs(t, 3)
	var cs []*Controller
	for i := range 2 {
		c, err := Open(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Start(BrokerInfo{Host: "127.0.0.1", Port: int32(9000 + i)})
		cs = append(cs, c)
	}
	time.Sleep(2 * time.Second) // several probe rounds and election timeouts
	for i, c := range cs {
		if c.hasState() || c.LeaderID() != -1 {
			t.Fatalf("node %d formed a quorum without node 3: state %v, leader %d", i+1, c.hasState(), c.LeaderID())
		}
	}
	c, err := Open(cfgs[2])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Start(BrokerInfo{Host: "127.0.0.1", Port: 9002})
	cs = append(cs, c)
	waitAllLive(t, cs)
}
