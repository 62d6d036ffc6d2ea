package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// createTxnTopic creates topic with partitions.
func createTxnTopic(t *testing.T, b *Broker, topic string, partitions int32) {
	t.Helper()
	createTopic(t, b, topic, func(rt *kmsg.CreateTopicsRequestTopic) { rt.NumPartitions = partitions })
}

// readAll reads topic from the start at isolation level iso until want
// records arrived, then for a moment more, and returns the values.
func readAll(t *testing.T, b *Broker, topic string, iso kgo.IsolationLevel, want int) []string {
	t.Helper()
	cl := testClient(t, b, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	var got []string
	deadline := time.Now().Add(15 * time.Second)
	quiet := time.Time{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s: %v", topic, e.Err)
			}
		}
		switch {
		case len(got) < want && time.Now().After(deadline):
			t.Fatalf("read %d records of %s, want %d: %v", len(got), topic, want, got)
		case len(got) >= want && quiet.IsZero():
			quiet = time.Now().Add(time.Second)
		case !quiet.IsZero() && time.Now().After(quiet):
			return got
		}
	}
}

// runTxns produces rounds of n records in transactions of producer cl,
// each committed or aborted as commits says.
func runTxns(t *testing.T, cl *kgo.Client, topic string, n int, commits ...bool) {
	t.Helper()
	ctx := testCtx(t)
	for round, commit := range commits {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: fmt.Appendf(nil, "%d-%d", round, i)}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatalf("round %d: flush: %v", round, err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("round %d: end (commit %v): %v", round, commit, err)
		}
	}
}

func countRounds(vals []string) map[string]int {
	m := map[string]int{}
	for _, v := range vals {
		m[strings.SplitN(v, "-", 2)[0]]++
	}
	return m
}

// Committed transactions are read by read_committed consumers, aborted
// ones only by read_uncommitted ones, and both survive a restart with the
// records sealed into segments.
func TestTransactionsCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, nil)
	createTxnTopic(t, b, "tx", 2)
	p := testClient(t, b, kgo.TransactionalID("tx-commit-abort"), kgo.TransactionTimeout(10*time.Second), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	runTxns(t, p, "tx", 10, true, false, true, false)

	check := func(b *Broker) {
		t.Helper()
		if got := countRounds(readAll(t, b, "tx", kgo.ReadCommitted(), 20)); len(got) != 2 || got["0"] != 10 || got["2"] != 10 {
			t.Fatalf("read_committed rounds %v, want rounds 0 and 2 with 10 each", got)
		}
		if got := countRounds(readAll(t, b, "tx", kgo.ReadUncommitted(), 40)); len(got) != 4 {
			t.Fatalf("read_uncommitted rounds %v, want all four", got)
		}
	}
	check(b)

	// A transaction left open holds read_committed back at its first
	// offset (the LSO) until it ends.
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "tx", Partition: 0, Value: []byte("4-open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso, hw := latestOffset(t, b, "tx", 0, 1), latestOffset(t, b, "tx", 0, 0)
	if lso != hw-1 {
		t.Fatalf("with a transaction open: read_committed latest %d, high watermark %d", lso, hw)
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// EndTxn is answered once the decision is durable; the markers follow.
	waitFor(t, 10*time.Second, func() error {
		if lso := latestOffset(t, b, "tx", 0, 1); lso != hw+1 {
			return fmt.Errorf("after the commit: read_committed latest %d, want %d (past the marker)", lso, hw+1)
		}
		return nil
	})
	p.Close()

	// Seal everything, then restart: the index comes back from the
	// producers checkpoint and the WAL.
	for _, pp := range b.lookupTopic("tx").partitions {
		if err := b.seal(pp, time.Now().Add(8*24*time.Hour)); err != nil { // past segment.ms
			t.Fatal(err)
		}
	}
	b.Close()
	b = testBroker(t, dir, nil)
	if got := countRounds(readAll(t, b, "tx", kgo.ReadCommitted(), 21)); got["0"] != 10 || got["2"] != 10 || got["4"] != 1 || got["1"]+got["3"] != 0 {
		t.Fatalf("after a restart, read_committed rounds %v", got)
	}
}

// listLatest is ListOffsets latest of topic/partition at isolation iso.
func latestOffset(t *testing.T, b *Broker, topic string, partition int32, iso int8) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = iso
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp = partition, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t), testClient(t, b))
	if err != nil {
		t.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
		t.Fatal(err)
	}
	return sp.Offset
}

