package broker

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// stallStore is an object store whose reads wait, while stalled, until
// they are let go or their context ends: object storage that hangs.
type stallStore struct {
	tier3.Store
	mu      sync.Mutex
	stalled chan struct{} // nil: not stalled
}

func (s *stallStore) stall() {
	s.mu.Lock()
	s.stalled = make(chan struct{})
	s.mu.Unlock()
}

func (s *stallStore) letGo() {
	s.mu.Lock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
	s.mu.Unlock()
}

func (s *stallStore) wait(ctx context.Context) error {
	s.mu.Lock()
	ch := s.stalled
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *stallStore) Get(ctx context.Context, key string) (io.ReadCloser, tier3.ObjectInfo, error) {
	if err := s.wait(ctx); err != nil {
		return nil, tier3.ObjectInfo{}, err
	}
	return s.Store.Get(ctx, key)
}

func (s *stallStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Store.GetRange(ctx, key, off, n)
}

// A search's read of an archived offset ends with the search's context,
// whatever object storage does: a search API request ends at its timeout.
func TestSearchLogReadHonoursContext(t *testing.T) {
	store := &stallStore{Store: tier3.NewMemStore()}
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "arch", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	fillTiered(t, b, p, 100, 1_700_000_000_000)
	b.clean(time.Now())
	if p.localStart() == 0 {
		t.Fatal("nothing archived only")
	}
	b.Close()
	b = testBroker(t, dir, tier3Config(store)) // no archive chunk cached in memory
	p = b.lookupTopic("arch").partitions[0]
	waitArchLoaded(t, p)
	sl := b.SearchLog()
	top, err := sl.Topic(context.Background(), "arch")
	if err != nil {
		t.Fatal(err)
	}
	store.stall()
	defer store.letGo()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = sl.Read(ctx, top, 0, 0, 1<<20)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Fatalf("archived read with the store stalled: %v after %v; want the context's end after 100ms", err, took)
	}
	store.letGo()
	got, err := sl.Read(context.Background(), top, 0, 0, 1<<20)
	if err != nil || len(got) == 0 {
		t.Fatalf("archived read after: %d bytes, %v", len(got), err)
	}
}
