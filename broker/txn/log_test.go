package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
)

// memLog is an in-memory Log: each partition a slice of records. Appends
// are durable at once, unless hold is set: then they wait for release.
type memLog struct {
	mu    sync.Mutex
	parts [][]group.Record
	hold  bool
	held  []*memWrite
	fail  error         // every Append fails with it when set
	fails int           // Appends failed so
	gate  chan struct{} // Read waits for it to close, when set
}

type memWrite struct {
	base int64
	done chan struct{}
	err  error
}

func (w *memWrite) Base() int64 { return w.base }

func (w *memWrite) Wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ Log = (*memLog)(nil)

func newMemLog(partitions int) *memLog { return &memLog{parts: make([][]group.Record, partitions)} }

func (l *memLog) Partitions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parts)
}

func (l *memLog) Append(_ context.Context, p int32, records []group.Record) (group.Write, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		l.fails++
		return nil, l.fail
	}
	w := &memWrite{base: int64(len(l.parts[p])), done: make(chan struct{})}
	l.parts[p] = append(l.parts[p], records...)
	if l.hold {
		l.held = append(l.held, w)
	} else {
		close(w.done)
	}
	return w, nil
}

func (l *memLog) AppendTxn(ctx context.Context, p int32, _ int64, _ int16, records []group.Record) (group.Write, error) {
	return l.Append(ctx, p, records)
}

// release makes every held write durable (err nil) or failed.
func (l *memLog) release(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.held {
		w.err = err
		close(w.done)
	}
	l.held = nil
}

func (l *memLog) Read(p int32, end int64, fn func(group.LogRecord)) error {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	recs := l.parts[p][:min(end, int64(len(l.parts[p])))]
	l.mu.Unlock()
	for i, r := range recs {
		fn(group.LogRecord{Offset: int64(i), Key: r.Key, Value: r.Value, ProducerID: -1})
	}
	return nil
}

func (l *memLog) End(p int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.parts[p]))
}

func (l *memLog) setFail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = err
}

// records returns partition p's records.
func (l *memLog) records(p int32) []group.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.parts[p])
}

// memTopics is a fixed set of topics.
type memTopics map[string]int32

func (m memTopics) Partitions(name string) int32 { return m[name] }

var testTopics = memTopics{"t": 4, "u": 1, group.OffsetsTopic: 50}

// markerCall is one Markers.Write call.
type markerCall struct {
	producerID       int64
	epoch            int16
	coordinatorEpoch int32
	commit           bool
	parts            []TopicPartition
}

// fakeMarkers records Markers.Write calls; fail, when set, decides each
// call's error; block, when set, holds calls until closed (or their
// context ends).
type fakeMarkers struct {
	mu    sync.Mutex
	calls []markerCall
	fail  func(n int, call markerCall) error // n: the call's index
	block chan struct{}
}

var _ Markers = (*fakeMarkers)(nil)

func (m *fakeMarkers) Write(ctx context.Context, producerID int64, epoch int16, coordinatorEpoch int32, commit bool, parts []TopicPartition) error {
	m.mu.Lock()
	block := m.block
	m.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	call := markerCall{producerID, epoch, coordinatorEpoch, commit, slices.Clone(parts)}
	m.calls = append(m.calls, call)
	if m.fail != nil {
		return m.fail(len(m.calls)-1, call)
	}
	return nil
}

func (m *fakeMarkers) snapshot() []markerCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

func (m *fakeMarkers) setBlock(ch chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.block = ch
}

