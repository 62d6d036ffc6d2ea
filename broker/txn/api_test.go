package txn

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// AddPartitionsToTxn refuses the whole transaction when a partition is
// unknown or not writable, naming it and answering the others
// OPERATION_NOT_ATTEMPTED, as Kafka does; nothing is added.
func TestAddPartitionsRefusals(t *testing.T) {
	l := newMemLog(4)
	c := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	mayWrite := func(topic string) bool { return topic != "u" }
	for _, tc := range []struct {
		name  string
		parts []TopicPartition
		want  map[TopicPartition]error
	}{
		{"unknown", []TopicPartition{tp("t", 0), tp("nope", 0), tp("t", 9)}, map[TopicPartition]error{
			tp("t", 0): kerr.OperationNotAttempted, tp("nope", 0): kerr.UnknownTopicOrPartition, tp("t", 9): kerr.UnknownTopicOrPartition}},
		{"unauthorized", []TopicPartition{tp("t", 0), tp("u", 0)}, map[TopicPartition]error{
			tp("t", 0): kerr.OperationNotAttempted, tp("u", 0): kerr.TopicAuthorizationFailed}},
		{"internal", []TopicPartition{tp(group.OffsetsTopic, 3)}, map[TopicPartition]error{
			tp(group.OffsetsTopic, 3): kerr.TopicAuthorizationFailed}},
		{"duplicates once", []TopicPartition{tp("t", 0), tp("t", 0), tp("x", 1)}, map[TopicPartition]error{
			tp("t", 0): kerr.OperationNotAttempted, tp("x", 1): kerr.UnknownTopicOrPartition}},
	} {
		resp := c.AddPartitionsToTxn(context.Background(), addReq(3, "tx", pid, e0, tc.parts...), mayWrite)
		if diff := cmp.Diff(tc.want, addCodes(resp), cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if st := describe(c, "tx"); st.State != "Empty" {
		t.Fatalf("state %s after refused adds, want Empty", st.State)
	}
	if n := len(l.records(Partition("tx", 4))); n != 1 {
		t.Fatalf("%d records, want 1 (InitProducerId's)", n)
	}
}

// v4+ batches transactions; VerifyOnly answers whether each partition is
// in the ongoing transaction, adding nothing (TRANSACTION_ABORTABLE from
// v5, INVALID_TXN_STATE before).
func TestAddPartitionsBatchedAndVerifyOnly(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	p1, e1 := mustInit(t, c, "one", 60000)
	p2, e2 := mustInit(t, c, "two", 60000)
	if err := add(c, 3, "one", p1, e1, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	r := kmsg.NewPtrAddPartitionsToTxnRequest()
	r.Version = 4
	r.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{
		{TransactionalID: "one", ProducerID: p1, ProducerEpoch: e1, VerifyOnly: true,
			Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0, 1}}}},
		{TransactionalID: "two", ProducerID: p2, ProducerEpoch: e2,
			Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{2}}}},
		{TransactionalID: "nope", ProducerID: 1, ProducerEpoch: 0, VerifyOnly: true,
			Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0}}}},
		{TransactionalID: "one", ProducerID: p1, ProducerEpoch: e1 + 1, VerifyOnly: true,
			Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0}}}},
	}
	r.Version = 5
	resp := c.AddPartitionsToTxn(context.Background(), r, func(string) bool { return false })
	got := make([]map[int32]error, len(resp.Transactions))
	for i, tx := range resp.Transactions {
		if tx.TransactionalID != r.Transactions[i].TransactionalID {
			t.Fatalf("result %d is of %q", i, tx.TransactionalID)
		}
		got[i] = make(map[int32]error)
		for _, p := range tx.Topics[0].Partitions {
			got[i][p.Partition] = code(p.ErrorCode)
		}
	}
	want := []map[int32]error{
		{0: nil, 1: kerr.TransactionAbortable},
		{2: nil},
		{0: kerr.InvalidProducerIDMapping},
		{0: kerr.ProducerFenced},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Fatalf("v4 results (-want +got):\n%s", diff)
	}
	// v4 predates TRANSACTION_ABORTABLE.
	r.Version = 4
	r.Transactions = r.Transactions[:1]
	resp = c.AddPartitionsToTxn(context.Background(), r, nil)
	if got := code(resp.Transactions[0].Topics[0].Partitions[1].ErrorCode); got != kerr.InvalidTxnState {
		t.Fatalf("v4 verify of a partition not in the transaction = %v, want INVALID_TXN_STATE", got)
	}
	if st := describe(c, "one"); len(st.Topics[0].Partitions) != 1 {
		t.Fatalf("verify-only added partitions: %+v", st.Topics)
	}
	if st := describe(c, "two"); st.State != "Ongoing" {
		t.Fatalf("two: %+v", st)
	}
	if err := c.Verify("one", p1, e1, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
}

