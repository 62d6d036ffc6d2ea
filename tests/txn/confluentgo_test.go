package txn_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

// TestConfluentGoTransactions: librdkafka's transactional producer through
// confluentinc/confluent-kafka-go (transactional.id, so idempotent at
// acks=all) against one broker. It commits a transaction of 10 records to
// a 3-partition topic, then consumes an input topic in a group with a
// confluent-kafka-go consumer at read_committed and aborts, then commits,
// a transaction of 10 records that also sends the consumer's positions
// (SendOffsetsToTransaction with the consumer's group metadata:
// AddOffsetsToTxn, TxnOffsetCommit with its generation and member ID).
// It checks:
//
//   - the group has no committed offset before and after the aborted
//     transaction, and the consumer's positions after the committed one,
//     both as librdkafka's Committed and kadm (require_stable) see them;
//   - confluent-kafka-go consumers at read_committed see exactly the 20
//     committed records, at read_uncommitted all 30 and nothing at the
//     offset of a transaction marker (those franz-go, keeping control
//     records, reads: one COMMIT per partition per committed transaction,
//     one ABORT per partition for the aborted one);
//   - a second producer with the same transactional.id fences the first:
//     its InitTransactions succeeds (aborting the first's open transaction,
//     whose record was delivered), and the first's CommitTransaction fails
//     with librdkafka's fatal ErrFenced, as does anything it tries after.
func TestConfluentGoTransactions(t *testing.T) {
	b := testharness.Start(t, testharness.Options{})
	seeds := []string{b.Addr()}
	const (
		in, out, fence = "go-txn-in", "go-txn-out", "go-txn-fence"
		group          = "go-txn-group"
		outPartitions  = 3
	)
	adm := kadm.NewClient(newClient(t, seeds))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	librdkafkaTopics(ctx, t, adm, seeds, in, out, fence, outPartitions)
	began := time.Now()

	// 1. Commit, abort and commit, the last two sending the group's
	// offsets.
	p := newTxnProducer(t, b.Addr(), "go-txn")
	produceTxn := func(prefix string, values []string, c *ckafka.Consumer, offsets []ckafka.TopicPartition, commit bool) {
		t.Helper()
		if err := p.BeginTransaction(); err != nil {
			t.Fatalf("%s: BeginTransaction: %v", prefix, err)
		}
		for i, v := range values {
			topic := out
			msg := &ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: int32(i % outPartitions)},
				Key: fmt.Append(nil, i), Value: fmt.Appendf(nil, "%s-%s", prefix, v)}
			if err := p.Produce(msg, nil); err != nil {
				t.Fatalf("%s: Produce %s: %v", prefix, msg.Value, err)
			}
		}
		if c != nil {
			md, err := c.GetConsumerGroupMetadata()
			if err != nil {
				t.Fatalf("%s: GetConsumerGroupMetadata: %v", prefix, err)
			}
			if err := p.SendOffsetsToTransaction(txnCtx(t), offsets, md); err != nil {
				t.Fatalf("%s: SendOffsetsToTransaction %v: %v", prefix, tpOffsets(offsets), err)
			}
		}
		if commit {
			if err := p.CommitTransaction(txnCtx(t)); err != nil {
				t.Fatalf("%s: CommitTransaction: %v", prefix, err)
			}
			return
		}
		// AbortTransaction purges what is still queued: deliver the
		// records first, so the log holds the aborted records for the
		// readers to hide.
		p.flush(prefix)
		if err := p.AbortTransaction(txnCtx(t)); err != nil {
			t.Fatalf("%s: AbortTransaction: %v", prefix, err)
		}
	}
	var c1 []string
	for i := range 10 {
		c1 = append(c1, fmt.Sprint(i))
	}
	produceTxn("c1", c1, nil, nil, true)

	c, consumed := consumeInput(t, b.Addr(), group, in, 10)
	var wantIn []string
	for i := range 10 {
		wantIn = append(wantIn, fmt.Sprintf("in-%d", i))
	}
	if got := slices.Sorted(slices.Values(consumed)); !slices.Equal(got, wantIn) {
		t.Fatalf("the read_committed group consumer got %v, want %v", got, wantIn)
	}
	assignment, err := c.Assignment()
	if err != nil {
		t.Fatalf("consumer Assignment: %v", err)
	}
	positions, err := c.Position(assignment)
	if err != nil {
		t.Fatalf("consumer Position %v: %v", tpOffsets(assignment), err)
	}
	ends := map[int32]int64{0: 5, 1: 5}
	if got := tpOffsets(positions); !maps.Equal(got, ends) {
		t.Fatalf("consumer positions %v, want the ends of %s %v", got, in, ends)
	}
	none := map[int32]int64{0: int64(ckafka.OffsetInvalid), 1: int64(ckafka.OffsetInvalid)}
	// committed is the group's offsets as librdkafka's Committed (at
	// read_committed, so require_stable) and kadm FetchOffsets
	// (require_stable, retried while the broker answers
	// UNSTABLE_OFFSET_COMMIT) see them; kadm omits a partition without one.
	checkCommitted := func(when string, want map[int32]int64) {
		t.Helper()
		tps, err := c.Committed(assignment, 30_000)
		if err != nil {
			t.Fatalf("%s: Committed: %v", when, err)
		}
		for _, tp := range tps {
			if tp.Error != nil {
				t.Errorf("%s: Committed %s partition %d: %v", when, in, tp.Partition, tp.Error)
			}
		}
		if got := tpOffsets(tps); !maps.Equal(got, want) {
			t.Errorf("%s: librdkafka Committed of group %s: %v, want %v", when, group, got, want)
		}
		var fetched map[int32]int64
		unstable := 0
		testharness.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			var err error
			fetched, err = groupOffsets(seeds, group, in, 5*time.Second)
			if errors.Is(err, kerr.UnstableOffsetCommit) {
				unstable++
			}
			return err
		})
		wantFetched := maps.Clone(want)
		maps.DeleteFunc(wantFetched, func(_ int32, o int64) bool { return o == int64(ckafka.OffsetInvalid) })
		if !maps.Equal(fetched, wantFetched) {
			t.Errorf("%s: kadm FetchOffsets of group %s: %v (after %d UNSTABLE_OFFSET_COMMIT answers), want %v",
				when, group, fetched, unstable, wantFetched)
		}
	}
	checkCommitted("before any transaction sent offsets", none)
	produceTxn("a", consumed, c, positions, false)
	checkCommitted("after the aborted transaction that sent offsets", none)
	produceTxn("c2", consumed, c, positions, true)
	checkCommitted("after the committed transaction that sent offsets", ends)
	if err := c.Close(); err != nil {
		t.Errorf("closing the group consumer: %v", err)
	}

	// 2. What each isolation level shows.
	closeTopic(t, seeds, out, outPartitions)
	want := librdkafkaValues
	committed := confluentReadAll(t, b.Addr(), out, outPartitions, "read_committed")
	if d := diffCounts(count(values(committed)), want("c1", "c2"), 10); d != "" {
		t.Errorf("confluent-kafka-go read_committed: %d records, want the 20 committed once each: %s", len(committed), d)
	}
	uncommitted := confluentReadAll(t, b.Addr(), out, outPartitions, "read_uncommitted")
	if d := diffCounts(count(values(uncommitted)), want("c1", "a", "c2"), 10); d != "" {
		t.Errorf("confluent-kafka-go read_uncommitted: %d records, want all 30 once each: %s", len(uncommitted), d)
	}
	all := readAll(t, seeds, out, outPartitions, kgo.ReadUncommitted(), true)
	if commits, aborts := markers(all); commits != 2*outPartitions || aborts != outPartitions {
		t.Errorf("%s with control records (franz-go): %d COMMIT and %d ABORT markers, want %d and %d (one per partition per transaction)",
			out, commits, aborts, 2*outPartitions, outPartitions)
	}
	checkNoControl(t, "read_committed", committed, all)
	checkNoControl(t, "read_uncommitted", uncommitted, all)

	// 3. Fencing.
	zombie := newTxnProducer(t, b.Addr(), "go-txn-fence")
	zombie.expectFatal = true
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatalf("fenced producer: BeginTransaction: %v", err)
	}
	fenceTopic := fence
	if err := zombie.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &fenceTopic, Partition: 0},
		Value: []byte("zombie")}, nil); err != nil {
		t.Fatalf("fenced producer: Produce: %v", err)
	}
	zombie.flush("zombie")
	winner := newTxnProducer(t, b.Addr(), "go-txn-fence") // InitTransactions fences zombie
	// librdkafka 2.11 sends EndTxn v1, which a fenced epoch gets
	// INVALID_PRODUCER_EPOCH for (PRODUCER_FENCED only from v2, KIP-588);
	// it raises either as its own fatal _FENCED.
	err = zombie.CommitTransaction(txnCtx(t))
	var cerr ckafka.Error
	switch {
	case err == nil:
		t.Errorf("the fenced producer's CommitTransaction succeeded, want a fatal %v", ckafka.ErrFenced)
	case !errors.As(err, &cerr):
		t.Errorf("the fenced producer's CommitTransaction: %T %v, want a ckafka.Error", err, err)
	case cerr.Code() != ckafka.ErrFenced || !cerr.IsFatal() || cerr.IsRetriable() || cerr.TxnRequiresAbort():
		t.Errorf("the fenced producer's CommitTransaction: %v (code %d %v, fatal %v, retriable %v, txn requires abort %v); want a fatal %v (%d)",
			cerr, cerr.Code(), cerr.Code(), cerr.IsFatal(), cerr.IsRetriable(), cerr.TxnRequiresAbort(), ckafka.ErrFenced, ckafka.ErrFenced)
	default:
		t.Logf("the fenced producer's CommitTransaction: %v (code %d %v, fatal)", cerr, cerr.Code(), cerr.Code())
	}
	// The instance is done for: the next transaction is refused too.
	if err := zombie.BeginTransaction(); !errors.As(err, &cerr) || !cerr.IsFatal() {
		t.Errorf("the fenced producer's BeginTransaction after its commit failed: %v, want a fatal error", err)
	}
	if err := winner.BeginTransaction(); err != nil {
		t.Fatalf("fencing producer: BeginTransaction: %v", err)
	}
	if err := winner.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &fenceTopic, Partition: 0},
		Value: []byte("winner")}, nil); err != nil {
		t.Fatalf("fencing producer: Produce: %v", err)
	}
	if err := winner.CommitTransaction(txnCtx(t)); err != nil {
		t.Fatalf("fencing producer: CommitTransaction: %v", err)
	}
	closeTopic(t, seeds, fence, 1)
	if got := values(confluentReadAll(t, b.Addr(), fence, 1, "read_committed")); !slices.Equal(got, []string{"winner"}) {
		t.Errorf("%s read_committed: %q, want only the fencing producer's \"winner\"", fence, got)
	}
	if got := values(confluentReadAll(t, b.Addr(), fence, 1, "read_uncommitted")); !slices.Equal(got, []string{"zombie", "winner"}) {
		t.Errorf("%s read_uncommitted: %q, want the fenced producer's \"zombie\" then \"winner\"", fence, got)
	}
	if commits, aborts := markers(readAll(t, seeds, fence, 1, kgo.ReadUncommitted(), true)); commits != 1 || aborts != 1 {
		t.Errorf("%s with control records (franz-go): %d COMMIT and %d ABORT markers, want 1 and 1 (the fenced transaction aborted)", fence, commits, aborts)
	}
	zombie.Close()
	winner.Close()
	p.Close()
	p.check(30)
	zombie.check(1)
	winner.check(1)
	t.Logf("3 transactions, fencing and read-backs in %v: read_committed %d records, read_uncommitted %d",
		time.Since(began).Round(time.Millisecond), len(committed), len(uncommitted))
}