func testConfig(cluster bool) Config {
	return Config{
		Cluster:            cluster,
		AbortCheckInterval: time.Hour,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// producerIDs allocates producer IDs from 1000.
func producerIDs() func() (int64, error) {
	var next atomic.Int64
	next.Store(999)
	return func() (int64, error) { return next.Add(1), nil }
}

// newTestCoordinator starts a coordinator over l and m with cfg, closed
// at the end of the test.
func newTestCoordinator(t testing.TB, l *memLog, m *fakeMarkers, cfg Config) *Coordinator {
	t.Helper()
	c, err := New(cfg, l, m, testTopics, producerIDs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// code is a response's error code as an error (nil for none).
func code(c int16) error {
	if err := kerr.ErrorForCode(c); err != nil {
		return err
	}
	return nil
}

func initPID(c *Coordinator, version int16, id string, timeoutMs int32, claimID int64, claimEpoch int16) (int64, int16, error) {
	r := kmsg.NewPtrInitProducerIDRequest()
	r.Version = version
	r.TransactionalID = &id
	r.TransactionTimeoutMillis = timeoutMs
	r.ProducerID, r.ProducerEpoch = claimID, claimEpoch
	resp := c.InitProducerID(context.Background(), r)
	return resp.ProducerID, resp.ProducerEpoch, code(resp.ErrorCode)
}

func mustInit(t *testing.T, c *Coordinator, id string, timeoutMs int32) (int64, int16) {
	t.Helper()
	pid, epoch, err := initPID(c, 4, id, timeoutMs, -1, -1)
	if err != nil {
		t.Fatalf("InitProducerId(%s): %v", id, err)
	}
	return pid, epoch
}

func tp(topic string, p int32) TopicPartition { return TopicPartition{topic, p} }

// addReq is an AddPartitionsToTxn request of version (below 4).
func addReq(version int16, id string, pid int64, epoch int16, parts ...TopicPartition) *kmsg.AddPartitionsToTxnRequest {
	r := kmsg.NewPtrAddPartitionsToTxnRequest()
	r.Version = version
	r.TransactionalID, r.ProducerID, r.ProducerEpoch = id, pid, epoch
	for _, p := range parts {
		i := slices.IndexFunc(r.Topics, func(t kmsg.AddPartitionsToTxnRequestTopic) bool { return t.Topic == p.Topic })
		if i < 0 {
			r.Topics = append(r.Topics, kmsg.AddPartitionsToTxnRequestTopic{Topic: p.Topic})
			i = len(r.Topics) - 1
		}
		r.Topics[i].Partitions = append(r.Topics[i].Partitions, p.Partition)
	}
	return r
}

// addCodes returns the code of every partition of an AddPartitionsToTxn
// response (below v4).
func addCodes(resp *kmsg.AddPartitionsToTxnResponse) map[TopicPartition]error {
	out := make(map[TopicPartition]error)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[tp(t.Topic, p.Partition)] = code(p.ErrorCode)
		}
	}
	return out
}

// add adds parts and returns their (common) error.
func add(c *Coordinator, version int16, id string, pid int64, epoch int16, parts ...TopicPartition) error {
	codes := addCodes(c.AddPartitionsToTxn(context.Background(), addReq(version, id, pid, epoch, parts...), nil))
	var first error
	for i, p := range parts {
		if i == 0 {
			first = codes[p]
		} else if !errors.Is(codes[p], first) && codes[p] != first {
			return fmt.Errorf("mixed codes %v", codes)
		}
	}
	return first
}

func addOffsets(c *Coordinator, version int16, id string, pid int64, epoch int16, part TopicPartition) error {
	r := kmsg.NewPtrAddOffsetsToTxnRequest()
	r.Version = version
	r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group = id, pid, epoch, "g"
	return code(c.AddOffsetsToTxn(context.Background(), r, part).ErrorCode)
}

func endTxn(c *Coordinator, version int16, id string, pid int64, epoch int16, commit bool) error {
	r := kmsg.NewPtrEndTxnRequest()
	r.Version = version
	r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit = id, pid, epoch, commit
	return code(c.EndTxn(context.Background(), r).ErrorCode)
}

func describe(c *Coordinator, id string) kmsg.DescribeTransactionsResponseTransactionState {
	r := kmsg.NewPtrDescribeTransactionsRequest()
	r.TransactionalIDs = []string{id}
	return c.DescribeTransactions(r, nil).TransactionStates[0]
}

// checkFor polls fn until it returns nil, failing the test with its last
// error after timeout.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitState waits until id is in state with epoch.
func waitState(t *testing.T, c *Coordinator, id, state string, epoch int16) kmsg.DescribeTransactionsResponseTransactionState {
	t.Helper()
	var st kmsg.DescribeTransactionsResponseTransactionState
	checkFor(t, 5*time.Second, func() error {
		st = describe(c, id)
		if st.ErrorCode != 0 || st.State != state || st.ProducerEpoch != epoch {
			return fmt.Errorf("%s: %v state %s epoch %d, want %s epoch %d", id, code(st.ErrorCode), st.State, st.ProducerEpoch, state, epoch)
		}
		return nil
	})
	return st
}

// statesOf decodes partition p's records: each one's state ("tombstone"
// for none) and epoch.
func statesOf(t *testing.T, l *memLog, p int32, id string) []string {
	t.Helper()
	var out []string
	for _, rec := range l.records(p) {
		got, tr, _, err := decodeRecord(rec.Key, rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if got != id {
			continue
		}
		if tr == nil {
			out = append(out, "tombstone")
			continue
		}
		out = append(out, fmt.Sprintf("%v/%d", tr.to, tr.epoch))
	}
	return out
}

// idIn returns a transactional ID whose partition of n is p.
func idIn(p int32, n int, prefix string) string {
	for i := 0; ; i++ {
		if id := fmt.Sprintf("%s-%d", prefix, i); Partition(id, n) == p {
			return id
		}
	}
}

func waitServed(t *testing.T, c *Coordinator, id string) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		if err := c.Unavailable(id); err != nil {
			return fmt.Errorf("%s not served: %w", id, err)
		}
		return nil
	})
}

var errTestMarkers = errors.New("test markers: leader unreachable")
