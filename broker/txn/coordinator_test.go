package txn

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/broker/group"
)

// A committed transaction writes COMMIT markers to exactly its partitions
// (offsets included), once, then completes; every state change is a
// record, and re-adding partitions already in the transaction writes none.
func TestCommitWritesMarkersAndCompletes(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, epoch := mustInit(t, c, "tx", 60000)
	if pid != 1000 || epoch != 0 {
		t.Fatalf("InitProducerId = %d/%d, want 1000/0", pid, epoch)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("EndTxn with no transaction = %v, want INVALID_TXN_STATE", err)
	}
	if err := add(c, 3, "tx", pid, epoch, tp("t", 0), tp("t", 1)); err != nil {
		t.Fatal(err)
	}
	if err := addOffsets(c, 3, "tx", pid, epoch, tp(group.OffsetsTopic, 7)); err != nil {
		t.Fatal(err)
	}
	if err := add(c, 3, "tx", pid, epoch, tp("t", 1)); err != nil {
		t.Fatal(err)
	}
	st := describe(c, "tx")
	if st.State != "Ongoing" || st.StartTimestamp <= 0 || len(st.Topics) != 2 {
		t.Fatalf("ongoing transaction described as %+v", st)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, true); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "tx", "CompleteCommit", 0)

	want := []markerCall{{pid, 0, 0, true, []TopicPartition{tp(group.OffsetsTopic, 7), tp("t", 0), tp("t", 1)}}}
	if diff := cmp.Diff(want, m.snapshot(), cmp.AllowUnexported(markerCall{})); diff != "" {
		t.Fatalf("markers (-want +got):\n%s", diff)
	}
	p := Partition("tx", 4)
	wantStates := []string{"Empty/0", "Ongoing/0", "Ongoing/0", "PrepareCommit/0", "CompleteCommit/0"}
	if diff := cmp.Diff(wantStates, statesOf(t, l, p, "tx")); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}

	// Retries of EndTxn after the commit: the same outcome succeeds,
	// the other is refused.
	if err := endTxn(c, 3, "tx", pid, epoch, true); err != nil {
		t.Fatalf("retried commit = %v", err)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, false); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("abort after commit = %v, want INVALID_TXN_STATE", err)
	}
	if st := describe(c, "tx"); len(st.Topics) != 0 {
		t.Fatalf("completed transaction still has partitions %v", st.Topics)
	}
}

// An aborted transaction writes ABORT markers; the producer then runs
// another transaction with the same epoch.
func TestAbortThenNextTransaction(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, epoch := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, epoch, tp("u", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, false); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "tx", "CompleteAbort", 0)
	if calls := m.snapshot(); len(calls) != 1 || calls[0].commit {
		t.Fatalf("markers = %+v, want one ABORT", calls)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, false); err != nil {
		t.Fatalf("retried abort = %v", err)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, true); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("commit after abort = %v, want INVALID_TXN_STATE", err)
	}
	if err := add(c, 3, "tx", pid, epoch, tp("t", 3)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, epoch, true); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "tx", "CompleteCommit", 0)
	if calls := m.snapshot(); len(calls) != 2 || !calls[1].commit || len(calls[1].parts) != 1 || calls[1].parts[0] != tp("t", 3) {
		t.Fatalf("markers = %+v", calls)
	}
}

func TestUnknownOrMismatchedProducer(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	if err := endTxn(c, 3, "nope", 1, 0, true); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("EndTxn of an unknown ID = %v", err)
	}
	if err := add(c, 3, "nope", 1, 0, tp("t", 0)); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("AddPartitionsToTxn of an unknown ID = %v", err)
	}
	pid, epoch := mustInit(t, c, "tx", 1000)
	if err := add(c, 3, "tx", pid+1, epoch, tp("t", 0)); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("another producer ID = %v", err)
	}
	if err := addOffsets(c, 3, "tx", pid+1, epoch, tp(group.OffsetsTopic, 0)); !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Fatalf("AddOffsetsToTxn of another producer ID = %v", err)
	}
	for _, timeout := range []int32{0, -1, int32(16 * time.Minute / time.Millisecond)} {
		if _, _, err := initPID(c, 4, "tx", timeout, -1, -1); !errors.Is(err, kerr.InvalidTransactionTimeout) {
			t.Fatalf("timeout %d ms = %v, want INVALID_TRANSACTION_TIMEOUT", timeout, err)
		}
	}
	if _, _, err := initPID(c, 4, "", 1000, -1, -1); !errors.Is(err, kerr.InvalidRequest) {
		t.Fatalf("empty transactional ID = %v", err)
	}
}