// txnCtx bounds one transactional call.
func txnCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tpOffsets is each partition's offset.
func tpOffsets(tps []ckafka.TopicPartition) map[int32]int64 {
	m := map[int32]int64{}
	for _, tp := range tps {
		m[tp.Partition] = int64(tp.Offset)
	}
	return m
}

// txnProducer is a confluent-kafka-go transactional producer that has run
// InitTransactions, and what its Events channel reported: failed
// deliveries and client errors.
type txnProducer struct {
	*ckafka.Producer
	t           *testing.T
	id          string
	expectFatal bool // a fatal client error is the point (fencing)
	done        chan struct{}

	mu        sync.Mutex
	delivered int
	failed    []string
	errs      []ckafka.Error
}

func newTxnProducer(t *testing.T, addr, id string) *txnProducer {
	t.Helper()
	p, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers": addr,
		"client.id":         "chronik-txn-confluent-go",
		"transactional.id":  id,
		"log_level":         4, // warnings and errors only
	})
	if err != nil {
		t.Fatal(err)
	}
	tp := &txnProducer{Producer: p, t: t, id: id, done: make(chan struct{})}
	t.Cleanup(tp.Close)
	// The Events channel must be served while CommitTransaction and
	// AbortTransaction flush; Close closes it.
	go func() {
		defer close(tp.done)
		for ev := range p.Events() {
			tp.mu.Lock()
			switch ev := ev.(type) {
			case *ckafka.Message:
				if ev.TopicPartition.Error != nil {
					tp.failed = append(tp.failed, fmt.Sprintf("%s: %v", ev.Value, ev.TopicPartition.Error))
				} else {
					tp.delivered++
				}
			case ckafka.Error:
				tp.errs = append(tp.errs, ev)
			}
			tp.mu.Unlock()
		}
	}()
	if err := p.InitTransactions(txnCtx(t)); err != nil {
		t.Fatalf("producer %s: InitTransactions: %v", id, err)
	}
	return tp
}

