package group

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// memLog is an in-memory Log: each partition a slice of records, each
// with its batch's producer and flags. Appends are durable at once, unless
// hold is set: then they wait for release.
type memLog struct {
	mu    sync.Mutex
	parts [][]LogRecord
	hold  bool
	held  []*memWrite
	fail  error         // every Append fails with it when set
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

func newMemLog(partitions int) *memLog { return &memLog{parts: make([][]LogRecord, partitions)} }

func (l *memLog) Partitions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parts)
}

func (l *memLog) Append(_ context.Context, p int32, records []Record) (Write, error) {
	return l.append(p, -1, false, false, records)
}

func (l *memLog) AppendTxn(_ context.Context, p int32, producerID int64, _ int16, records []Record) (Write, error) {
	return l.append(p, producerID, true, false, records)
}

// appendMarker appends producerID's transaction marker (COMMIT when
// commit) to p as the broker does, and returns its offset.
func (l *memLog) appendMarker(p int32, producerID int64, commit bool) int64 {
	key := []byte{0, 0, 0, 0}
	if commit {
		key[3] = 1
	}
	w, err := l.append(p, producerID, true, true, []Record{{Key: key, Value: []byte{0, 0, 0, 0, 0, 0}}})
	if err != nil {
		panic(err)
	}
	return w.Base()
}

func (l *memLog) append(p int32, producerID int64, txn, control bool, records []Record) (Write, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return nil, l.fail
	}
	w := &memWrite{base: int64(len(l.parts[p])), done: make(chan struct{})}
	for _, r := range records {
		l.parts[p] = append(l.parts[p], LogRecord{Offset: int64(len(l.parts[p])), Key: r.Key, Value: r.Value,
			ProducerID: producerID, Transactional: txn, Control: control})
	}
	if l.hold {
		l.held = append(l.held, w)
	} else {
		close(w.done)
	}
	return w, nil
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

func (l *memLog) Read(p int32, end int64, fn func(LogRecord)) error {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	if gate != nil {
		<-gate
	}
	l.mu.Lock()
	recs := l.parts[p][:min(end, int64(len(l.parts[p])))]
	l.mu.Unlock()
	for _, r := range recs {
		fn(r)
	}
	return nil
}

func (l *memLog) End(p int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.parts[p]))
}

// memTopics is a fixed set of topics.
type memTopics map[string]int32

func (m memTopics) Partitions(name string) int32 { return m[name] }

func (m memTopics) ID(name string) ([16]byte, bool) {
	if _, ok := m[name]; !ok {
		return [16]byte{}, false
	}
	var id [16]byte
	copy(id[:], name)
	return id, true
}

func (m memTopics) Name(id [16]byte) (string, bool) {
	for name := range m {
		if got, _ := m.ID(name); got == id {
			return name, true
		}
	}
	return "", false
}

func (m memTopics) Names() []string {
	var out []string
	for name := range m {
		out = append(out, name)
	}
	return out
}

func testConfig(cluster bool) Config {
	return Config{
		Cluster:                        cluster,
		GroupMinSessionTimeout:         100 * time.Millisecond,
		GroupMaxSessionTimeout:         time.Minute,
		ConsumerGroupHeartbeatInterval: time.Second,
		ConsumerGroupSessionTimeout:    45 * time.Second,
		OffsetsRetention:               time.Hour,
		Logger:                         slog.New(slog.DiscardHandler),
	}
}

// newTestCoordinator starts a coordinator over l (standalone unless
// cluster) with topics "t" (4 partitions) and "u" (1).
func newTestCoordinator(t testing.TB, l *memLog, cluster bool) *Coordinator {
	t.Helper()
	c, err := New(testConfig(cluster), l, memTopics{"t": 4, "u": 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var errTestLog = errors.New("test log: append refused")