// A second InitProducerId bumps the epoch: the first producer is fenced,
// with PRODUCER_FENCED or, on request versions that predate it,
// INVALID_PRODUCER_EPOCH.
func TestInitProducerIDFences(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	pid2, e1 := mustInit(t, c, "tx", 60000)
	if pid2 != pid || e1 != e0+1 {
		t.Fatalf("second InitProducerId = %d/%d, want %d/%d", pid2, e1, pid, e0+1)
	}
	for _, v := range []struct {
		version int16
		want    error
	}{{3, kerr.ProducerFenced}, {2, kerr.ProducerFenced}, {1, kerr.InvalidProducerEpoch}, {0, kerr.InvalidProducerEpoch}} {
		if err := add(c, v.version, "tx", pid, e0, tp("t", 0)); !errors.Is(err, v.want) {
			t.Errorf("AddPartitionsToTxn v%d with the old epoch = %v, want %v", v.version, err, v.want)
		}
		if err := addOffsets(c, v.version, "tx", pid, e0, tp(group.OffsetsTopic, 0)); !errors.Is(err, v.want) {
			t.Errorf("AddOffsetsToTxn v%d with the old epoch = %v, want %v", v.version, err, v.want)
		}
		if err := endTxn(c, v.version, "tx", pid, e0, true); !errors.Is(err, v.want) {
			t.Errorf("EndTxn v%d with the old epoch = %v, want %v", v.version, err, v.want)
		}
	}
	if err := add(c, 3, "tx", pid, e1, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
}

// InitProducerId while a transaction is ongoing aborts it with the epoch
// bumped and answers CONCURRENT_TRANSACTIONS; the retry bumps again.
func TestInitProducerIDAbortsOngoing(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := initPID(c, 4, "tx", 60000, -1, -1); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("InitProducerId over an ongoing transaction = %v, want CONCURRENT_TRANSACTIONS", err)
	}
	waitState(t, c, "tx", "CompleteAbort", 1)
	if calls := m.snapshot(); len(calls) != 1 || calls[0].commit || calls[0].epoch != 1 {
		t.Fatalf("markers = %+v, want one ABORT at epoch 1", calls)
	}
	if err := endTxn(c, 3, "tx", pid, e0, true); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the fenced producer's EndTxn = %v", err)
	}
	if _, e2 := mustInit(t, c, "tx", 60000); e2 != 2 {
		t.Fatalf("retried InitProducerId epoch = %d, want 2", e2)
	}
	want := []string{"Empty/0", "Ongoing/0", "PrepareAbort/1", "CompleteAbort/1", "Empty/2"}
	if diff := cmp.Diff(want, statesOf(t, l, Partition("tx", 4), "tx")); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
}

// A transaction past its timeout is aborted with the epoch bumped, so the
// zombie producer's next request is fenced.
func TestTimedOutTransactionIsAborted(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	cfg := testConfig(false)
	cfg.AbortCheckInterval = 10 * time.Millisecond
	c := newTestCoordinator(t, l, m, cfg)
	pid, e0 := mustInit(t, c, "slow", 50)
	if err := add(c, 3, "slow", pid, e0, tp("t", 2)); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "slow", "CompleteAbort", 1)
	if calls := m.snapshot(); len(calls) != 1 || calls[0].commit || calls[0].epoch != 1 || calls[0].parts[0] != tp("t", 2) {
		t.Fatalf("markers = %+v, want one ABORT at epoch 1", calls)
	}
	if err := endTxn(c, 3, "slow", pid, e0, true); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the zombie's EndTxn = %v, want PRODUCER_FENCED", err)
	}
	if err := add(c, 3, "slow", pid, e0, tp("t", 2)); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the zombie's AddPartitionsToTxn = %v, want PRODUCER_FENCED", err)
	}
}