// Close closes the producer and waits for its Events to be drained.
func (p *txnProducer) Close() {
	p.Producer.Close()
	<-p.done
}

// flush waits for every produced record to be delivered.
func (p *txnProducer) flush(what string) {
	p.t.Helper()
	if left := p.Flush(30_000); left != 0 {
		p.t.Fatalf("%s: %d records of producer %s not delivered within 30s", what, left, p.id)
	}
}

// check reports failed deliveries, a number delivered other than want
// and, unless expected, fatal client errors. librdkafka reports transient
// conditions (a dropped connection) as errors too and recovers by itself;
// those are only logged. Call it after Close.
func (p *txnProducer) check(want int) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.delivered != want {
		p.t.Errorf("producer %s: %d records delivered, want %d", p.id, p.delivered, want)
	}
	for _, f := range p.failed {
		p.t.Errorf("producer %s: delivery failed: %s", p.id, f)
	}
	for _, e := range p.errs {
		if e.IsFatal() && !p.expectFatal {
			p.t.Errorf("producer %s: fatal error: %v", p.id, e)
		} else {
			p.t.Logf("producer %s: %v", p.id, e)
		}
	}
}

// consumeInput subscribes a confluent-kafka-go consumer (read_committed, no
// auto commit) to topic in group and polls until it has n records. It is
// closed when the test ends, if the test has not closed it.
func consumeInput(t *testing.T, addr, group, topic string, n int) (*ckafka.Consumer, []string) {
	t.Helper()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers":  addr,
		"client.id":          "chronik-txn-confluent-go",
		"group.id":           group,
		"isolation.level":    "read_committed",
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"log_level":          4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !c.IsClosed() {
			c.Close()
		}
	})
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("Subscribe %s: %v", topic, err)
	}
	var got []string
	deadline := time.Now().Add(time.Minute)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("group %s consumer of %s: %d of %d records within a minute: %v", group, topic, len(got), n, got)
		}
		switch ev := c.Poll(100).(type) {
		case *ckafka.Message:
			if ev.TopicPartition.Error != nil {
				t.Fatalf("group %s consumer of %s: %v", group, topic, ev.TopicPartition.Error)
			}
			got = append(got, string(ev.Value))
		case ckafka.Error:
			if ev.IsFatal() {
				t.Fatalf("group %s consumer of %s: %v", group, topic, ev)
			}
			t.Logf("group %s consumer of %s: %v", group, topic, ev)
		}
	}
	return c, got
}

