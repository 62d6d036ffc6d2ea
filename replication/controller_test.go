package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// quorumConfigs returns the configs of an n-node quorum on free local
// ports, with fast timings.
func quorumConfigs(t *testing.T, n int) []Config {
	t.Helper()
	addrs := freeAddrs(t, n)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: int32(i + 1), Addr: a})
	}
	var cfgs []Config
	for i := range addrs {
		cfgs = append(cfgs, Config{NodeID: int32(i + 1), BindAddr: addrs[i], Peers: peers, Dir: t.TempDir(),
			HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: 500 * time.Millisecond,
			RaftHeartbeatTimeout: 300 * time.Millisecond, RaftElectionTimeout: 300 * time.Millisecond})
	}
	return cfgs
}

func startQuorum(t *testing.T, n int, tune ...func(*Config)) ([]*Controller, []Config) {
	t.Helper()
	cfgs := quorumConfigs(t, n)
	var cs []*Controller
	for i := range cfgs {
		for _, f := range tune {
			f(&cfgs[i])
		}
		c, err := Open(cfgs[i])
		if err != nil {
			t.Fatal(err)
		}
		c.Start(BrokerInfo{Host: "127.0.0.1", Port: int32(9000 + i)})
		cs = append(cs, c)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs, cfgs
}

// waitAllLive waits until every node sees every broker live and holds a
// current lease.
func waitAllLive(t *testing.T, cs []*Controller) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d live brokers on every node", len(cs)), func() bool {
		for _, c := range cs {
			if len(c.State().LiveBrokers()) != len(cs) || !c.Current() {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQuorumProposesFromAnyNodeAndFencesTheSilent(t *testing.T) {
	cs, _ := startQuorum(t, 3)
	waitAllLive(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, c := range cs {
		name := fmt.Sprintf("topic-%d", i)
		if _, err := c.Propose(ctx, &Request{CreateTopic: &CreateTopicRequest{Name: name, ID: TopicID{byte(i + 1)}, Partitions: 3, ReplicationFactor: 3}}); err != nil {
			t.Fatalf("create through node %d: %v", i+1, err)
		}
		// Propose returns once this node applied it.
		if c.State().Topics[name] == nil {
			t.Fatalf("node %d does not see its own topic", i+1)
		}
	}
	_, err := cs[1].Propose(ctx, &Request{CreateTopic: &CreateTopicRequest{Name: "topic-0", ID: TopicID{42}, Partitions: 1, ReplicationFactor: 1}})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeTopicAlreadyExists {
		t.Fatalf("duplicate create: %v, want TOPIC_ALREADY_EXISTS", err)
	}

	// Stop the controller leader's heartbeats and Raft without a
	// controlled shutdown, as a crash would.
	li := cs[0].LeaderID() - 1
	killed := cs[li]
	close(killed.closing)
	killed.wg.Wait()
	killed.raft.Shutdown().Error()
	killed.trans.Close()
	killed.mux.Close()
	killed.calls.close()
	killed.store.Close()
	killed.closeOnce.Do(func() {})

	other := cs[(li+1)%3]
	waitFor(t, "a new leader fencing the killed broker", func() bool {
		st := other.State()
		return other.LeaderID() != killed.cfg.NodeID && other.LeaderID() > 0 && st.Brokers[killed.cfg.NodeID].Fenced
	})
	st := other.State()
	for _, tp := range st.Topics {
		for _, p := range tp.Partitions {
			if p.Leader == killed.cfg.NodeID || p.Leader == -1 {
				t.Fatalf("partition %+v still led by the fenced broker or leaderless", p)
			}
		}
	}
	if _, err := other.Propose(ctx, &Request{CreateTopic: &CreateTopicRequest{Name: "after", ID: TopicID{99}, Partitions: 1, ReplicationFactor: 3}}); err == nil {
		t.Fatal("RF 3 with two live brokers was accepted")
	}
	if _, err := other.Propose(ctx, &Request{CreateTopic: &CreateTopicRequest{Name: "after", ID: TopicID{99}, Partitions: 1, ReplicationFactor: 2}}); err != nil {
		t.Fatalf("create after failover: %v", err)
	}
}

// Snapshots keep the Raft log bounded, and a node restarted from its
// directory restores the state from its snapshot and the log after it.
func TestSnapshotsBoundTheLogAndRestore(t *testing.T) {
	cs, cfgs := startQuorum(t, 3, func(c *Config) {
		c.SnapshotThreshold, c.SnapshotInterval = 16, 100*time.Millisecond
	})
	waitFor(t, "three live brokers", func() bool { return len(cs[0].State().LiveBrokers()) == 3 && cs[0].Current() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 100 {
		if _, err := cs[i%3].Propose(ctx, &Request{AllocProducerIDs: &AllocProducerIDs{Broker: 1, Count: 10}}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a snapshot and a trimmed log on every node", func() bool {
		for _, c := range cs {
			first, err := c.store.FirstIndex()
			if err != nil || first <= 1 || c.raft.Stats()["last_snapshot_index"] == "0" {
				return false
			}
		}
		return true
	})
	last, _ := cs[2].store.LastIndex()
	first, _ := cs[2].store.FirstIndex()
	if last-first > 3*16+16 {
		t.Errorf("log holds %d entries; snapshots should bound it near the threshold", last-first)
	}
	const want = 1 + 100*10
	waitFor(t, "node 3 to apply every allocation", func() bool { return cs[2].State().NextProducerID == want })

	// Restart node 3 (a follower or the leader, either way) from its dir.
	cs[2].Close()
	c, err := Open(cfgs[2])
	if err != nil {
		t.Fatal(err)
	}
	cs[2] = c
	c.Start(BrokerInfo{Host: "127.0.0.1", Port: 9002})
	waitFor(t, "the restarted node to restore and catch up", func() bool {
		return c.State().NextProducerID == want && c.Current()
	})
}
