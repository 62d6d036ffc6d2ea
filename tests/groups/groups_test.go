// Package groups_test runs consumer groups of real client processes against
// a real Chronik broker process while members join, leave (SIGTERM) and die
// (SIGKILL), and while the broker itself is killed and restarted, and checks
// that every record is processed and that duplicates stay within what the
// disrupted members had processed but not yet committed.
//
// TestCoordinatorFailover does the same against a cluster of three brokers
// while the broker coordinating the group is killed (and, in its wipe
// round, comes back with an empty data directory): the group must commit
// again through another broker within 10 s, and kadm and librdkafka's
// committed() must return every commit acknowledged before the kill while
// that broker is down.
//
// Members: franz-go through `chronik consume --group` (cooperative-sticky,
// and with --group-protocol consumer for KIP-848), and the sarama and
// confluent-kafka-go programs in ./saramaworker and ./confluentworker
// (cooperative-sticky; confluent also with KIP-848), built by the test. Each
// prints every record it processes and every commit that succeeded; the
// test paces the group by reading their stdout at a bounded rate, so the
// membership changes land mid-consumption.
//
//	go test ./tests/groups                       # about 7 minutes on 2 cores
//	go test ./tests/groups -run CoordinatorFailover  # about 3.5 of them
//	CHRONIK_GROUPS_RECORDS=200000 go test ./tests/groups -run Churn/franz
//	CHRONIK_FAILOVER_RECORDS=300000 go test ./tests/groups -run CoordinatorFailover/wipe/confluent
package groups_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const partitions = 6

// recordsFor is the topic size per client kind: 1,000,000 for every classic
// group client; fewer for KIP-848 runs, which wait out a 45 s session.
func recordsFor(t *testing.T, kind clientKind) int {
	if s := os.Getenv("CHRONIK_GROUPS_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			t.Fatalf("CHRONIK_GROUPS_RECORDS=%q: want a number of at least 1000", s)
		}
		return n
	}
	switch kind {
	case franz848, confluent848:
		// The broker's KIP-848 session timeout is Kafka's 45s: the
		// killed member's partitions wait that long.
		return 300_000
	}
	return 1_000_000
}

// setup starts a broker and fills a 6-partition topic with n 100-byte keyed
// records, returning the broker, an admin client and the end offsets.
func setup(t *testing.T, topic string, n int) (*testharness.Broker, *kadm.Client, map[int32]int64) {
	t.Helper()
	b := testharness.Start(t, testharness.Options{})
	cl, adm := producer(t, b.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	return b, adm, fill(t, cl, adm, topic, n)
}

// producer returns a client for filling topics through seeds, and an admin
// client on it, both closed when the test ends.
func producer(t *testing.T, seeds ...string) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, kadm.NewClient(cl)
}

// fill produces n 100-byte keyed records to topic (acks=all) and returns
// its end offsets.
func fill(t *testing.T, cl *kgo.Client, adm *kadm.Client, topic string, n int) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte("key-" + strconv.Itoa(i)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("produce: %v", err)
	}
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || listed.Error() != nil {
		t.Fatalf("list end offsets: %v %v", err, listed.Error())
	}
	ends := map[int32]int64{}
	var total int64
	listed.Each(func(o kadm.ListedOffset) {
		ends[o.Partition] = o.Offset
		total += o.Offset
	})
	if total != int64(n) {
		t.Fatalf("topic holds %d records, want %d", total, n)
	}
	t.Logf("produced %d records to %d partitions in %v", n, partitions, time.Since(start).Round(time.Millisecond))
	return ends
}

// waitProcessed waits until the group has processed at least n records and
// at least minGap has passed, so a rebalance has time to happen.
func waitProcessed(t *testing.T, g *group, n int64, minGap time.Duration) {
	t.Helper()
	since := time.Now()
	testharness.CheckFor(t, 90*time.Second, 50*time.Millisecond, func() error {
		if got := g.processed.Load(); got < n {
			return fmt.Errorf("group processed %d records, waiting for %d", got, n)
		}
		if time.Since(since) < minGap {
			return fmt.Errorf("waiting %v between membership changes", minGap)
		}
		return nil
	})
}

// finish lifts the pace, waits until every record was processed, then stops
// the remaining members cleanly.
func finish(t *testing.T, g *group, adm *kadm.Client, ends map[int32]int64) {
	t.Helper()
	g.pace.perMember.Store(0)
	err := testharness.Poll(90*time.Second, 250*time.Millisecond, func() error {
		if missing, where := g.coverage(ends); missing > 0 {
			return fmt.Errorf("%d records not processed yet (%s)", missing, where)
		}
		return nil
	})
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if dg, err := adm.DescribeGroups(ctx, g.name); err == nil {
			for _, d := range dg {
				t.Logf("group %s: state %s, %d members", d.Group, d.State, len(d.Members))
				for _, m := range d.Members {
					ca, _ := m.Assigned.AsConsumer()
					t.Logf("  member %s (%s): %+v", m.MemberID, m.ClientID, ca)
				}
			}
		}
		if off, err := adm.FetchOffsets(ctx, g.name); err == nil {
			t.Logf("committed: %v", off)
		}
		t.Fatal(err)
	}
	for _, m := range g.members {
		if m.running() {
			m.stop(t)
		}
	}
}

