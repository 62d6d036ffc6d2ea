package txn

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A coordinator that stops after PrepareCommit is durable (its markers
// failing) leaves the commit to the next one over the same log, which
// resumes the markers from the record and completes.
func TestReloadResumesPrepareCommit(t *testing.T) {
	l := newMemLog(4)
	m1 := &fakeMarkers{fail: func(int, markerCall) error { return errTestMarkers }}
	c1 := newTestCoordinator(t, l, m1, testConfig(false))
	pid, e0 := mustInit(t, c1, "tx", 60000)
	if err := add(c1, 3, "tx", pid, e0, tp("t", 0), tp("u", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c1, 3, "tx", pid, e0, true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		if len(m1.snapshot()) == 0 {
			return errors.New("no markers tried")
		}
		return nil
	})
	c1.Close()

	m2 := &fakeMarkers{}
	c2 := newTestCoordinator(t, l, m2, testConfig(false))
	waitState(t, c2, "tx", "CompleteCommit", 0)
	calls := m2.snapshot()
	if len(calls) != 1 || !calls[0].commit || calls[0].producerID != pid || len(calls[0].parts) != 2 {
		t.Fatalf("resumed markers = %+v", calls)
	}
	// The reloaded producer goes on.
	if err := add(c2, 3, "tx", pid, e0, tp("t", 1)); err != nil {
		t.Fatal(err)
	}
}

// A reloaded Ongoing transaction is kept, and aborted by the timeout loop
// once past its timeout.
func TestReloadKeepsOngoing(t *testing.T) {
	l := newMemLog(4)
	c1 := newTestCoordinator(t, l, &fakeMarkers{}, testConfig(false))
	pid, e0 := mustInit(t, c1, "tx", 100)
	if err := add(c1, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	cfg := testConfig(false)
	cfg.AbortCheckInterval = 10 * time.Millisecond
	m := &fakeMarkers{}
	c2 := newTestCoordinator(t, l, m, cfg)
	waitState(t, c2, "tx", "CompleteAbort", 1)
	if calls := m.snapshot(); len(calls) != 1 || calls[0].commit || calls[0].parts[0] != tp("t", 0) {
		t.Fatalf("markers = %+v", calls)
	}
}

// In a cluster the coordinator serves the IDs of the partitions it leads:
// loading (COORDINATOR_LOAD_IN_PROGRESS meanwhile) when it takes one up,
// NOT_COORDINATOR once given up. The next leader resumes a transaction
// being committed (with its own coordinator epoch on the markers) and
// serves an ongoing one.
func TestLeadershipHandover(t *testing.T) {
	const parts = 4
	l := newMemLog(parts)
	committing, ongoing := idIn(1, parts, "c"), idIn(1, parts, "o")
	elsewhere := idIn(2, parts, "e")

	ma := &fakeMarkers{}
	ma.setBlock(make(chan struct{})) // a's markers never get through
	a := newTestCoordinator(t, l, ma, testConfig(true))
	if err := a.Unavailable(committing); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("before SetLeadership: %v, want NOT_COORDINATOR", err)
	}
	a.SetLeadership(map[int32]int32{1: 5})
	waitServed(t, a, committing)
	if _, _, err := initPID(a, 4, elsewhere, 1000, -1, -1); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("an ID of another partition = %v, want NOT_COORDINATOR", err)
	}
	cpid, ce := mustInit(t, a, committing, 60000)
	opid, oe := mustInit(t, a, ongoing, 60000)
	if err := add(a, 3, committing, cpid, ce, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := add(a, 3, ongoing, opid, oe, tp("t", 1)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(a, 3, committing, cpid, ce, true); err != nil {
		t.Fatal(err)
	}

	a.SetLeadership(map[int32]int32{})
	if err := add(a, 3, ongoing, opid, oe, tp("t", 2)); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("after giving the partition up: %v, want NOT_COORDINATOR", err)
	}

	gate := make(chan struct{})
	l.mu.Lock()
	l.gate = gate
	l.mu.Unlock()
	mb := &fakeMarkers{}
	b := newTestCoordinator(t, l, mb, testConfig(true))
	b.SetLeadership(map[int32]int32{1: 6})
	if err := b.Unavailable(ongoing); !errors.Is(err, kerr.CoordinatorLoadInProgress) {
		t.Fatalf("while loading: %v, want COORDINATOR_LOAD_IN_PROGRESS", err)
	}
	if resp := b.ListTransactions(kmsg.NewPtrListTransactionsRequest(), nil); resp.ErrorCode != kerr.CoordinatorLoadInProgress.Code {
		t.Fatalf("ListTransactions while loading: %v", code(resp.ErrorCode))
	}
	close(gate)
	waitServed(t, b, ongoing)

	waitState(t, b, committing, "CompleteCommit", ce)
	calls := mb.snapshot()
	if len(calls) != 1 || calls[0].coordinatorEpoch != 6 || !calls[0].commit || calls[0].parts[0] != tp("t", 0) {
		t.Fatalf("b's markers = %+v, want one COMMIT at coordinator epoch 6", calls)
	}
	st := describe(b, ongoing)
	if st.State != "Ongoing" || len(st.Topics) != 1 || st.Topics[0].Topic != "t" {
		t.Fatalf("ongoing transaction on b: %+v", st)
	}
	if err := endTxn(b, 3, ongoing, opid, oe, true); err != nil {
		t.Fatal(err)
	}
	waitState(t, b, ongoing, "CompleteCommit", oe)

	// Leading the partition under a new epoch (another broker may have
	// led it in between) reloads it.
	b.SetLeadership(map[int32]int32{1: 7})
	waitServed(t, b, ongoing)
	if st := describe(b, ongoing); st.State != "CompleteCommit" {
		t.Fatalf("after a reload: %+v", st)
	}
}

// SetLeadership is ignored standalone, and every ID served.
func TestStandaloneServesAll(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(false))
	c.SetLeadership(map[int32]int32{})
	for i := range 8 {
		if err := c.Unavailable(fmt.Sprintf("id-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newTestCoordinator(t, newMemLog(0), &fakeMarkers{}, testConfig(false))
	if err := c2.Unavailable("x"); !errors.Is(err, kerr.CoordinatorNotAvailable) {
		t.Fatalf("with no %s: %v", StateTopic, err)
	}
}

// A marker write that keeps failing for one partition is retried for that
// partition only.
func TestMarkersRetryFailedPartitions(t *testing.T) {
	l := newMemLog(4)
	m := &fakeMarkers{fail: func(n int, call markerCall) error {
		if n < 2 {
			return PartitionErrors{tp("t", 1): fmt.Errorf("leader moved: %w", kerr.NotLeaderForPartition)}
		}
		return nil
	}}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0), tp("t", 1)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, e0, false); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, "tx", "CompleteAbort", 0)
	calls := m.snapshot()
	if len(calls) != 3 || len(calls[0].parts) != 2 || len(calls[1].parts) != 1 || calls[1].parts[0] != tp("t", 1) || calls[2].parts[0] != tp("t", 1) {
		t.Fatalf("markers = %+v", calls)
	}
}

