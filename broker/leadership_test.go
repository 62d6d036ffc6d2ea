package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/tier3"
)

// A broker whose write-ahead log fails for good (an fsync error) gives up
// the partitions it leads: it fences itself, another replica leads, and
// acks=all produces go on there. Before, it kept leading partitions it
// could no longer write: every produce failed until an operator noticed.
func TestWALFailureGivesUpLeadership(t *testing.T) {
	fss := make([]*vfs.ErrorFS, 3)
	nodes := testCluster(t, 3, func(i int, c *Config) {
		fss[i] = vfs.NewErrorFS(vfs.Default)
		c.FS = fss[i]
	})
	if _, err := nodes[0].b.createTopic("w", 1, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	var leader int32
	waitFor(t, 10*time.Second, func() error {
		pi, ok := nodes[0].partitionInfo("w", 0)
		if !ok || len(pi.ISR) != 3 {
			return fmt.Errorf("partition not ready: %+v", pi)
		}
		leader = pi.Leader
		return nil
	})
	ln := nodes[leader-1]
	walDir := filepath.Join(ln.dir, "wal") + string(filepath.Separator)
	fss[leader-1].SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync && strings.HasPrefix(path, walDir) {
			return syscall.EIO
		}
		return nil
	})
	p := ln.b.lookupTopic("w").partitions[0]
	out, _ := p.append(context.Background(), ln.b.wal, makeRecordBatch(seqRecords(0, 3, 1000)), readBatchHeader(makeRecordBatch(seqRecords(0, 3, 1000))), false)
	if out.err == nil {
		<-out.wait.done
	}
	waitFor(t, 15*time.Second, func() error {
		for _, nd := range nodes {
			if nd == ln {
				continue
			}
			pi, _ := nd.partitionInfo("w", 0)
			st := nd.b.ctl.State()
			if pi.Leader == leader || pi.Leader < 1 || st.Live(leader) {
				return fmt.Errorf("node %d: leader %d, broker %d live %v", nd.cfg.NodeID, pi.Leader, leader, st.Live(leader))
			}
		}
		return nil
	})
	if err := ln.b.Ready(); err == nil || !strings.Contains(err.Error(), "write-ahead log failed") {
		t.Fatalf("the failed broker's readiness: %v", err)
	}
	var seeds []string
	for _, nd := range nodes {
		if nd != ln {
			seeds = append(seeds, nd.b.Addr().String())
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("w"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("acks=all produce after the leader's WAL failed: %v", err)
	}
}

// stopNodes closes the brokers of nodes, the way they would go down.
func stopNodes(nodes ...*testNode) {
	for _, nd := range nodes {
		nd.b.Close()
	}
}

// The last in-sync replica comes back with an empty data directory: it is
// not elected (it holds nothing), the partition stays without a leader
// rather than serving an empty log over what the other replicas hold, and
// unclean.leader.election.enable then elects a replica that holds data.
// Before, the returning broker was elected leader with an empty log.
func TestWipedLastISRMemberIsNotElected(t *testing.T) {
	nodes := testCluster(t, 3, nil)
	if _, err := nodes[0].b.createTopic("last", 1, 2, nil, false); err != nil {
		t.Fatal(err)
	}
	var pi0 replication.PartitionInfo
	waitFor(t, 10*time.Second, func() error {
		pi0, _ = nodes[0].partitionInfo("last", 0)
		if len(pi0.ISR) != 2 {
			return fmt.Errorf("ISR %v", pi0.ISR)
		}
		return nil
	})
	leader := pi0.Leader
	ln := nodes[leader-1]
	var follower *testNode
	for _, r := range pi0.Replicas {
		if r != leader {
			follower = nodes[r-1]
		}
	}
	p := ln.b.lookupTopic("last").partitions[0]
	for i := 0; i < 10; i++ {
		appendDurable(t, ln.b, p, makeRecordBatch(seqRecords(3*i, 3, 1000)))
	}
	waitFor(t, 10*time.Second, func() error { // the follower holds them
		if _, hw := p.offsets(); hw != 30 {
			return fmt.Errorf("high watermark %d", hw)
		}
		return nil
	})
	// The follower goes down and comes back: the leader is the ISR's last
	// member for a while (its follower catches up only under replica lag).
	follower.b.Close()
	waitFor(t, 15*time.Second, func() error {
		if pi, _ := ln.partitionInfo("last", 0); len(pi.ISR) != 1 {
			return fmt.Errorf("ISR %v", pi.ISR)
		}
		return nil
	})
	// Then the leader dies and returns with an empty data directory before
	// the follower is back in the ISR.
	ln.b.Close()
	follower.restart(t, nil)
	ln.dir = t.TempDir()
	ln.restart(t, func(c *Config) { c.DataDir = ln.dir })
	watcher := nodes[0]
	for _, nd := range nodes {
		if nd != ln && nd != follower {
			watcher = nd
		}
	}
	waitFor(t, 20*time.Second, func() error {
		for _, nd := range nodes {
			if !nd.b.ctl.Current() {
				return fmt.Errorf("node %d not current", nd.cfg.NodeID)
			}
		}
		pi, _ := watcher.partitionInfo("last", 0)
		if pi.Leader != -1 || len(pi.ISR) != 0 {
			return fmt.Errorf("partition after the wiped leader returned: leader %d ISR %v; want no leader, empty ISR", pi.Leader, pi.ISR)
		}
		return nil
	})
	time.Sleep(time.Second) // the controller would elect within a few heartbeats
	if pi, _ := watcher.partitionInfo("last", 0); pi.Leader != -1 {
		t.Fatalf("a leader was elected without unclean.leader.election.enable: %+v", pi)
	}

	// Opting in elects the replica that holds the records, not the empty
	// one, and it serves them.
	b := watcher.b
	b.adminMu.Lock()
	err := b.setTopicConfigsLocked(b.lookupTopic("last"), map[string]string{"unclean.leader.election.enable": "true"})
	b.adminMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		if pi, _ := watcher.partitionInfo("last", 0); pi.Leader != follower.cfg.NodeID {
			return fmt.Errorf("leader %d; want %d, the replica with the data", pi.Leader, follower.cfg.NodeID)
		}
		return nil
	})
	fp := follower.b.lookupTopic("last").partitions[0]
	waitFor(t, 10*time.Second, func() error {
		if _, hw := fp.offsets(); hw != 30 {
			return fmt.Errorf("high watermark %d", hw)
		}
		return nil
	})
	checkRecords(t, readAllRecords(t, follower.b, fp, 1<<20), 30)
}

