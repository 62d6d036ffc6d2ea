package txn_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	ibm "github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

// TestSaramaTransactions: IBM/sarama's transactional producer
// (Transaction.ID, idempotent, acks=all, one request in flight) on a
// 3-partition topic commits a transaction of 30 records, aborts one of 30
// and commits another of 30, each also committing an offset of a group
// (AddOffsetsToTxn: AddOffsetsToTxn and TxnOffsetCommit requests). Then:
//
//   - franz-go and sarama consumers at read_committed see exactly the two
//     committed transactions' records, each once;
//   - franz-go at read_uncommitted sees all 90, and, keeping control
//     records, one COMMIT marker per partition per committed transaction
//     and one ABORT marker per partition for the aborted one;
//   - the group's offset is the first commit's after the abort, and the
//     second commit's at the end.
//
// Once for sarama's protocol version 2.5 (the first with KIP-447) and once
// for 3.6.
func TestSaramaTransactions(t *testing.T) {
	b := testharness.Start(t, testharness.Options{})
	for _, v := range []ibm.KafkaVersion{ibm.V2_5_0_0, ibm.V3_6_0_0} {
		t.Run("v"+v.String(), func(t *testing.T) {
			began := time.Now()
			s := &saramaRun{t: t, addr: b.Addr(), version: v,
				topic: "sarama-txn-" + v.String(), group: "sarama-txn-" + v.String()}
			s.run()
			t.Logf("sarama %s: 3 transactions, checks done in %v", v, time.Since(began).Round(time.Millisecond))
		})
	}
}

type saramaRun struct {
	t       *testing.T
	addr    string
	version ibm.KafkaVersion
	topic   string // the transactions' output
	group   string // whose offsets of topic+"-in" the transactions commit
}

const saramaPartitions = 3