// TestGroupChurn: three cooperative-sticky members consume a 6-partition
// topic; then a fourth joins, one leaves (SIGTERM), one is killed (SIGKILL)
// (the one consuming fastest at that moment, so it owns partitions) and
// replacements join, all mid-consumption. Every record must be
// processed, and a record processed twice must have been processed first by
// the killed member after its last successful commit.
func TestGroupChurn(t *testing.T) {
	for _, kind := range []clientKind{franz, sarama, confluent, franz848, confluent848} {
		t.Run(string(kind), func(t *testing.T) {
			var worker string
			switch kind {
			case sarama:
				worker = workerBinary(t, sarama)
			case confluent, confluent848:
				worker = workerBinary(t, confluent)
			}
			n := recordsFor(t, kind)
			topic := "churn-" + string(kind)
			b, adm, ends := setup(t, topic, n)
			began := time.Now()
			pace := &pacer{}
			// Fast enough to finish in seconds, slow enough that the
			// membership changes below land mid-consumption.
			pace.perMember.Store(int64(max(n/60, 2000)))
			g := &group{t: t, kind: kind, addr: b.Addr(), topic: topic, name: "churn-" + string(kind), worker: worker, pace: pace}
			step := int64(n) / 8
			const gap = 4 * time.Second

			m1 := g.start()
			g.start()
			g.start()
			waitProcessed(t, g, step, gap)
			g.start()
			t.Logf("member joined at %d processed", g.processed.Load())
			waitProcessed(t, g, 2*step, gap)
			m1.stop(t)
			t.Logf("%s left (SIGTERM) at %d processed", m1.name, g.processed.Load())
			g.start()
			waitProcessed(t, g, 3*step, gap)
			victim, busy := g.busiest()
			victim.kill()
			t.Logf("%s killed (SIGKILL) at %d processed, after printing %d lines in half a second", victim.name, g.processed.Load(), busy)
			if busy == 0 {
				t.Logf("the group was idle when the member was killed: too few records for the membership changes to land mid-consumption")
			}
			g.start()
			waitProcessed(t, g, 4*step, 7*time.Second) // the classic session timeout (6s) must pass
			finish(t, g, adm, ends)

			v := g.verify(ends, func(m *member) bool { return m.killed.Load() })
			t.Logf("%s: %v in %v", kind, v, time.Since(began).Round(time.Millisecond))
			if v.missing > 0 {
				t.Errorf("%d records never processed", v.missing)
			}
			checkVerdict(t, v)
		})
	}
}

// TestGroupBrokerKill: three franz-go members consume while the broker is
// killed with SIGKILL and restarted on the same data directory. Every commit
// a member saw succeed before the kill is still there after the restart,
// the members resume from the committed offsets, and only records processed
// after a member's last successful commit are processed again.
func TestGroupBrokerKill(t *testing.T) {
	n := recordsFor(t, franz) / 4
	const topic = "brokerkill"
	b, adm, ends := setup(t, topic, n)
	began := time.Now()
	pace := &pacer{}
	pace.perMember.Store(int64(max(n/30, 2000)))
	g := &group{t: t, kind: franz, addr: b.Addr(), topic: topic, name: "brokerkill", pace: pace}
	for range 3 {
		g.start()
	}
	waitProcessed(t, g, int64(n)/3, 4*time.Second)

	b.Kill()
	// Every commit reported by now was acknowledged before the kill.
	acked := map[int32]int64{}
	for _, m := range g.members {
		m.mu.Lock()
		for _, e := range m.events {
			if e.commit {
				acked[e.partition] = max(acked[e.partition], e.offset)
			}
		}
		m.mu.Unlock()
	}
	b.Restart()
	t.Logf("broker killed and restarted at %d processed", g.processed.Load())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var fetched kadm.OffsetResponses
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		var err error
		fetched, err = adm.FetchOffsets(ctx, g.name) // the first try may meet the old connection
		return err
	})
	for p, want := range acked {
		got, _ := fetched.Lookup(topic, p)
		if got.At < want {
			t.Errorf("partition %d: committed offset %d after the restart, but a commit of %d was acknowledged before the kill", p, got.At, want)
		}
	}
	if len(acked) == 0 {
		t.Errorf("no commit was acknowledged before the broker kill")
	}
	t.Logf("commits acknowledged before the kill: %v; committed after restart: %v", acked, fetched)

	waitProcessed(t, g, int64(n)*2/3, 4*time.Second)
	finish(t, g, adm, ends)
	// The restart cost every member its membership: each may re-read what
	// it had processed but not committed when the broker died.
	v := g.verify(ends, func(*member) bool { return true })
	t.Logf("%v in %v", v, time.Since(began).Round(time.Millisecond))
	if v.missing > 0 {
		t.Errorf("%d records never processed", v.missing)
	}
	checkVerdict(t, v)
}

// checkVerdict fails the test on any violation, and states the bound:
// duplicates never exceed the disrupted members' uncommitted windows.
func checkVerdict(t *testing.T, v verdict) {
	t.Helper()
	var window int64
	for _, n := range v.window {
		window += n
	}
	if v.dups > window {
		t.Errorf("%d duplicates, more than the %d records disrupted members processed after their last commit", v.dups, window)
	}
	for _, s := range v.violations {
		t.Error(s)
	}
}