// A follower whose disk was replaced starts its log at the leader's local
// log start instead of copying the archive through the leader: the leader
// answers OFFSET_MOVED_TO_TIERED_STORAGE below it (KIP-405). The follower
// rejoins the ISR, and once it leads it serves every offset, the archived
// ones from the archive.
func TestWipedFollowerStartsAtLeadersLocalLog(t *testing.T) {
	store := tier3.NewMemStore()
	nodes := testCluster(t, 3, func(i int, c *Config) { tier3Config(store)(c) })
	configs := map[string]*string{}
	for k, v := range map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1", "min.insync.replicas": "1"} {
		configs[k] = &v
	}
	if _, err := nodes[0].b.createTopic("tiered", 1, 3, configs, false); err != nil {
		t.Fatal(err)
	}
	var pi replication.PartitionInfo
	waitFor(t, 10*time.Second, func() error {
		pi, _ = nodes[0].partitionInfo("tiered", 0)
		if len(pi.ISR) != 3 {
			return fmt.Errorf("ISR %v", pi.ISR)
		}
		return nil
	})
	ln := nodes[pi.Leader-1]
	var f *testNode
	for _, nd := range nodes {
		if nd != ln {
			f = nd
		}
	}
	p := ln.b.lookupTopic("tiered").partitions[0]
	for i := 0; i < 200; i++ {
		appendDurable(t, ln.b, p, makeRecordBatch(seqRecords(3*i, 3, 1000)))
	}
	waitFor(t, 20*time.Second, func() error {
		ln.b.clean(time.Now())
		if local := p.localStart(); local < 300 {
			return fmt.Errorf("leader's local log starts at %d", local)
		}
		return nil
	})
	localStart := p.localStart()

	f.b.Close()
	f.dir = t.TempDir()
	f.restart(t, func(c *Config) { c.DataDir = f.dir })
	var fp *partition
	waitFor(t, 30*time.Second, func() error {
		if t := f.b.lookupTopic("tiered"); t != nil {
			fp = t.partitions[0]
		}
		if fp == nil {
			return fmt.Errorf("the wiped follower has no topic yet")
		}
		if _, hw := fp.offsets(); hw < 600 {
			return fmt.Errorf("the wiped follower's high watermark is %d", hw)
		}
		if pi, _ := ln.partitionInfo("tiered", 0); len(pi.ISR) != 3 {
			return fmt.Errorf("ISR %v", pi.ISR)
		}
		return nil
	})
	if got, want := f.b.wal.Stats().Appends, uint64(600-localStart)/3; got > want {
		t.Fatalf("the wiped follower appended %d batches; the leader's local log holds %d: it copied the archive", got, want)
	}
	if ls, _ := fp.offsets(); ls != 0 {
		t.Fatalf("the follower's log start moved to %d", ls)
	}
	// It serves the whole log, the archived offsets from the archive.
	waitArchLoaded(t, fp)
	checkRecords(t, readAllTiered(t, f.b, fp, 1<<20), 600)
}