// KIP-360: an InitProducerId naming the current producer bumps its epoch;
// a retry of that bump gets the same answer; any other claim is fenced.
func TestInitProducerIDClaims(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	for _, tc := range []struct {
		name       string
		version    int16
		claimID    int64
		claimEpoch int16
		wantEpoch  int16
		want       error
	}{
		{"current", 4, pid, e0, 1, nil},
		{"retry of the bump", 4, pid, e0, 1, nil},
		{"current again", 4, pid, 1, 2, nil},
		{"stale epoch", 4, pid, 0, -1, kerr.ProducerFenced},
		{"stale epoch, v3", 3, pid, 0, -1, kerr.InvalidProducerEpoch},
		{"another producer", 4, pid + 99, 2, -1, kerr.ProducerFenced},
		{"half a claim", 4, pid, -1, -1, kerr.InvalidRequest},
		{"v2 ignores the fields", 2, 12345, 6, 3, nil},
	} {
		_, epoch, err := initPID(c, tc.version, "tx", 60000, tc.claimID, tc.claimEpoch)
		if !errors.Is(err, tc.want) && err != tc.want || epoch != tc.wantEpoch {
			t.Errorf("%s: epoch %d, %v; want %d, %v", tc.name, epoch, err, tc.wantEpoch, tc.want)
		}
	}
}

// At the last epoch InitProducerId rotates to a new producer ID at epoch
// 0; the previous producer ID survives a reload (record v1), and a retry
// of the rotation gets the same answer.
func TestEpochExhaustionRotatesProducerID(t *testing.T) {
	l := newMemLog(4)
	p := Partition("tx", 4)
	l.parts[p] = append(l.parts[p], encodeRecord("tx", transit{to: stateCompleteCommit, producerID: 42, prevProducerID: 42,
		epoch: math.MaxInt16 - 2, timeoutMs: 60000, startMs: 1, lastUpdateMs: 1}))
	c := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	pid, epoch, err := initPID(c, 4, "tx", 60000, 42, math.MaxInt16-2)
	if err != nil || pid != 42 || epoch != math.MaxInt16-1 {
		t.Fatalf("bump to the last epoch: %d/%d %v", pid, epoch, err)
	}
	for range 2 { // the rotation, then its retry
		pid, epoch, err = initPID(c, 4, "tx", 60000, 42, math.MaxInt16-1)
		if err != nil || pid != 1000 || epoch != 0 {
			t.Fatalf("rotation: %d/%d %v, want 1000/0", pid, epoch, err)
		}
	}
	recs := l.records(p)
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(recs[len(recs)-1].Value); err != nil || v.Version != 1 || v.PreviousProducerID != 42 {
		t.Fatalf("rotation record: v%d previous %d, %v", v.Version, v.PreviousProducerID, err)
	}
	c.Close()
	c2 := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	c2.mu.RLock()
	tx := c2.txns["tx"]
	c2.mu.RUnlock()
	if tx.producerID != 1000 || tx.prevProducerID != 42 || tx.epoch != 0 {
		t.Fatalf("reloaded: %d (previous %d) epoch %d", tx.producerID, tx.prevProducerID, tx.epoch)
	}
}