// While a transaction is being ended every change of it is
// CONCURRENT_TRANSACTIONS; once its markers are written it completes.
func TestConcurrentTransactionsWhilePreparing(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	block := make(chan struct{})
	m.setBlock(block)
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, e0, true); err != nil {
		t.Fatal(err)
	}
	if st := describe(c, "tx"); st.State != "PrepareCommit" {
		t.Fatalf("state %s, want PrepareCommit", st.State)
	}
	for name, err := range map[string]error{
		"AddPartitionsToTxn": add(c, 3, "tx", pid, e0, tp("t", 1)),
		"AddOffsetsToTxn":    addOffsets(c, 3, "tx", pid, e0, tp(group.OffsetsTopic, 1)),
		"EndTxn(commit)":     endTxn(c, 3, "tx", pid, e0, true),
		"Verify":             c.Verify("tx", pid, e0, tp("t", 0)),
		"InitProducerId":     func() error { _, _, err := initPID(c, 4, "tx", 60000, -1, -1); return err }(),
	} {
		if !errors.Is(err, kerr.ConcurrentTransactions) {
			t.Errorf("%s while committing = %v, want CONCURRENT_TRANSACTIONS", name, err)
		}
	}
	// Kafka answers the other outcome CONCURRENT_TRANSACTIONS too while
	// the completion is pending (INVALID_TXN_STATE once complete).
	if err := endTxn(c, 3, "tx", pid, e0, false); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Errorf("EndTxn(abort) while committing = %v, want CONCURRENT_TRANSACTIONS", err)
	}
	close(block)
	waitState(t, c, "tx", "CompleteCommit", 0)
}

// A change being written keeps the ID's other changes out until durable.
func TestConcurrentTransactionsWhileWriting(t *testing.T) {
	l := newMemLog(4)
	c := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	p := Partition("tx", 4)
	done := make(chan error, 1)
	go func() { done <- add(c, 3, "tx", pid, e0, tp("t", 0)) }()
	checkFor(t, 5*time.Second, func() error {
		if n := len(l.records(p)); n != 2 {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})
	if err := add(c, 3, "tx", pid, e0, tp("t", 1)); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("AddPartitionsToTxn during a write = %v, want CONCURRENT_TRANSACTIONS", err)
	}
	l.release(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.hold = false
	l.mu.Unlock()
	if err := add(c, 3, "tx", pid, e0, tp("t", 1)); err != nil {
		t.Fatal(err)
	}
}

// A failed write is answered with a code the client retries, and leaves
// nothing pending.
func TestFailedWrites(t *testing.T) {
	l := newMemLog(4)
	c := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	for _, f := range []struct {
		err  error
		want error
	}{
		{kerr.NotEnoughReplicas, kerr.CoordinatorNotAvailable},
		{fmt.Errorf("append: %w", kerr.NotLeaderForPartition), kerr.NotCoordinator},
		{errors.New("disk on fire"), kerr.CoordinatorNotAvailable},
	} {
		l.setFail(f.err)
		if err := add(c, 3, "tx", pid, e0, tp("t", 0)); !errors.Is(err, f.want) {
			t.Errorf("append failing with %v: %v, want %v", f.err, err, f.want)
		}
	}
	l.setFail(nil)
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- add(c, 3, "tx", pid, e0, tp("t", 0)) }()
	checkFor(t, 5*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.held) == 0 {
			return errors.New("no write held")
		}
		return nil
	})
	l.release(kerr.RequestTimedOut)
	if err := <-done; !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("a write never durable = %v, want COORDINATOR_NOT_AVAILABLE", err)
	}
	l.mu.Lock()
	l.hold = false
	l.mu.Unlock()
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatalf("retry after failed writes: %v", err)
	}
}

// A fence whose PrepareAbort was not written still fences (the epoch was
// bumped in memory, never handed out), and the next fence does not bump
// again.
func TestFailedFenceIsNotBumpedTwice(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	l.setFail(kerr.NotEnoughReplicas)
	if _, _, err := initPID(c, 4, "tx", 60000, -1, -1); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("InitProducerId with the log failing = %v", err)
	}
	if err := add(c, 3, "tx", pid, e0, tp("t", 1)); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the old producer after a failed fence = %v, want PRODUCER_FENCED", err)
	}
	l.setFail(nil)
	if _, _, err := initPID(c, 4, "tx", 60000, -1, -1); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("InitProducerId = %v, want CONCURRENT_TRANSACTIONS", err)
	}
	waitState(t, c, "tx", "CompleteAbort", 1)
	if _, e := mustInit(t, c, "tx", 60000); e != 2 {
		t.Fatalf("epoch after the fence = %d, want 2", e)
	}
}