// A second producer with the same transactional ID fences the first: the
// first's transaction is aborted and its next request fails.
func TestTransactionsZombieFenced(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTxnTopic(t, b, "fence", 2)
	ctx := testCtx(t)
	p1 := testClient(t, b, kgo.TransactionalID("fenced-id"))
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p1.ProduceSync(ctx, &kgo.Record{Topic: "fence", Partition: 0, Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p2 := testClient(t, b, kgo.TransactionalID("fenced-id"))
	runTxns(t, p2, "fence", 2, true)
	err := p1.EndTransaction(ctx, kgo.TryCommit)
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		t.Fatalf("the fenced producer's commit: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
	}
	got := readAll(t, b, "fence", kgo.ReadCommitted(), 2)
	for _, v := range got {
		if v == "zombie" {
			t.Fatalf("the fenced producer's record was committed: %v", got)
		}
	}
}

// A producer that begins a transaction and goes silent has it aborted at
// its timeout: the last stable offset moves on, and the producer is
// fenced.
func TestTransactionTimeoutAborts(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.TransactionAbortCheckInterval = 50 * time.Millisecond })
	createTxnTopic(t, b, "slow", 1)
	ctx := testCtx(t)
	p := testClient(t, b, kgo.TransactionalID("slow-id"), kgo.TransactionTimeout(500*time.Millisecond))
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "slow", Value: []byte("abandoned")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if lso := latestOffset(t, b, "slow", 0, 1); lso != 0 {
		t.Fatalf("read_committed latest %d with the transaction open, want 0", lso)
	}
	ap := b.lookupTopic("slow").partitions[0].describeProducers()
	if len(ap) != 1 || ap[0].CurrentTxnStartOffset != 0 {
		t.Fatalf("producers of the partition with the transaction open: %+v", ap)
	}
	id, epoch := ap[0].ProducerID, int16(ap[0].ProducerEpoch)
	waitFor(t, 10*time.Second, func() error {
		if lso := latestOffset(t, b, "slow", 0, 1); lso != 2 {
			return fmt.Errorf("read_committed latest %d, want 2 (past the abort marker)", lso)
		}
		return nil
	})
	// The abort marker came at a bumped epoch: the partition now refuses
	// the abandoned producer's epoch.
	if ap := b.lookupTopic("slow").partitions[0].describeProducers(); len(ap) != 1 || ap[0].ProducerEpoch != int32(epoch)+1 || ap[0].CurrentTxnStartOffset != -1 {
		t.Fatalf("producers after the timeout: %+v, want producer %d at epoch %d with no transaction", ap, id, epoch+1)
	}
	rc := dialRaw(t, b)
	req := produceReq("slow", 0, makeBatch(1, id, epoch, 1, time.Now().UnixMilli()), -1)
	rc.send(req)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if err := rc.recv(resp); err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("a write at the fenced epoch: %v, want INVALID_PRODUCER_EPOCH", kerr.ErrorForCode(code))
	}
	if got := readAll(t, b, "slow", kgo.ReadCommitted(), 0); len(got) != 0 {
		t.Fatalf("read_committed read the aborted record: %v", got)
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("the timed-out transaction committed")
	}
}

