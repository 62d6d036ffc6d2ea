package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// BenchmarkOffsetCommit measures fsynced OffsetCommits per second from many
// concurrent committers over TCP (8 connections, 32 committers per CPU),
// each committing one partition of its own group per request.
func BenchmarkOffsetCommit(b *testing.B) {
	br := groupBroker(b, b.TempDir())
	var clients [8]*kgo.Client
	for i := range clients {
		clients[i] = testClient(b, br)
	}
	groupCreateTopic(b, kadm.NewClient(clients[0]), "bench", 16)
	benchCommits(b, clients[:], br.lookupTopic("bench").id)
}

// BenchmarkOffsetCommitKfake is BenchmarkOffsetCommit against franz-go's
// in-memory kfake (one broker, nothing written to disk), for the ratio.
func BenchmarkOffsetCommitKfake(b *testing.B) {
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(16, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kf.Close)
	var clients [8]*kgo.Client
	for i := range clients {
		cl, err := kgo.NewClient(kgo.SeedBrokers(kf.ListenAddrs()...))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cl.Close)
		clients[i] = cl
	}
	md, err := kadm.NewClient(clients[0]).Metadata(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	benchCommits(b, clients[:], md.Topics["bench"].ID)
}

// BenchmarkOffsetCommitReplicated is BenchmarkOffsetCommit on a cluster of
// three brokers in this process: __consumer_offsets has 3 replicas and
// min.insync.replicas 2, so each commit is acknowledged once a follower
// has fsynced it too. The groups spread over the three coordinators; each
// client connects to all three.
func BenchmarkOffsetCommitReplicated(b *testing.B) {
	nodes := testCluster(b, 3, func(i int, c *Config) { c.MinInsyncReplicas = 2 })
	if _, err := nodes[0].b.createTopic("bench", 16, 3, nil, false); err != nil {
		b.Fatal(err)
	}
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.b.Addr().String())
	}
	var clients [8]*kgo.Client
	for i := range clients {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cl.Close)
		clients[i] = cl
	}
	var id [16]byte
	waitFor(b, 10*time.Second, func() error {
		for _, nd := range nodes {
			t := nd.b.lookupTopic("bench")
			if t == nil {
				return fmt.Errorf("node %d has not applied the topic", nd.cfg.NodeID)
			}
			id = t.id
		}
		return nil
	})
	// The first lookup creates __consumer_offsets; wait until every
	// partition has a leader that has loaded it.
	waitFor(b, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := kadm.NewClient(clients[0]).FetchOffsets(ctx, "warm-up")
		if err != nil {
			return err
		}
		ti := nodes[0].b.ctl.State().Topics[offsetsTopic]
		if ti == nil {
			return fmt.Errorf("%s not created yet", offsetsTopic)
		}
		for i, ps := range ti.Partitions {
			if len(ps.ISR) < 3 || ps.Leader < 1 {
				return fmt.Errorf("partition %d: %+v", i, ps)
			}
		}
		// The committers' groups (benchCommits names them) are served.
		for n := 1; n <= 256; n++ {
			name := fmt.Sprintf("bench-%d", n)
			leader := ti.Partitions[group.Partition(name, len(ti.Partitions))].Leader
			if err := nodes[leader-1].b.groups.Unavailable(name); err != nil {
				return fmt.Errorf("group %s: %v", name, err)
			}
		}
		return nil
	})
	benchCommits(b, clients[:], id)
}

// benchCommits runs 32 committers per CPU over clients, each committing one
// partition of topic "bench" (16 partitions) in its own group per request.
func benchCommits(b *testing.B, clients []*kgo.Client, topicID [16]byte) {
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		cl := clients[int(n)%len(clients)]
		group := fmt.Sprintf("bench-%d", n)
		ctx := context.Background()
		var off int64
		for pb.Next() {
			off++
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Group, req.Generation = group, -1
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = "bench", topicID
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = int32(n%16), off
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				b.Error(err)
				return
			}
			if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}