// Markers written, the Complete* record is retried until durable.
func TestCompletionRetried(t *testing.T) {
	l := newMemLog(4)
	m := &fakeMarkers{fail: func(int, markerCall) error {
		l.setFail(kerr.NotEnoughReplicas) // from now on, until cleared
		return nil
	}}
	c := newTestCoordinator(t, l, m, testConfig(false))
	pid, e0 := mustInit(t, c, "tx", 60000)
	if err := add(c, 3, "tx", pid, e0, tp("t", 0)); err != nil {
		t.Fatal(err)
	}
	if err := endTxn(c, 3, "tx", pid, e0, true); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.fails < 2 {
			return fmt.Errorf("%d failed appends", l.fails)
		}
		return nil
	})
	if err := endTxn(c, 3, "tx", pid, e0, true); !errors.Is(err, kerr.ConcurrentTransactions) {
		t.Fatalf("EndTxn while the completion is retried = %v", err)
	}
	l.setFail(nil)
	waitState(t, c, "tx", "CompleteCommit", 0)
	if n := len(m.snapshot()); n != 1 {
		t.Fatalf("%d marker writes, want 1", n)
	}
}

func TestSortMarkerResult(t *testing.T) {
	c := &Coordinator{topics: testTopics}
	sent := []TopicPartition{tp("t", 0), tp("t", 1), tp("gone", 0), tp("u", 0)}
	for _, tc := range []struct {
		name           string
		err            error
		written, retry int
		stop           bool
	}{
		{name: "ok", err: nil, written: 4},
		{name: "all failed", err: errTestMarkers, written: 1, retry: 3}, // "gone" no longer exists
		{name: "fenced coordinator", err: kerr.TransactionCoordinatorFenced, stop: true},
		{name: "partial", err: PartitionErrors{tp("t", 1): kerr.NotEnoughReplicas, tp("u", 0): kerr.UnsupportedForMessageFormat}, written: 3, retry: 1},
		{name: "partial fenced", err: PartitionErrors{tp("t", 1): fmt.Errorf("x: %w", kerr.InvalidProducerEpoch)}, written: 3, stop: true},
	} {
		written, retry, stop := c.sortMarkerResult(tc.err, sent)
		if len(written) != tc.written || len(retry) != tc.retry || (stop != nil) != tc.stop {
			t.Errorf("%s: written %v, retry %v, stop %v", tc.name, written, retry, stop)
		}
	}
}

// Abort of an ID of a partition given up is NOT_COORDINATOR.
func TestAbortNotCoordinator(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(4), &fakeMarkers{}, testConfig(true))
	if err := c.Abort(context.Background(), "x"); !errors.Is(err, kerr.NotCoordinator) {
		t.Fatalf("Abort = %v", err)
	}
}