// stalledFollower makes a 3-broker cluster with topic (one partition,
// replication factor 2, min.insync.replicas 2) whose follower's WAL stops
// completing, so it fetches but holds nothing, and appends 3 records on
// the leader: only a follower fetch that is taken at its word can move
// the high watermark past baseOffset.
func stalledFollower(t *testing.T, topic string) (ln *testNode, pi replication.PartitionInfo, follower int32, p *partition, baseOffset int64) {
	t.Helper()
	fss := make([]*vfs.ErrorFS, 3)
	nodes := testCluster(t, 3, func(i int, c *Config) {
		fss[i] = vfs.NewErrorFS(vfs.Default)
		c.FS = fss[i]
	})
	configs := map[string]*string{"min.insync.replicas": kmsg.StringPtr("2")}
	if _, err := nodes[0].b.createTopic(topic, 1, 2, configs, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() error {
		pi, _ = nodes[0].partitionInfo(topic, 0)
		if len(pi.ISR) != 2 {
			return fmt.Errorf("ISR %v", pi.ISR)
		}
		return nil
	})
	ln = nodes[pi.Leader-1]
	for _, r := range pi.Replicas {
		if r != pi.Leader {
			follower = r
		}
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	walDir := filepath.Join(nodes[follower-1].dir, "wal") + string(filepath.Separator)
	fss[follower-1].SetHook(func(op vfs.Op, path string) error {
		if op == vfs.OpSync && strings.HasPrefix(path, walDir) {
			<-release
		}
		return nil
	})
	p = ln.b.lookupTopic(topic).partitions[0]
	batch := makeRecordBatch(seqRecords(0, 3, time.Now().UnixMilli()))
	out, _ := p.append(context.Background(), ln.b.wal, batch, readBatchHeader(batch), false)
	if out.err != nil {
		t.Fatal(out.err)
	}
	<-out.wait.done
	return ln, pi, follower, p, out.baseOffset
}

// A client that claims a follower's broker ID in its fetches (Fetch's
// ReplicaState) does not move the leader's high watermark: without that
// broker's epoch (KIP-903) it is answered STALE_BROKER_EPOCH. Before, its fetch
// offset counted as the follower's progress, and an acks=all produce was
// acknowledged while the real follower had not written it.
func TestSpoofedReplicaFetchMovesNothing(t *testing.T) {
	ln, pi, follower, p, base := stalledFollower(t, "spoof")
	acked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		acked <- p.replicationWait(ctx, base+3, pi.LeaderEpoch)
	}()

	// A client claims to be the follower, at the leader's end.
	cl := testClient(t, ln.b)
	for i := 0; i < 10; i++ {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaState.ID, req.ReplicaState.Epoch, req.ReplicaID = follower, -1, follower
		req.MaxWaitMillis = 0
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "spoof", p.topic.id
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.CurrentLeaderEpoch, rp.PartitionMaxBytes = 0, base+3, -1, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := cl.Request(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if code := resp.(*kmsg.FetchResponse).ErrorCode; code != kerr.StaleBrokerEpoch.Code {
			t.Fatalf("spoofed follower fetch answered %v; want STALE_BROKER_EPOCH", kerr.ErrorForCode(code))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, hw := p.offsets(); hw > base {
		t.Fatalf("the high watermark moved to %d on a spoofed follower fetch; the follower holds nothing past %d", hw, base)
	}
	select {
	case err := <-acked:
		if err == nil {
			t.Fatal("acks=all was answered with one copy, on a spoofed follower fetch")
		}
	case <-time.After(time.Second):
	}
}
