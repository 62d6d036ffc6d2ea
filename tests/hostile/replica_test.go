package hostile_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// A client claiming to be a follower in its fetches. broker/replica.go
// (authenticReplica): a fetch whose ReplicaID or ReplicaState names a
// broker is a replica's only with that broker's registered broker epoch
// (KIP-903), which only the controller quorum and the brokers know; any
// other is answered STALE_BROKER_EPOCH and counted in
// chronik_replica_fetches_refused_total. So a spoofed fetch must never move
// a follower's position: not the high watermark, not the ISR.

const refusedMetric = "chronik_replica_fetches_refused_total"

// guessedEpochs are the broker epochs a spoofer tries: none (-1, what a
// fetch below v15 carries), small numbers (Kafka's broker epochs are
// controller log offsets) and a large one.
var guessedEpochs = []int64{-1, 0, 1, 2, 3, 100, 1 << 40}

// spoofer sends fetches claiming to come from broker as to leader.
type spoofer struct {
	c       *rawConn
	topic   string
	topicID [16]byte
	as      int32
	sent    int
	answers map[string]int
}

func newSpoofer(t *testing.T, su *suite, topic string, pi partitionInfo, as int32) *spoofer {
	c, err := dialRaw(su.broker(pi.leader).Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &spoofer{c: c, topic: topic, topicID: pi.topicID, as: as, answers: map[string]int{}}
}

// round sends one spoofed fetch at offset per guessed epoch, below v15
// (ReplicaID) and at v15 (ReplicaState).
func (s *spoofer) round(offset int64) error {
	for _, epoch := range guessedEpochs {
		for _, v := range []int16{11, 15} {
			if v < 15 && epoch != -1 {
				continue
			}
			resp, err := s.c.roundTrip(fetchReq(v, s.topic, s.topicID, 0, offset, 1<<20, s.as, epoch), 10*time.Second)
			if err != nil {
				return err
			}
			s.sent++
			key := "OK"
			fr := resp.(*kmsg.FetchResponse)
			switch {
			case fr.ErrorCode != 0:
				key = kerr.ErrorForCode(fr.ErrorCode).Error()
			case len(fr.Topics) == 1 && len(fr.Topics[0].Partitions) == 1 && fr.Topics[0].Partitions[0].ErrorCode != 0:
				key = kerr.ErrorForCode(fr.Topics[0].Partitions[0].ErrorCode).Error()
			}
			s.answers[key]++
		}
	}
	return nil
}

func refusedCount(t *testing.T, b *testharness.Broker) float64 {
	series, err := scrapeSeries(b.HTTPAddr(), refusedMetric)
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, v := range series {
		n += v
	}
	return n
}

func attackSpoofedReplica(t *testing.T, su *suite) string {
	cl := newClient(t, su.seeds, kgo.DefaultProduceTopic(spoofTopic), kgo.RequiredAcks(kgo.AllISRAcks()))
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	for i := range 20 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "spoof-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pi := waitFullISR(t, su, spoofTopic)
	follower := followerOf(pi)
	hw := endOffset(t, su, spoofTopic, 0)
	refusedBefore := refusedCount(t, su.broker(pi.leader))

	// Claim the follower is far behind (offset 0, which a trusted fetch
	// would take as the follower's end, dropping it from the ISR) and far
	// ahead (which would move the high watermark).
	sp := newSpoofer(t, su, spoofTopic, pi, follower)
	repeatFor(max(su.s.window, replicaLagTimeMax+2*time.Second), func() bool {
		for _, off := range []int64{0, hw, hw + 1000} {
			if err := sp.round(off); err != nil {
				t.Fatalf("spoofed fetch: %v", err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		return true
	})
	after := describe(t, su, spoofTopic, 0)
	if len(after.isr) != len(pi.replicas) {
		t.Errorf("ISR %v after fetches claiming broker %d was at offset 0; it was %v", after.isr, follower, pi.isr)
	}
	if end := endOffset(t, su, spoofTopic, 0); end != hw {
		t.Errorf("high watermark moved from %d to %d under spoofed fetches alone", hw, end)
	}
	stale := kerr.StaleBrokerEpoch.Error()
	for answer, n := range sp.answers {
		if answer != stale {
			t.Errorf("%d spoofed fetches answered %s; want every one %s", n, answer, stale)
		}
	}
	refused := refusedCount(t, su.broker(pi.leader)) - refusedBefore
	if refused < 1 {
		t.Errorf("%s on leader %d rose by %.0f after %d spoofed fetches; want them counted", refusedMetric, pi.leader, refused, sp.sent)
	}
	return fmt.Sprintf("%d fetches as broker %d to leader %d (%s): %.0f refused, ISR and HW %d kept", sp.sent, follower, pi.leader, fmtCounts(sp.answers), refused, hw)
}

// The stronger check: with the follower dead and min.insync.replicas 3,
// no acks=all produce may succeed, however hard a client claims to be that
// follower.
func attackSpoofedReplicaMinISR(t *testing.T, su *suite) string {
	pi := waitFullISR(t, su, spoofTopic)
	follower := followerOf(pi)
	hw := endOffset(t, su, spoofTopic, 0)
	fb := su.broker(follower)
	fb.Kill()
	su.smp.setPID(int(follower-1), 0)
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		alterMinISR(t, su, "2")
		fb.Restart()
		su.smp.setPID(int(follower-1), fb.PID())
		waitFullISR(t, su, spoofTopic)
		for p := range int32(3) {
			waitFullISRPartition(t, su, trafficTopic, p)
		}
	}
	defer restore()
	alterMinISR(t, su, "3")

	// Spoof from the moment the follower died, at every offset it could
	// be at, until the produces are answered.
	sp := newSpoofer(t, su, spoofTopic, pi, follower)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var spoofErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for off := hw; off <= hw+8 && ctx.Err() == nil; off++ {
				if err := sp.round(off); err != nil {
					spoofErr = err
					return
				}
			}
		}
	}()
	// Give the ISR its chance to shrink (it must: the follower is dead),
	// then produce; the spoofing goes on meanwhile.
	shrunk := testharness.Poll(replicaLagTimeMax+10*time.Second, 200*time.Millisecond, func() error {
		if p := describe(t, su, spoofTopic, 0); slices.Contains(p.isr, follower) {
			return fmt.Errorf("ISR %v still holds the dead broker %d", p.isr, follower)
		}
		return nil
	})
	if shrunk != nil {
		t.Errorf("the ISR kept dead broker %d under fetches claiming to be it: %v", follower, shrunk)
	}
	c, err := dialRaw(su.broker(pi.leader).Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var answers []string
	for i := range 3 {
		s := plainSpec(1, time.Now().UnixMilli())
		a, err := produceRaw(c, spoofTopic, 0, s.craft(seqRecords(1, fmt.Appendf(nil, "min-isr-%d", i))), -1)
		var ne interface{ Timeout() bool }
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			answers = append(answers, "no answer (timeout)")
		case err != nil:
			t.Fatalf("produce %d: %v", i, err)
		case a.err == nil:
			t.Errorf("acks=all produce %d answered OK at offset %d with broker %d dead and min.insync.replicas 3: acknowledged with fewer copies than min.insync.replicas", i, a.baseOffset, follower)
			answers = append(answers, "OK")
		case errors.Is(a.err, kerr.NotEnoughReplicas), errors.Is(a.err, kerr.NotEnoughReplicasAfterAppend), errors.Is(a.err, kerr.RequestTimedOut):
			answers = append(answers, a.err.(*kerr.Error).Message)
		default:
			t.Errorf("produce %d: %v (%q); want NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND or a timeout", i, a.err, a.msg)
		}
	}
	cancel()
	wg.Wait()
	if spoofErr != nil {
		t.Errorf("spoofed fetch: %v", spoofErr)
	}
	restore()
	readBack(t, su, spoofTopic, hw)
	return fmt.Sprintf("broker %d dead, min ISR 3, %d spoofed fetches: produces answered %v; %d acked records read back", follower, sp.sent, answers, hw)
}

func followerOf(pi partitionInfo) int32 {
	for _, r := range pi.replicas {
		if r != pi.leader {
			return r
		}
	}
	panic("no follower")
}

func alterMinISR(t *testing.T, su *suite, v string) {
	t.Helper()
	testharness.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		resps, err := su.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.insync.replicas", Value: kadm.StringPtr(v)}}, spoofTopic)
		if err != nil {
			return err
		}
		for _, r := range resps {
			if r.Err != nil {
				return fmt.Errorf("%v: %s", r.Err, r.ErrMessage)
			}
		}
		return nil
	})
	// Let the leader see the new setting before anything relies on it.
	testharness.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		rcs, err := su.adm.DescribeTopicConfigs(ctx, spoofTopic)
		if err != nil {
			return err
		}
		rc, err := rcs.On(spoofTopic, nil)
		if err != nil {
			return err
		}
		for _, c := range rc.Configs {
			if c.Key == "min.insync.replicas" && c.MaybeValue() == v {
				return nil
			}
		}
		return fmt.Errorf("min.insync.replicas of %s not %s yet", spoofTopic, v)
	})
	time.Sleep(500 * time.Millisecond)
}

func waitFullISR(t *testing.T, su *suite, topic string) partitionInfo {
	return waitFullISRPartition(t, su, topic, 0)
}

func waitFullISRPartition(t *testing.T, su *suite, topic string, p int32) partitionInfo {
	t.Helper()
	var pi partitionInfo
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		pi = describe(t, su, topic, p)
		if len(pi.isr) != len(pi.replicas) {
			return fmt.Errorf("%s/%d: ISR %v of replicas %v", topic, p, pi.isr, pi.replicas)
		}
		return nil
	})
	return pi
}

// readBack reads topic/0 from the start and fails t unless at least the
// first n offsets are there.
func readBack(t *testing.T, su *suite, topic string, n int64) {
	t.Helper()
	cl := newClient(t, su.seeds, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	ctx, cancel := withTimeout(60 * time.Second)
	defer cancel()
	next := int64(0)
	for next < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if r.Offset == next {
				next++
			}
		})
	}
	if next < n {
		t.Errorf("%s/0: read offsets up to %d of the %d acknowledged", topic, next, n)
	}
}
