package cluster_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// leadersOf is who leads each partition of topic, and each partition's
// preferred replica (the first listed), as the broker cl is pinned to says
// (a broker just restarted may answer from its state before the restart
// until it has caught up).
func leadersOf(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) (leader, preferred map[int32]int32, isr map[int32]int) {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	leader, preferred, isr = map[int32]int32{}, map[int32]int32{}, map[int32]int{}
	for _, mt := range resp.(*kmsg.MetadataResponse).Topics {
		for _, p := range mt.Partitions {
			leader[p.Partition], isr[p.Partition] = p.Leader, len(p.ISR)
			if len(p.Replicas) > 0 {
				preferred[p.Partition] = p.Replicas[0]
			}
		}
	}
	return leader, preferred, isr
}

// balanceCluster starts three brokers with env, creates a topic of six
// partitions at RF 3 and returns the brokers and a client pinned to the
// second (the first is the one killed).
func balanceCluster(t *testing.T, topic string, env ...string) ([]*testharness.Broker, *kgo.Client) {
	t.Helper()
	bs := testharness.StartCluster(t, 3, testharness.Options{Env: env})
	cl, err := kgo.NewClient(kgo.SeedBrokers(bs[1].Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 6, 3, nil, topic); err != nil {
		t.Fatal(err)
	}
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		leader, preferred, _ := leadersOf(ctx, t, cl, topic)
		for p, l := range leader {
			if l != preferred[p] {
				return fmt.Errorf("partition %d led by %d, preferred %d", p, l, preferred[p])
			}
		}
		if len(leader) != 6 {
			return fmt.Errorf("%d partitions", len(leader))
		}
		return nil
	})
	return bs, cl
}

// killAndReturn SIGKILLs broker 1 and restarts it once producing to every
// partition of topic works without it (its partitions failed over). It
// returns how long the failover took.
func killAndReturn(t *testing.T, bs []*testharness.Broker, topic string) time.Duration {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bs[1].Addr(), bs[2].Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(0), kgo.ProduceRequestTimeout(2*time.Second),
		kgo.MetadataMinAge(50*time.Millisecond)) // the failover, not the client's metadata age, is measured
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	killed := time.Now()
	bs[0].Kill()
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for p := range int32(6) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("failover")}).FirstErr()
			cancel()
			if err != nil {
				return fmt.Errorf("partition %d: %v", p, err)
			}
		}
		return nil
	})
	failover := time.Since(killed)
	bs[0].Restart()
	return failover
}

// A leader SIGKILLed: its partitions fail over, and when it comes back the
// controller's imbalance check (every 2 s here; 300 s by default, as in
// Kafka) hands its preferred partitions back without anyone asking. The
// times are logged for docs/benchmarks.md; "chronik cluster elect-leaders
// --all" then has nothing to do.
func TestPreferredLeadersReturnAfterKill(t *testing.T) {
	const topic = "balance"
	bs, pinned := balanceCluster(t, topic, "CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS=2")
	failover := killAndReturn(t, bs, topic)
	restarted := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testharness.CheckFor(t, 45*time.Second, 50*time.Millisecond, func() error {
		leader, preferred, _ := leadersOf(ctx, t, pinned, topic)
		if len(leader) != 6 {
			return fmt.Errorf("metadata lists %d partitions", len(leader))
		}
		for p, l := range leader {
			if preferred[p] == 1 && l != 1 {
				return fmt.Errorf("partition %d led by %d; broker 1 is its preferred replica", p, l)
			}
		}
		return nil
	})
	t.Logf("failover after SIGKILL of a leader: %v; the restarted broker leads its preferred partitions again %v after its restart",
		failover.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	out, err := exec.Command(testharness.Binary(t), "cluster", "elect-leaders", "--all", "--brokers", bs[1].Addr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing to elect") {
		t.Fatalf("chronik cluster elect-leaders --all on a balanced cluster: %v\n%s", err, out)
	}
}

// With automatic rebalancing off, a restarted broker leads nothing until
// an operator runs "chronik cluster elect-leaders": it names the
// partitions it moved, and those already led by their preferred replica.
func TestElectLeadersCommand(t *testing.T) {
	const topic = "elect"
	bs, pinned := balanceCluster(t, topic, "CHRONIK_AUTO_LEADER_REBALANCE_ENABLE=false")
	killAndReturn(t, bs, topic)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Broker 1 back in every ISR.
	testharness.CheckFor(t, 45*time.Second, 50*time.Millisecond, func() error {
		_, _, isr := leadersOf(ctx, t, pinned, topic)
		if len(isr) != 6 {
			return fmt.Errorf("metadata lists %d partitions", len(isr))
		}
		for p, n := range isr {
			if n != 3 {
				return fmt.Errorf("partition %d has %d replicas in sync", p, n)
			}
		}
		return nil
	})
	leader, preferred, _ := leadersOf(ctx, t, pinned, topic)
	var mine []int32
	for p, l := range leader {
		if preferred[p] == 1 {
			mine = append(mine, p)
			if l == 1 {
				t.Fatalf("partition %d: broker 1 leads it again with rebalancing off", p)
			}
		}
	}
	out, err := exec.Command(testharness.Binary(t), "cluster", "elect-leaders", "--topic", topic, "--brokers", bs[1].Addr()).CombinedOutput()
	if err != nil {
		t.Fatalf("chronik cluster elect-leaders --topic %s: %v\n%s", topic, err, out)
	}
	t.Logf("chronik cluster elect-leaders --topic %s:\n%s", topic, out)
	if got := strings.Count(string(out), "elected"); got != len(mine) {
		t.Errorf("%d partitions reported elected; broker 1 is the preferred replica of %v", got, mine)
	}
	if got := strings.Count(string(out), "not needed"); got != 6-len(mine) {
		t.Errorf("%d partitions reported not needed; want %d", got, 6-len(mine))
	}
	// The broker that took the request answered once it applied the
	// election; the one pinned here follows shortly.
	testharness.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		leader, _, _ = leadersOf(ctx, t, pinned, topic)
		for _, p := range mine {
			if leader[p] != 1 {
				return fmt.Errorf("partition %d led by %d after the election; want 1", p, leader[p])
			}
		}
		return nil
	})
}
