package broker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
)

type saramaHandler struct {
	consumed *atomic.Int64
	claims   *atomic.Int64 // sessions set up: one per generation per member
}

func (h saramaHandler) Setup(sarama.ConsumerGroupSession) error   { h.claims.Add(1); return nil }
func (h saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		h.consumed.Add(1)
		s.MarkMessage(m, "")
		time.Sleep(time.Millisecond)
	}
	return nil
}

// TestGroupSarama: sarama consumer group members consume and commit, with
// an eager (range) rebalance when the second member joins.
func TestGroupSarama(t *testing.T) {
	const total = 2000
	b := groupBroker(t, t.TempDir())
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "sarama-t", 4)
	groupProduceN(t, cl, "sarama-t", total)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 50 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 200 * time.Millisecond

	var consumed, sessions atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	startMember := func() sarama.ConsumerGroup {
		g, err := sarama.NewConsumerGroup([]string{b.Addr().String()}, "sarama-g", cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{"sarama-t"}, saramaHandler{&consumed, &sessions}); err != nil && ctx.Err() == nil {
					t.Logf("consume: %v", err)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
		return g
	}
	g1 := startMember()
	checkFor(t, 20*time.Second, func() error {
		if n := consumed.Load(); n < 200 {
			return fmt.Errorf("consumed %d", n)
		}
		return nil
	})
	g2 := startMember()
	checkFor(t, 20*time.Second, func() error {
		if st, _, n := groupStatus(b, "sarama-g"); st != "Stable" || n != 2 {
			return fmt.Errorf("state %v with %d members", st, n)
		}
		return nil
	})
	checkFor(t, 30*time.Second, func() error {
		var sum int64
		for _, o := range committed(t, adm, "sarama-g", "sarama-t") {
			sum += o
		}
		if sum != total {
			return fmt.Errorf("committed %d of %d", sum, total)
		}
		return nil
	})
	if s := sessions.Load(); s < 3 {
		t.Fatalf("%d sessions; want the first member's, then both after the eager rebalance", s)
	}
	cancel()
	wg.Wait()
	g1.Close()
	g2.Close()
}
