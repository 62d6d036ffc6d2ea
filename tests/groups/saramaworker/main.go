// Command saramaworker is a sarama consumer-group member for the tests in
// tests/groups: it prints every record it processes as a JSON line
// ({"topic","partition","offset"}) on stdout, commits what it has printed
// every -commit-interval and before a partition is revoked, and reports
// each successful commit as {"committed":{"topic","partition","offset"}}.
//
// It commits with its own OffsetCommit requests (member ID and generation
// of the current session) instead of sarama's offset manager, which does
// not tell the application whether a commit succeeded.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

type record struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

type commit struct {
	Committed record `json:"committed"`
}

type output struct {
	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
}

func (o *output) write(v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.enc.Encode(v); err != nil {
		log.Fatalf("saramaworker: write: %v", err)
	}
}

func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.w.Flush(); err != nil {
		log.Fatalf("saramaworker: write: %v", err)
	}
}

// handler tracks, per partition of the session, the next offset to commit
// (one past the last record printed) and what was last committed.
type handler struct {
	client   sarama.Client
	group    string
	out      *output
	interval time.Duration

	mu        sync.Mutex
	next      map[int32]int64
	committed map[int32]int64
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	h.next, h.committed = map[int32]int64{}, map[int32]int64{}
	h.mu.Unlock()
	go func() {
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-s.Context().Done():
				return
			case <-t.C:
				h.commit(s, nil)
			}
		}
	}()
	return nil
}

func (h *handler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.commit(s, nil)
	return nil
}

// commit commits the printed offsets of partitions (nil: all) that moved
// since their last commit, and reports the ones that succeeded.
func (h *handler) commit(s sarama.ConsumerGroupSession, only []int32) {
	h.mu.Lock()
	req := &sarama.OffsetCommitRequest{
		Version:                 7,
		ConsumerGroup:           h.group,
		ConsumerGroupGeneration: s.GenerationID(),
		ConsumerID:              s.MemberID(),
		RetentionTime:           -1,
	}
	var topic string
	for t := range s.Claims() {
		topic = t
	}
	pending := map[int32]int64{}
	for p, off := range h.next {
		if only != nil && !contains(only, p) {
			continue
		}
		if c, ok := h.committed[p]; !ok || c < off {
			pending[p] = off
			req.AddBlock(topic, p, off, 0, "")
		}
	}
	h.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	coord, err := h.client.Coordinator(h.group)
	if err != nil {
		return
	}
	resp, err := coord.CommitOffset(req)
	if err != nil {
		h.client.RefreshCoordinator(h.group)
		return
	}
	refresh := false
	for p, off := range pending {
		if kerr, ok := resp.Errors[topic][p]; !ok || kerr != sarama.ErrNoError {
			// As sarama's offset manager: the coordinator moved (its
			// broker died and another leads the group's offsets
			// partition), look it up again before the next commit.
			refresh = refresh || kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable
			continue
		}
		h.mu.Lock()
		h.committed[p] = max(h.committed[p], off)
		h.mu.Unlock()
		h.out.write(commit{record{topic, p, off}})
	}
	h.out.flush()
	if refresh {
		h.client.RefreshCoordinator(h.group)
	}
}

func contains(ps []int32, p int32) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	p := claim.Partition()
	defer h.commit(s, []int32{p}) // before the partition is given up
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.out.write(record{msg.Topic, msg.Partition, msg.Offset})
			// Drain what is already buffered before flushing.
			for n := 0; n < 1000 && len(claim.Messages()) > 0; n++ {
				msg = <-claim.Messages()
				h.out.write(record{msg.Topic, msg.Partition, msg.Offset})
			}
			h.out.flush()
			h.mu.Lock()
			h.next[p] = msg.Offset + 1
			h.mu.Unlock()
		case <-s.Context().Done():
			return nil
		}
	}
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap brokers, comma-separated")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "group")
	interval := flag.Duration("commit-interval", 100*time.Millisecond, "commit interval")
	session := flag.Duration("session-timeout", 6*time.Second, "session timeout")
	flag.Parse()
	log.SetOutput(os.Stderr)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.ClientID = "saramaworker"
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyCooperativeSticky()}
	cfg.Consumer.Group.Session.Timeout = *session
	cfg.Consumer.Group.Heartbeat.Interval = *session / 6
	cfg.Consumer.Return.Errors = true
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Consumer.Retry.Backoff = 100 * time.Millisecond

	client, err := sarama.NewClient(strings.Split(*brokers, ","), cfg)
	if err != nil {
		log.Fatalf("saramaworker: %v", err)
	}
	cg, err := sarama.NewConsumerGroupFromClient(*group, client)
	if err != nil {
		log.Fatalf("saramaworker: %v", err)
	}
	go func() {
		for err := range cg.Errors() {
			log.Printf("saramaworker: %v", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	h := &handler{client: client, group: *group, out: &output{w: w, enc: json.NewEncoder(w)}, interval: *interval}
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{*topic}, h); err != nil && ctx.Err() == nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				break
			}
			log.Printf("saramaworker: consume: %v", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := cg.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "saramaworker: close: %v\n", err)
	}
	client.Close()
}