// confluentReadAll reads every partition of topic from its start with a
// confluent-kafka-go consumer at level (an isolation.level) until it has
// returned each partition's sentinel (see closeTopic), and returns the
// records before them. The consumer assigns the partitions itself and
// commits nothing (librdkafka requires a group.id all the same).
func confluentReadAll(t *testing.T, addr, topic string, partitions int32, level string) []record {
	t.Helper()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers":  addr,
		"client.id":          "chronik-txn-confluent-go",
		"group.id":           "go-txn-read-" + level,
		"isolation.level":    level,
		"enable.auto.commit": false,
		"log_level":          4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tps []ckafka.TopicPartition
	for p := range partitions {
		tps = append(tps, ckafka.TopicPartition{Topic: &topic, Partition: p, Offset: ckafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatalf("Assign %s: %v", topic, err)
	}
	var out []record
	done := map[int32]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for len(done) < int(partitions) {
		if time.Now().After(deadline) {
			lso, hwm, _ := stableAndEnd([]string{addr}, topic)
			t.Fatalf("confluent-kafka-go reading %s %s: sentinels of partitions %v seen after %d records within 90s; last stable offsets %v, high watermarks %v",
				topic, level, sortedKeys(done), len(out), lso, hwm)
		}
		switch ev := c.Poll(100).(type) {
		case *ckafka.Message:
			p := ev.TopicPartition.Partition
			if ev.TopicPartition.Error != nil {
				t.Logf("confluent-kafka-go reading %s partition %d: %v", topic, p, ev.TopicPartition.Error)
				continue
			}
			if done[p] {
				t.Errorf("%s partition %d: record at offset %d after the sentinel: %q", topic, p, ev.TopicPartition.Offset, ev.Value)
				continue
			}
			if string(ev.Value) == sentinel(p) {
				done[p] = true
				continue
			}
			out = append(out, record{partition: p, offset: int64(ev.TopicPartition.Offset), key: string(ev.Key), value: string(ev.Value)})
		case ckafka.Error:
			if ev.IsFatal() {
				t.Fatalf("confluent-kafka-go reading %s %s: %v", topic, level, ev)
			}
			t.Logf("confluent-kafka-go reading %s %s: %v", topic, level, ev)
		}
	}
	return out
}

// checkNoControl reports any record of got at the offset of a transaction
// marker in all (read keeping control records): librdkafka must hand the
// application no control record at either isolation level.
func checkNoControl(t *testing.T, level string, got, all []record) {
	t.Helper()
	type at struct {
		partition int32
		offset    int64
	}
	control := map[at]bool{}
	for _, r := range all {
		if r.control {
			control[at{r.partition, r.offset}] = true
		}
	}
	for _, r := range got {
		if control[at{r.partition, r.offset}] {
			t.Errorf("confluent-kafka-go %s returned partition %d offset %d (key %q, value %q), a transaction marker's offset",
				level, r.partition, r.offset, r.key, r.value)
		}
	}
}