func TestDescribeAndListTransactions(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	pa, ea := mustInit(t, c, "a", 60000)
	pb, _ := mustInit(t, c, "b", 60000)
	pc, ec := mustInit(t, c, "c", 60000)
	if err := add(c, 3, "a", pa, ea, tp("t", 1), tp("t", 0), tp("u", 0)); err != nil {
		t.Fatal(err)
	}
	if err := add(c, 3, "c", pc, ec, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "c", pc, ec, true); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "c", "CompleteCommit", 0)

	dr := kmsg.NewPtrDescribeTransactionsRequest()
	dr.TransactionalIDs = []string{"a", "missing", "", "secret"}
	resp := c.DescribeTransactions(dr, func(id string) bool { return id != "secret" })
	wantCodes := []error{nil, kerr.TransactionalIDNotFound, kerr.InvalidRequest, kerr.TransactionalIDAuthorizationFailed}
	for i, st := range resp.TransactionStates {
		if st.TransactionalID != dr.TransactionalIDs[i] || code(st.ErrorCode) != wantCodes[i] {
			t.Errorf("describe %q: %v, want %v", dr.TransactionalIDs[i], code(st.ErrorCode), wantCodes[i])
		}
	}
	a := resp.TransactionStates[0]
	topics := make(map[string][]int32)
	for _, topic := range a.Topics {
		topics[topic.Topic] = topic.Partitions
	}
	if a.State != "Ongoing" || a.ProducerID != pa || a.TimeoutMillis != 60000 || a.StartTimestamp <= 0 ||
		!cmp.Equal(map[string][]int32{"t": {0, 1}, "u": {0}}, topics) {
		t.Fatalf("describe a: %+v", a)
	}

	list := func(version int16, fill func(*kmsg.ListTransactionsRequest), may func(string) bool) ([]string, []string, error) {
		r := kmsg.NewPtrListTransactionsRequest()
		r.Version = version
		if fill != nil {
			fill(r)
		}
		resp := c.ListTransactions(r, may)
		var ids []string
		for _, st := range resp.TransactionStates {
			ids = append(ids, st.TransactionalID+"/"+st.TransactionState)
		}
		return ids, resp.UnknownStateFilters, code(resp.ErrorCode)
	}
	pattern := func(p string) func(*kmsg.ListTransactionsRequest) {
		return func(r *kmsg.ListTransactionsRequest) { r.TransactionalIDPattern = &p }
	}
	for _, tc := range []struct {
		name    string
		version int16
		fill    func(*kmsg.ListTransactionsRequest)
		may     func(string) bool
		want    []string
		unknown []string
		err     error
	}{
		{name: "all", want: []string{"a/Ongoing", "b/Empty", "c/CompleteCommit"}},
		{name: "state", fill: func(r *kmsg.ListTransactionsRequest) { r.StateFilters = []string{"Ongoing", "Empty"} }, want: []string{"a/Ongoing", "b/Empty"}},
		{name: "unknown state", fill: func(r *kmsg.ListTransactionsRequest) { r.StateFilters = []string{"Bogus"} }, unknown: []string{"Bogus"}},
		{name: "state names are exact", fill: func(r *kmsg.ListTransactionsRequest) { r.StateFilters = []string{"ongoing"} }, unknown: []string{"ongoing"}},
		{name: "producer", fill: func(r *kmsg.ListTransactionsRequest) { r.ProducerIDFilters = []int64{pb, 777} }, want: []string{"b/Empty"}},
		// Kafka's duration filter: started longer ago than it; no
		// transaction counts as started at -1.
		{name: "duration", version: 1, fill: func(r *kmsg.ListTransactionsRequest) { r.DurationFilterMillis = 3_600_000 }, want: []string{"b/Empty"}},
		{name: "duration ignored before v1", fill: func(r *kmsg.ListTransactionsRequest) { r.DurationFilterMillis = 3_600_000 }, want: []string{"a/Ongoing", "b/Empty", "c/CompleteCommit"}},
		{name: "pattern", version: 2, fill: pattern("a|c"), want: []string{"a/Ongoing", "c/CompleteCommit"}},
		{name: "pattern matches whole IDs", version: 2, fill: pattern("[ab]x?"), want: []string{"a/Ongoing", "b/Empty"}},
		{name: "bad pattern", version: 2, fill: pattern("("), err: kerr.InvalidRegularExpression},
		{name: "authorized only", may: func(id string) bool { return id != "a" }, want: []string{"b/Empty", "c/CompleteCommit"}},
	} {
		got, unknown, err := list(tc.version, tc.fill, tc.may)
		if !cmp.Equal(tc.want, got) || !cmp.Equal(tc.unknown, unknown) || err != tc.err {
			t.Errorf("%s: %v (unknown %v), %v; want %v (unknown %v), %v", tc.name, got, unknown, err, tc.want, tc.unknown, tc.err)
		}
	}
}
