package indexer

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/numeric"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"
	index "github.com/blevesearch/bleve_index_api"
)

// Searches sorted by time do not use Bleve's collector: ordering every
// match by its timestamp doc value decodes a compressed doc-value chunk
// per match, which made a search cost milliseconds per segment index.
// Instead each index's coordinates (timestamp and offset of every
// document) are read once into arrays kept with the cached index, every
// index is searched without scoring, and matches are ordered by array
// lookups. Indexes are visited best bound first (newest first for
// "-time"), so once the page is full an index whose newest record is
// older than the page's oldest cannot add a hit: it is only counted when
// the request asks for an exact total, and skipped otherwise (the total
// is then a lower bound, as Result.TotalExact says).

// docCoords are an index's documents' timestamps (unix nanoseconds) and
// offsets by document number, and their extremes.
type docCoords struct {
	scorch       bool           // document numbers are scorch's 8-byte internal IDs
	byID         map[string]int // other indexes: internal ID -> document number
	ts           []int64
	off          []int64
	minTs, maxTs int64
}

func (c *docCoords) doc(id index.IndexInternalID) (int, bool) {
	if c.scorch {
		if len(id) != 8 {
			return 0, false
		}
		n := binary.BigEndian.Uint64(id)
		return int(n), n < uint64(len(c.ts))
	}
	n, ok := c.byID[string(id)]
	return n, ok
}

// readCoords reads every document's timestamp and offset from r's doc
// values.
func readCoords(ctx context.Context, r index.IndexReader) (*docCoords, error) {
	n, err := r.DocCount()
	if err != nil {
		return nil, err
	}
	_, isScorch := r.(*scorch.IndexSnapshot)
	c := &docCoords{scorch: isScorch, ts: make([]int64, 0, n), off: make([]int64, 0, n)}
	if !isScorch {
		c.byID = make(map[string]int, n)
	}
	ids, err := r.DocIDReaderAll()
	if err != nil {
		return nil, err
	}
	defer ids.Close()
	dv, err := r.DocValueReader([]string{fieldTimestamp, fieldOffset})
	if err != nil {
		return nil, err
	}
	var ts, off int64
	visit := func(field string, term []byte) {
		pc := numeric.PrefixCoded(term)
		if s, err := pc.Shift(); err != nil || s != 0 {
			return
		}
		v, err := pc.Int64()
		if err != nil {
			return
		}
		switch field {
		case fieldTimestamp:
			ts = v
		case fieldOffset:
			off = int64(numeric.Int64ToFloat64(v))
		}
	}
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		id, err := ids.Next()
		if err != nil {
			return nil, err
		}
		if id == nil {
			break
		}
		ts, off = 0, -1
		if err := dv.VisitDocValues(id, visit); err != nil {
			return nil, err
		}
		if off < 0 {
			return nil, fmt.Errorf("indexer: document %x has no offset", []byte(id))
		}
		num := len(c.ts)
		if c.scorch && (len(id) != 8 || binary.BigEndian.Uint64(id) != uint64(num)) {
			// Not numbered 0, 1, 2, ...: look documents up by ID.
			c.scorch = false
			c.byID = make(map[string]int, n)
			for j := 0; j < num; j++ {
				c.byID[string(docNumID(uint64(j)))] = j
			}
		}
		if !c.scorch {
			c.byID[string(id)] = num
		}
		c.ts = append(c.ts, ts)
		c.off = append(c.off, off)
	}
	c.setBounds()
	return c, nil
}

// setBounds sets minTs and maxTs from ts (0 and -1 when empty: no
// timestamp is in range).
func (c *docCoords) setBounds() {
	if len(c.ts) == 0 {
		c.minTs, c.maxTs = 0, -1
		return
	}
	c.minTs, c.maxTs = slices.Min(c.ts), slices.Max(c.ts)
}