// Operator abort: fences and aborts the ongoing transaction, returning
// once complete.
func TestOperatorAbort(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{}
	c := newTestCoordinator(t, l, m, testConfig(false))
	ctx := context.Background()
	if err := c.Abort(ctx, "nope"); !errors.Is(err, kerr.TransactionalIDNotFound) {
		t.Fatalf("Abort of an unknown ID = %v", err)
	}
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := c.Abort(ctx, "tx"); !errors.Is(err, kerr.InvalidTxnState) {
		t.Fatalf("Abort with no transaction = %v, want INVALID_TXN_STATE", err)
	}
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(ctx, "tx"); err != nil {
		t.Fatal(err)
	}
	if st := describe(c, "tx"); st.State != "CompleteAbort" || st.ProducerEpoch != 1 {
		t.Fatalf("after Abort: %s epoch %d", st.State, st.ProducerEpoch)
	}
	if calls := m.snapshot(); len(calls) != 1 || calls[0].commit || calls[0].epoch != 1 {
		t.Fatalf("markers = %+v", calls)
	}
	if err := endTxn(c, 3, "tx", pid, e0, true); !errors.Is(err, kerr.ProducerFenced) {
		t.Fatalf("the aborted producer's EndTxn = %v", err)
	}

	// Markers that cannot be written: Abort returns when ctx ends,
	// saying the abort is decided.
	m.setBlock(make(chan struct{}))
	pid, e1 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e1, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c.Abort(tctx, "tx"); !errors.Is(err, kerr.RequestTimedOut) {
		t.Fatalf("Abort with markers stuck = %v, want REQUEST_TIMED_OUT", err)
	}
	if st := describe(c, "tx"); st.State != "PrepareAbort" {
		t.Fatalf("state %s, want PrepareAbort", st.State)
	}
}

// Past MaxTransactionalIDs a new ID is refused with a retriable code;
// known ones are served.
func TestMaxTransactionalIDs(t *testing.T) {
	cfg := testConfig(false)
	cfg.MaxTransactionalIDs = 2
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, cfg)
	mustInit(t, c, "a", 1000)
	mustInit(t, c, "b", 1000)
	if _, _, err := initPID(c, 4, "c", 1000, -1, -1); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("a third ID = %v, want COORDINATOR_NOT_AVAILABLE", err)
	}
	if _, e := mustInit(t, c, "a", 1000); e != 1 {
		t.Fatalf("a known ID's epoch = %d, want 1", e)
	}
}

// Idle IDs expire: their records are tombstoned and they are forgotten,
// here and after a reload; an ongoing transaction's ID stays.
func TestIDExpiration(t *testing.T) {
	l := newMemLog(4)
	cfg := testConfig(false)
	cfg.IDExpiration = time.Millisecond
	cfg.IDExpirationCheckInterval = 10 * time.Millisecond
	c := newTestCoordinator(t, l, &fakeMarkers{}, cfg)
	mustInit(t, c, "idle", 60000)
	pid, e0 := mustInit(t, c, "busy", 60000)
	if err := add(c, 3, "busy", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if st := describe(c, "idle"); st.ErrorCode != kerr.TransactionalIDNotFound.Code {
			return fmt.Errorf("idle ID not expired: %+v", st)
		}
		return nil
	})
	if st := describe(c, "busy"); st.State != "Ongoing" {
		t.Fatalf("busy ID: %+v", st)
	}
	states := statesOf(t, l, Partition("idle", 4), "idle")
	if states[len(states)-1] != "tombstone" {
		t.Fatalf("idle records %v, want a tombstone last", states)
	}
	c.Close()
	c2 := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	if st := describe(c2, "idle"); st.ErrorCode != kerr.TransactionalIDNotFound.Code {
		t.Fatalf("expired ID after a reload: %+v", st)
	}
	if pid, epoch := mustInit(t, c2, "idle", 1000); pid != 1000 || epoch != 0 {
		t.Fatalf("expired ID initialized again as %d/%d, want a fresh producer", pid, epoch)
	}
}

// Close stops marker retries and waits for its goroutines; afterwards
// requests are refused.
func TestClose(t *testing.T) {
	l, m := newMemLog(4), &fakeMarkers{fail: func(int, markerCall) error { return errTestMarkers }}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, e0, true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if len(m.snapshot()) < 2 {
			return errors.New("markers not retried")
		}
		return nil
	})
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	n := len(m.snapshot())
	if _, _, err := initPID(c, 4, "tx", 60000, -1, -1); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("InitProducerId after Close = %v", err)
	}
	if got := len(m.snapshot()); got != n {
		t.Fatalf("markers written after Close: %d, then %d", n, got)
	}
}