// Consume-transform-produce with franz-go's GroupTransactSession: the
// output holds each input record once, and the group's offsets move only
// with committed transactions.
func TestGroupTransactSession(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTxnTopic(t, b, "etl-in", 2)
	createTxnTopic(t, b, "etl-out", 2)
	ctx := testCtx(t)
	in := testClient(t, b)
	const n = 200
	for i := range n {
		in.Produce(ctx, &kgo.Record{Topic: "etl-in", Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	if err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b.Addr().String()), kgo.TransactionalID("etl"),
		kgo.ConsumerGroup("etl-group"), kgo.ConsumeTopics("etl-in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequireStableFetchOffsets())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done, abortOnce := 0, true
	for done < n {
		fs := s.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		if err := s.Begin(); err != nil {
			t.Fatal(err)
		}
		k := 0
		fs.EachRecord(func(r *kgo.Record) {
			s.Produce(ctx, &kgo.Record{Topic: "etl-out", Value: append([]byte("out-"), r.Value...)}, nil)
			k++
		})
		commit := kgo.TryCommit
		if abortOnce && k > 0 {
			commit, abortOnce = kgo.TryAbort, false // the next poll reads the same records again
		}
		committed, err := s.End(ctx, commit)
		if err != nil {
			t.Fatal(err)
		}
		if committed {
			done += k
		}
	}
	got := readAll(t, b, "etl-out", kgo.ReadCommitted(), n)
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for i := range n {
		if c := seen[fmt.Sprintf("out-%d", i)]; c != 1 {
			t.Fatalf("output holds out-%d %d times (of %d records)", i, c, len(got))
		}
	}
}

// A coordinator that stops after a commit decision is durable but before
// its markers are written leaves no partition stuck: after the restart it
// reloads the decision, writes the markers, and read_committed readers
// get the transaction.
func TestTransactionDecidedBeforeCrashCompletes(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, nil)
	createTxnTopic(t, b, "decided", 2)
	p := testClient(t, b, kgo.TransactionalID("decided-id"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testCtx(t)
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: "decided", Partition: int32(i % 2), Value: fmt.Appendf(nil, "0-%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	never := make(chan struct{})
	b.markers.hold.Store(&never) // the markers never go out
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	p.Close()
	for part := range int32(2) {
		if lso := latestOffset(t, b, "decided", part, 1); lso != 0 {
			t.Fatalf("partition %d: read_committed latest %d before the markers, want 0", part, lso)
		}
	}
	b.Close()

	b = testBroker(t, dir, nil)
	waitFor(t, 10*time.Second, func() error {
		for part := range int32(2) {
			if lso := latestOffset(t, b, "decided", part, 1); lso != 3 {
				return fmt.Errorf("partition %d: read_committed latest %d after the restart, want 3", part, lso)
			}
		}
		return nil
	})
	if got := countRounds(readAll(t, b, "decided", kgo.ReadCommitted(), 4)); got["0"] != 4 {
		t.Fatalf("read_committed after the restart: %v, want the 4 committed records", got)
	}
}

// A producer that sends TxnOffsetCommit without adding the group's offsets
// to its transaction is refused (INVALID_TXN_STATE) and leaves nothing
// pending: the group's RequireStable fetches stay stable.
func TestTxnOffsetCommitOutsideTransactionRefused(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTxnTopic(t, b, "liar-in", 1)
	cl := testClient(t, b)
	ctx := testCtx(t)
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID, init.TransactionTimeoutMillis = kmsg.StringPtr("liar"), 10000
	init.ProducerID, init.ProducerEpoch = -1, -1
	ir, err := init.RequestWith(ctx, cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("init producer ID: %v %v", err, kerr.ErrorForCode(ir.ErrorCode))
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID, commit.Group, commit.ProducerID, commit.ProducerEpoch = "liar", "liar-group", ir.ProducerID, ir.ProducerEpoch
	commit.Generation = -1
	commit.Topics = []kmsg.TxnOffsetCommitRequestTopic{{Topic: "liar-in", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5, LeaderEpoch: -1}}}}
	cr, err := commit.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := cr.Topics[0].Partitions[0].ErrorCode; code != kerr.InvalidTxnState.Code {
		t.Fatalf("TxnOffsetCommit outside a transaction: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(code))
	}
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.RequireStable = true
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = "liar-group"
	fetch.Groups = append(fetch.Groups, g)
	fr, err := fetch.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rg := range fr.Groups {
		if rg.ErrorCode != 0 {
			t.Fatalf("RequireStable fetch: %v", kerr.ErrorForCode(rg.ErrorCode))
		}
		for _, rt := range rg.Topics {
			for _, rp := range rt.Partitions {
				if rp.ErrorCode != 0 || rp.Offset >= 0 {
					t.Fatalf("RequireStable fetch after the refused commit: %s/%d offset %d, %v", rt.Topic, rp.Partition, rp.Offset, kerr.ErrorForCode(rp.ErrorCode))
				}
			}
		}
	}
}