func docNumID(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// timeHit is a match in a time order: its coordinates and its unit's
// rank in (topic, partition) order, which breaks ties.
type timeHit struct {
	ts, off int64
	rank    int32
}

// before reports whether a comes before b in the order (newest first
// when desc).
func before(a, b timeHit, desc bool) bool {
	c := cmp.Compare(a.ts, b.ts)
	if c == 0 {
		c = cmp.Compare(a.off, b.off)
	}
	if c == 0 {
		c = cmp.Compare(a.rank, b.rank)
	}
	if desc {
		return c > 0
	}
	return c < 0
}

// topHits keeps the first k hits of an order; its root is the last kept.
type topHits struct {
	h    []timeHit
	k    int
	desc bool
}

func (t *topHits) Len() int           { return len(t.h) }
func (t *topHits) Less(i, j int) bool { return before(t.h[j], t.h[i], t.desc) }
func (t *topHits) Swap(i, j int)      { t.h[i], t.h[j] = t.h[j], t.h[i] }
func (t *topHits) Push(x any)         { t.h = append(t.h, x.(timeHit)) }
func (t *topHits) Pop() any {
	x := t.h[len(t.h)-1]
	t.h = t.h[:len(t.h)-1]
	return x
}

func (t *topHits) full() bool { return len(t.h) >= t.k }

func (t *topHits) add(x timeHit) {
	if len(t.h) < t.k {
		heap.Push(t, x)
		return
	}
	if before(x, t.h[0], t.desc) {
		t.h[0] = x
		heap.Fix(t, 0)
	}
}

// sorted returns the kept hits in order.
func (t *topHits) sorted() []timeHit {
	out := slices.Clone(t.h)
	slices.SortFunc(out, func(a, b timeHit) int {
		if before(a, b, t.desc) {
			return -1
		}
		if before(b, a, t.desc) {
			return 1
		}
		return 0
	})
	return out
}

// coordsOf returns h's coordinates, read once per cached index.
func (h *Handle) coordsOf(ctx context.Context, r index.IndexReader) (*docCoords, error) {
	if h.e == nil {
		return readCoords(ctx, r)
	}
	h.e.cmu.Lock()
	defer h.e.cmu.Unlock()
	if h.e.docCoords != nil {
		return h.e.docCoords, nil
	}
	n, err := r.DocCount()
	if err != nil {
		return nil, err
	}
	var file string
	if h.e.dir != "" {
		file = filepath.Join(h.e.dir, coordsFile)
		if c, err := loadCoords(file, n); err == nil {
			h.e.docCoords = c
			return c, nil
		}
	}
	c, err := readCoords(ctx, r)
	if err != nil {
		return nil, err
	}
	if file != "" && c.scorch {
		// Best effort: without the file the next open reads doc values
		// again.
		if size, err := saveCoords(file, c); err == nil {
			h.c.grow(h.e, size)
		}
	}
	h.e.docCoords = c
	return c, nil
}

// coordsFile keeps a disk entry's coordinates for the next run: a magic
// number, the document count, the timestamps, the offsets (little endian)
// and a CRC-32C of all that.
const coordsFile = "coords"

var coordsMagic = []byte("CHRCRD01")

func saveCoords(path string, c *docCoords) (int64, error) {
	b := make([]byte, 0, 16+16*len(c.ts)+4)
	b = append(b, coordsMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.ts)))
	for _, v := range c.ts {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	for _, v := range c.off {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	return int64(len(b)), nil
}

// loadCoords reads what saveCoords wrote for an index of n documents.
func loadCoords(path string, n uint64) (*docCoords, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if uint64(len(b)) != 16+16*n+4 || !bytes.Equal(b[:8], coordsMagic) || binary.LittleEndian.Uint64(b[8:]) != n ||
		crc32.Checksum(b[:len(b)-4], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("indexer: %s is damaged or of another index", path)
	}
	c := &docCoords{scorch: true, ts: make([]int64, n), off: make([]int64, n)}
	p := b[16:]
	for i := range c.ts {
		c.ts[i] = int64(binary.LittleEndian.Uint64(p[8*i:]))
	}
	p = p[8*n:]
	for i := range c.off {
		c.off[i] = int64(binary.LittleEndian.Uint64(p[8*i:]))
	}
	c.setBounds()
	return c, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// timeUnit is one index of a search sorted by time.
type timeUnit struct {
	h     *Handle
	u     *unit
	rank  int32
	po    int // partOrder against the request's cursor, if any
	r     index.IndexReader
	c     *docCoords
	total uint64
	// skipped: none of its documents could make the page, and the
	// request did not ask for an exact total, so its matches went
	// uncounted.
	skipped bool
}

// collectByTime runs a search sorted by time (see the top of this file),
// from after the cursor when there is one (page.go). It returns the
// page's timestamps as indexed, for its continuation.
func (e *Engine) collectByTime(ctx context.Context, handles []*Handle, units []unit, q query.Query, req Request, after *cursor, res *Result) ([]int64, error) {
	desc := req.Sort != "time"
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	if !req.From.IsZero() {
		from = req.From.UnixNano()
	}
	if !req.To.IsZero() {
		to = req.To.UnixNano()
	}
	tus := make([]*timeUnit, len(handles))
	for i, h := range handles {
		tus[i] = &timeUnit{h: h, u: &units[i]}
		if after != nil {
			tus[i].po = after.partOrder(&units[i])
		}
	}
	// Ranks: (topic, partition) order.
	byPart := slices.Clone(tus)
	slices.SortStableFunc(byPart, func(a, b *timeUnit) int {
		return cmp.Or(cmp.Compare(a.u.t.Name, b.u.t.Name), cmp.Compare(a.u.p, b.u.p))
	})
	rank := int32(-1)
	for i, tu := range byPart {
		if i == 0 || tu.u.t.Name != byPart[i-1].u.t.Name || tu.u.p != byPart[i-1].u.p {
			rank++
		}
		tu.rank = rank
	}
	defer func() {
		for _, tu := range tus {
			if tu.r != nil {
				_ = tu.r.Close()
			}
		}
	}()
	// Readers and coordinates (read once per cached index), in parallel.
	err := e.eachInOrder(ctx, tus, func(tu *timeUnit) error {
		ai, err := tu.h.Index().Advanced()
		if err != nil {
			return err
		}
		if tu.r, err = ai.Reader(); err != nil {
			return err
		}
		tu.c, err = tu.h.coordsOf(ctx, tu.r)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Best bound first; indexes outside the time range hold no hit.
	live := tus[:0:0]
	for _, tu := range tus {
		if tu.c.maxTs >= from && tu.c.minTs <= to && len(tu.c.ts) > 0 {
			live = append(live, tu)
		}
	}
	slices.SortStableFunc(live, func(a, b *timeUnit) int {
		if desc {
			return cmp.Compare(b.c.maxTs, a.c.maxTs)
		}
		return cmp.Compare(a.c.minTs, b.c.minTs)
	})
	top := &topHits{k: req.Offset + req.Limit, desc: desc}
	var mu sync.Mutex // guards top
	err = e.eachInOrder(ctx, live, func(tu *timeUnit) error {
		// Can any of this index's documents still make the page?
		mu.Lock()
		var worst timeHit
		full := top.full()
		if full {
			worst = top.h[0]
		}
		mu.Unlock()
		countOnly := full && ((desc && tu.c.maxTs < worst.ts) || (!desc && tu.c.minTs > worst.ts))
		// Every document at or before the cursor: none can be on the page.
		countOnly = countOnly || after != nil && ((desc && tu.c.minTs > after.Ts) || (!desc && tu.c.maxTs < after.Ts))
		if countOnly && !req.ExactTotal {
			tu.skipped = true
			return nil
		}
		s, err := q.Searcher(ctx, tu.r, tu.h.Index().Mapping(), search.SearcherOptions{Score: "none"})
		if err != nil {
			return &QueryError{Query: req.Query, End: len(req.Query), Msg: err.Error()}
		}
		defer s.Close()
		sctx := &search.SearchContext{DocumentMatchPool: search.NewDocumentMatchPool(s.DocumentMatchPoolSize(), 0), IndexReader: tu.r}
		local := &topHits{k: top.k, desc: desc}
		for i := 0; ; i++ {
			if i%8192 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			m, err := s.Next(sctx)
			if err != nil {
				return err
			}
			if m == nil {
				break
			}
			n, ok := tu.c.doc(m.IndexInternalID)
			sctx.DocumentMatchPool.Put(m)
			if !ok {
				return fmt.Errorf("indexer: a match has no coordinates in index %s", tu.u.key)
			}
			ts := tu.c.ts[n]
			if ts < from || ts > to {
				continue
			}
			tu.total++
			if countOnly {
				continue
			}
			off := tu.c.off[n]
			if after != nil && !after.past(ts, off, tu.po, desc) {
				continue
			}
			x := timeHit{ts: ts, off: off, rank: tu.rank}
			if full && !before(x, worst, desc) {
				continue
			}
			local.add(x)
		}
		mu.Lock()
		for _, x := range local.h {
			top.add(x)
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, tu := range tus {
		res.Total += tu.total
		if tu.skipped {
			res.TotalExact = false
		}
	}
	byRank := make(map[int32]*unit, len(tus))
	for _, tu := range tus {
		byRank[tu.rank] = tu.u
	}
	hits := top.sorted()
	if req.Offset >= len(hits) {
		return nil, nil
	}
	var ts []int64
	for _, x := range hits[req.Offset:] {
		u := byRank[x.rank]
		res.Hits = append(res.Hits, Hit{Topic: u.t.Name, Partition: u.p, Offset: x.off})
		ts = append(ts, x.ts)
	}
	return ts, nil
}

// eachInOrder runs fn for the units, starting them in order, Parallel at
// once; it stops starting new ones after an error.
func (e *Engine) eachInOrder(ctx context.Context, tus []*timeUnit, fn func(*timeUnit) error) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, e.parallel)
	for _, tu := range tus {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			// A panic in Bleve on one search must not end the broker:
			// the HTTP server recovers only its handlers' goroutines.
			defer func() {
				if r := recover(); r != nil {
					fail(fmt.Errorf("indexer: search of %s failed: %v", tu.u.key, r))
				}
			}()
			if err := fn(tu); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	return firstErr
}
