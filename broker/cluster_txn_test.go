package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// findTxnCoordinator asks who coordinates transactional ID id.
func findTxnCoordinator(cl *kgo.Client, id string) (int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorKey, req.CoordinatorType = id, 1
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return -1, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return -1, err
	}
	return resp.NodeID, nil
}

// Transactions in a cluster: the coordinator is the leader of the ID's
// partition of __transaction_state, markers reach partitions other brokers
// lead, and when the coordinator stops the next leader of its partition
// takes the transactional ID over from its replica: the producer's epoch
// carries on, and read_committed readers see exactly the committed
// records.
func TestTransactionsSurviveCoordinatorLoss(t *testing.T) {
	nodes := testCluster(t, 3, func(i int, c *Config) {
		c.MinInsyncReplicas = 2
		c.TransactionStateLogNumPartitions = 6
	})
	if _, err := nodes[0].b.createTopic("ctx", 3, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.b.Addr().String())
	}
	waitFor(t, 10*time.Second, func() error {
		for _, nd := range nodes {
			if nd.b.lookupTopic("ctx") == nil {
				return fmt.Errorf("node %d has not applied the topic", nd.cfg.NodeID)
			}
		}
		return nil
	})
	const id = "cluster-txn"
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.TransactionalID(id), kgo.RetryTimeout(30 * time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(20 * time.Second)}
	p, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	runTxns(t, p, "ctx", 12, true, false)

	var coord int32
	waitFor(t, 10*time.Second, func() error {
		var err error
		coord, err = findTxnCoordinator(p, id)
		return err
	})
	dead := nodes[coord-1]
	stopNodes(dead)
	p.Close()
	var live []string
	var alive *testNode
	for _, nd := range nodes {
		if nd != dead {
			live, alive = append(live, nd.b.Addr().String()), nd
		}
	}
	waitFor(t, 20*time.Second, func() error {
		ti := alive.b.ctl.State().Topics[txnStateTopic]
		if ti == nil {
			return fmt.Errorf("no %s", txnStateTopic)
		}
		for i, ps := range ti.Partitions {
			if ps.Leader == coord || ps.Leader < 0 {
				return fmt.Errorf("%s partition %d still led by %d", txnStateTopic, i, ps.Leader)
			}
		}
		return nil
	})
	opts[0] = kgo.SeedBrokers(live...)
	p2, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	// The new coordinator's InitProducerId bumps the epoch it loaded.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round, commit := range []bool{true, false} {
		if err := p2.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			p2.Produce(ctx, &kgo.Record{Topic: "ctx", Partition: int32(i % 3), Value: fmt.Appendf(nil, "%d-%d", round+2, i)}, nil)
		}
		if err := p2.Flush(ctx); err != nil {
			t.Fatalf("after the coordinator stopped: flush: %v", err)
		}
		if err := p2.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("after the coordinator stopped: end: %v", err)
		}
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(live...), kgo.ConsumeTopics("ctx"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []string
	waitFor(t, 30*time.Second, func() error {
		pctx, pcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer pcancel()
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		if len(got) < 24 {
			return fmt.Errorf("read %d committed records, want 24", len(got))
		}
		return nil
	})
	if rounds := countRounds(got); len(got) != 24 || rounds["0"] != 12 || rounds["2"] != 12 {
		t.Fatalf("read_committed after the coordinator moved: %d records, rounds %v; want rounds 0 and 2 with 12 each", len(got), rounds)
	}
	dead.restart(t, nil)
}
