package indexer

import (
	"context"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/blevesearch/bleve/v2"
)

// Realtime index (CHRONIK_REALTIME_INDEX): one in-memory index per
// partition of the tail that is not archived yet, extended with new
// records every interval by a background loop (RunRealtime) and at each
// search, and built again from the new start when the front of the tail
// is archived. Without it, a search through a broker indexes the tail in
// memory at search time. Either way the documents are those of the
// segment indexes, so hits do not change.

// tails holds the realtime indexes.
type tails struct {
	mu  sync.Mutex // guards m
	m   map[string]*tailIndex
	max int // partitions with a realtime index, at most
}

// tailIndex is one partition's tail index.
type tailIndex struct {
	mu       sync.Mutex // held while it is extended, trimmed or replaced
	cur      *tailGen
	from, to int64 // cur indexes offsets [from, to)
	used     time.Time
}

// tailGen is one build of a tail index, closed when replaced and unused.
type tailGen struct {
	idx  bleve.Index
	refs int  // guarded by the tailIndex's mu
	dead bool // replaced: close when refs reaches 0
}

func newTails(max int) *tails { return &tails{m: map[string]*tailIndex{}, max: max} }

func tailKey(t Topic, p int32) string {
	return hex.EncodeToString(t.ID[:]) + "/" + strconv.Itoa(int(p))
}

func (ts *tails) get(key string) *tailIndex {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ti, ok := ts.m[key]
	if !ok {
		if len(ts.m) >= ts.max {
			ts.evictLocked()
		}
		ti = &tailIndex{}
		ts.m[key] = ti
	}
	ti.used = time.Now()
	return ti
}

// evictLocked drops the least recently used tail index.
func (ts *tails) evictLocked() {
	var oldK string
	var old *tailIndex
	for k, ti := range ts.m {
		if old == nil || ti.used.Before(old.used) {
			oldK, old = k, ti
		}
	}
	if old == nil {
		return
	}
	delete(ts.m, oldK)
	old.mu.Lock()
	old.retireLocked()
	old.mu.Unlock()
}

func (ti *tailIndex) retireLocked() {
	if g := ti.cur; g != nil {
		g.dead = true
		if g.refs == 0 {
			_ = g.idx.Close()
		}
	}
	ti.cur = nil
}

// updateTailLocked makes the index cover [u.from, u.to) at least: it
// adds the records past what it has; when the tail's start moved (the
// front was archived, or the log was truncated) it starts a new build,
// while searches holding the old one finish with it. A search may see
// records newer than its plan: never one twice, never one missing.
// Locked: ti.mu.
func (e *Engine) updateTailLocked(ctx context.Context, ti *tailIndex, u *unit) error {
	if ti.cur != nil && u.from != ti.from {
		ti.retireLocked()
	}
	if ti.cur == nil {
		idx, err := bleve.NewMemOnly(NewMapping())
		if err != nil {
			return err
		}
		ti.cur, ti.from, ti.to = &tailGen{idx: idx}, u.from, u.from
	}
	if u.to > ti.to {
		idx := ti.cur.idx
		m := &memBuilder{idx: idx, batch: idx.NewBatch(), docs: newDocBuilder()}
		if err := scan(ctx, e.log, u.t, u.p, ti.to, u.to, m.add); err != nil {
			ti.retireLocked()
			return err
		}
		if _, err := m.finish(); err != nil {
			ti.retireLocked()
			return err
		}
		ti.to = u.to
	}
	return nil
}

// tailHandle returns the realtime index of u's partition, brought up to
// date.
func (e *Engine) tailHandle(ctx context.Context, u *unit) (*Handle, error) {
	ti := e.tails.get(tailKey(u.t, u.p))
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if err := e.updateTailLocked(ctx, ti, u); err != nil {
		return nil, err
	}
	g := ti.cur
	g.refs++
	return &Handle{idx: g.idx, done: func() {
		ti.mu.Lock()
		defer ti.mu.Unlock()
		g.refs--
		if g.dead && g.refs == 0 {
			_ = g.idx.Close()
		}
	}}, nil
}

// RunRealtime keeps the realtime indexes of topics' partitions current,
// every interval, until ctx ends. The engine must have been made with
// EngineConfig.Realtime.
func (e *Engine) RunRealtime(ctx context.Context, topics func() []string, interval time.Duration) {
	if e.tails == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, name := range topics() {
			tp, err := e.log.Topic(ctx, name)
			if err != nil || !tp.SearchEnabled {
				continue
			}
			for p := int32(0); p < tp.Partitions; p++ {
				pi, err := e.log.Partition(ctx, tp, p)
				if err != nil {
					continue
				}
				u := unit{t: tp, p: p, from: pi.ArchivedEnd(), to: pi.End}
				if u.to <= u.from {
					continue
				}
				ti := e.tails.get(tailKey(tp, p))
				ti.mu.Lock()
				_ = e.updateTailLocked(ctx, ti, &u)
				ti.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