func (s *saramaRun) run() {
	t := s.t
	seeds := []string{s.addr}
	adm := kadm.NewClient(newClient(t, seeds))
	in := s.topic + "-in"
	createTopics(t, adm, saramaPartitions, 1, nil, s.topic)
	createTopics(t, adm, 1, 1, nil, in)

	cfg := ibm.NewConfig()
	cfg.ClientID = "chronik-txn-sarama"
	cfg.Version = s.version
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = ibm.WaitForAll
	cfg.Producer.Transaction.ID = s.topic
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = ibm.NewManualPartitioner
	cfg.Net.MaxOpenRequests = 1
	p, err := ibm.NewSyncProducer(seeds, cfg)
	if err != nil {
		t.Fatalf("sarama transactional producer (InitProducerId): %v", err)
	}
	defer p.Close()

	txn := func(prefix string, offset int64, commit bool) {
		t.Helper()
		if err := p.BeginTxn(); err != nil {
			t.Fatalf("%s: BeginTxn: %v", prefix, err)
		}
		var msgs []*ibm.ProducerMessage
		for i := range 30 {
			msgs = append(msgs, &ibm.ProducerMessage{Topic: s.topic, Partition: int32(i % saramaPartitions),
				Key: ibm.StringEncoder(fmt.Sprint(i)), Value: ibm.StringEncoder(fmt.Sprintf("%s-%d", prefix, i))})
		}
		if err := p.SendMessages(msgs); err != nil {
			var perrs ibm.ProducerErrors
			if errors.As(err, &perrs) && len(perrs) > 0 {
				err = fmt.Errorf("%d failed, the first: %w", len(perrs), perrs[0].Err)
			}
			t.Fatalf("%s: SendMessages in a transaction: %v", prefix, err)
		}
		offsets := map[string][]*ibm.PartitionOffsetMetadata{in: {{Partition: 0, Offset: offset}}}
		if err := p.AddOffsetsToTxn(offsets, s.group); err != nil {
			t.Fatalf("%s: AddOffsetsToTxn (group %s, offset %d): %v", prefix, s.group, offset, err)
		}
		if commit {
			err = p.CommitTxn()
		} else {
			err = p.AbortTxn()
		}
		if err != nil {
			t.Fatalf("%s: ending the transaction (commit %v): %v (status %v)", prefix, commit, err, p.TxnStatus())
		}
	}
	// The transaction's markers are written after EndTxn returns, so the
	// offsets are asked with require_stable: until the markers are in,
	// the broker must answer UNSTABLE_OFFSET_COMMIT, never the offsets
	// from before the transaction.
	checkOffset := func(when string, want int64) {
		t.Helper()
		var got map[int32]int64
		unstable := 0
		testharness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			var err error
			got, err = groupOffsets(seeds, s.group, in, 5*time.Second)
			if errors.Is(err, kerr.UnstableOffsetCommit) {
				unstable++
			}
			return err
		})
		if o, ok := got[0]; !ok || o != want {
			t.Errorf("%s: group %s has committed offset %v of %s partition 0 (committed: %v, after %d UNSTABLE_OFFSET_COMMIT answers), want %d",
				when, s.group, o, in, got, unstable, want)
		} else if unstable > 0 {
			t.Logf("%s: offset %d, after %d UNSTABLE_OFFSET_COMMIT answers", when, o, unstable)
		}
	}

	txn("c1", 10, true)
	checkOffset("after the first commit", 10)
	txn("a", 20, false)
	checkOffset("after the abort", 10)
	txn("c2", 25, true)
	checkOffset("after the second commit", 25)
	closeTopic(t, seeds, s.topic, saramaPartitions)

	want := func(prefixes ...string) map[string]int {
		m := map[string]int{}
		for _, p := range prefixes {
			for i := range 30 {
				m[fmt.Sprintf("%s-%d", p, i)] = 1
			}
		}
		return m
	}
	committed := readAll(t, seeds, s.topic, saramaPartitions, kgo.ReadCommitted(), false)
	if d := diffCounts(count(values(committed)), want("c1", "c2"), 10); d != "" {
		t.Errorf("franz-go read_committed: %d records, want the 60 committed once each: %s", len(committed), d)
	}
	all := readAll(t, seeds, s.topic, saramaPartitions, kgo.ReadUncommitted(), true)
	if d := diffCounts(count(values(all)), want("c1", "a", "c2"), 10); d != "" {
		t.Errorf("franz-go read_uncommitted: %d data records, want all 90 once each: %s", len(values(all)), d)
	}
	commits, aborts := markers(all)
	if commits != 2*saramaPartitions || aborts != saramaPartitions {
		t.Errorf("read_uncommitted with control records: %d COMMIT and %d ABORT markers, want %d and %d (one per partition per transaction)",
			commits, aborts, 2*saramaPartitions, saramaPartitions)
	}
	got := s.consumeCommitted()
	if d := diffCounts(count(got), want("c1", "c2"), 10); d != "" {
		t.Errorf("sarama read_committed: %d records, want the 60 committed once each: %s", len(got), d)
	}
	t.Logf("read_committed: %d records (franz-go), %d (sarama); read_uncommitted: %d data records, %d COMMIT and %d ABORT markers",
		len(committed), len(got), len(values(all)), commits, aborts)
}

// consumeCommitted reads every partition with a sarama consumer at
// read_committed up to its sentinel and returns the values before them.
func (s *saramaRun) consumeCommitted() []string {
	t := s.t
	cfg := ibm.NewConfig()
	cfg.ClientID = "chronik-txn-sarama"
	cfg.Version = s.version
	cfg.Consumer.IsolationLevel = ibm.ReadCommitted
	cfg.Consumer.Return.Errors = true
	c, err := ibm.NewConsumer([]string{s.addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []string
	for p := range int32(saramaPartitions) {
		pc, err := c.ConsumePartition(s.topic, p, ibm.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama ConsumePartition %s/%d: %v", s.topic, p, err)
		}
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				if v := string(m.Value); v == sentinel(p) {
					done = true
				} else {
					out = append(out, v)
				}
			case err := <-pc.Errors():
				t.Logf("sarama consumer %s/%d: %v", s.topic, p, err)
			case <-ctx.Done():
				t.Fatalf("sarama read_committed: no sentinel on partition %d within a minute (%d records read)", p, len(out))
			}
		}
		pc.Close()
	}
	slices.Sort(out)
	return out
}