// BenchmarkRebalanceAfterLeave measures how long a 10-member
// cooperative-sticky group of franz-go clients (over TCP) takes to
// rebalance after one member leaves: from the start of its LeaveGroup
// (kgo's Close) until the group is Stable again and every remaining member
// has joined the new generation and received its assignment. Members learn
// of the rebalance from their next heartbeat, so the result is dominated by
// the heartbeat interval: 3s is Kafka's and kgo's default (kgo heartbeats
// cooperative members more often while it waits for a rebalance).
//
// protocol=consumer runs the same with KIP-848 (kgo.ServerSideBalancer):
// the time until every remaining member is at the new target epoch with
// its full target assignment; the broker's heartbeat interval is Kafka's
// default 5s, or 100ms.
func BenchmarkRebalanceAfterLeave(b *testing.B) {
	for _, hb := range []time.Duration{3 * time.Second, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("protocol=classic/heartbeat=%v", hb), func(b *testing.B) { benchRebalanceAfterLeave(b, false, hb) })
	}
	for _, hb := range []time.Duration{5 * time.Second, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("protocol=consumer/heartbeat=%v", hb), func(b *testing.B) { benchRebalanceAfterLeave(b, true, hb) })
	}
}

func benchRebalanceAfterLeave(b *testing.B, kip848 bool, heartbeat time.Duration) {
	const (
		members = 10
		group   = "rebalance"
		topic   = "rebalance"
	)
	br := testBroker(b, b.TempDir(), func(c *Config) {
		c.GroupInitialRebalanceDelay = 0
		c.GroupMinSessionTimeout = 500 * time.Millisecond
		c.ConsumerGroupHeartbeatInterval = heartbeat
		c.ConsumerGroupSessionTimeout = max(10*heartbeat, 45*time.Second)
	})
	groupCreateTopic(b, kadm.NewClient(testClient(b, br)), topic, 6*members)
	newMember := func() *kgo.Client {
		opts := []kgo.Opt{
			kgo.SeedBrokers(br.Addr().String()),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.HeartbeatInterval(heartbeat),
			kgo.SessionTimeout(max(10*heartbeat, 6*time.Second)),
		}
		if kip848 {
			opts = append(opts, kgo.ServerSideBalancer())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			b.Fatal(err)
		}
		return cl
	}
	// settled reports whether the group is Stable with want members and
	// every client is in its current generation (epoch).
	settled := func(cls []*kgo.Client, want int, after int32) (int32, bool) {
		st, gen, n := groupStatus(br, group)
		if kip848 {
			st, gen, n = consumerGroupStatus(br, group)
		}
		if st != "Stable" || n != want || gen <= after {
			return gen, false
		}
		for _, cl := range cls {
			if _, g := cl.GroupMetadata(); g != gen {
				return gen, false
			}
		}
		return gen, true
	}
	waitSettled := func(cls []*kgo.Client, want int, after int32) int32 {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if gen, ok := settled(cls, want, after); ok {
				return gen
			}
			if time.Now().After(deadline) {
				st, gen, n := groupStatus(br, group)
				b.Fatalf("group not settled with %d members after 60s: %v generation %d with %d members", want, st, gen, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	cls := make([]*kgo.Client, 0, members)
	for range members {
		cls = append(cls, newMember())
	}
	defer func() {
		for _, cl := range cls {
			cl.Close()
		}
	}()
	// A join into a cooperative group takes two rounds (revoke, then
	// assign): wait until no further round follows.
	waitQuiet := func(cls []*kgo.Client, want int, after int32) int32 {
		for {
			gen := waitSettled(cls, want, after)
			time.Sleep(2*heartbeat + 100*time.Millisecond)
			if g, ok := settled(cls, want, gen-1); ok && g == gen {
				return gen
			}
			after = gen
		}
	}
	gen := waitQuiet(cls, members, 0)

	var total time.Duration
	b.ResetTimer()
	for range b.N {
		leaving := cls[0]
		cls = cls[1:]
		start := time.Now()
		leaving.Close()
		gen = waitSettled(cls, members-1, gen)
		total += time.Since(start)

		b.StopTimer()
		cls = append(cls, newMember())
		gen = waitQuiet(cls, members, gen)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/rebalance")
}

// consumerGroupStatus is groupStatus for a KIP-848 group: Stable when every
// member is at the target epoch with its whole target assignment; the
// generation is the assignment epoch.
func consumerGroupStatus(b *Broker, name string) (state string, epoch int32, members int) {
	return b.groups.Status(name)
}
