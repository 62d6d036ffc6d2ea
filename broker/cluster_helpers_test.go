package broker

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/chronik-go/chronik/replication"
)

// testNode is one broker of an in-process cluster.
type testNode struct {
	b   *Broker
	dir string
	cfg Config
}

// testCluster starts n brokers in this process as one cluster on
// 127.0.0.1 (every node a controller voter), each in a data directory of
// its own, mod tuning node i's config (it may name another data
// directory), and waits until every broker is registered and current.
func testCluster(t testing.TB, n int, mod func(i int, c *Config)) []*testNode {
	t.Helper()
	var peers []replication.Peer
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, replication.Peer{ID: int32(i + 1), Addr: ln.Addr().String()})
		ln.Close()
	}
	nodes := make([]*testNode, n)
	for i := range n {
		nd := &testNode{dir: t.TempDir()}
		nodes[i] = nd
		nd.b = testBroker(t, nd.dir, func(c *Config) {
			tier2Config(c)
			c.NodeID = int32(i + 1)
			c.DefaultReplicationFactor = int16(n)
			c.Cluster = &ClusterConfig{RaftAddr: peers[i].Addr, Peers: peers,
				HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: 600 * time.Millisecond}
			c.ReplicaLagTimeMax = 2 * time.Second
			if mod != nil {
				mod(i, c)
			}
			nd.dir = c.DataDir
			nd.cfg = *c
		})
	}
	waitFor(t, 30*time.Second, func() error {
		for i, nd := range nodes {
			if err := nd.b.Ready(); err != nil {
				return fmt.Errorf("node %d: %v", i+1, err)
			}
			if got := len(nd.b.ctl.State().LiveBrokers()); got != n {
				return fmt.Errorf("node %d sees %d live brokers", i+1, got)
			}
		}
		return nil
	})
	return nodes
}

// restart closes the node's broker and starts it again on the same
// directory and addresses, with mod applied to its config.
func (nd *testNode) restart(t *testing.T, mod func(*Config)) {
	t.Helper()
	nd.b.Close()
	cfg := nd.cfg
	nd.b = testBroker(t, nd.dir, func(c *Config) {
		*c = cfg
		c.KafkaAddr = "127.0.0.1:0"
		if mod != nil {
			mod(c)
		}
	})
}

// partitionInfo is the controller's view of a partition, from node nd.
func (nd *testNode) partitionInfo(topic string, p int32) (replication.PartitionInfo, bool) {
	ti := nd.b.ctl.State().Topics[topic]
	if ti == nil || int(p) >= len(ti.Partitions) {
		return replication.PartitionInfo{}, false
	}
	return ti.Partitions[p], true
}
