package indexer

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/search"
	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// ErrUnknownTopic is returned (wrapped) for a topic the log does not have.
var ErrUnknownTopic = errors.New("indexer: unknown topic")

// errBadRequest marks a request that is wrong whatever the data.
var errBadRequest = errors.New("indexer: bad request")

// Engine answers searches over a Log: per partition, every archived
// segment's index (uploaded, else built on the fly and cached, so the
// hits are the same whatever the indexer did) and the not yet archived
// rest indexed in memory; one Bleve search over all of them; each hit's
// record read back by offset from its tier.
type Engine struct {
	log      Log
	store    tier3.Store // nil: no uploaded indexes are looked for
	cache    *Cache
	build    chan struct{} // bounds indexes built or downloaded at once
	parallel int           // indexes searched at once
	tails    *tails        // realtime tail indexes; nil when off
}

// EngineConfig configures an Engine.
type EngineConfig struct {
	Log   Log
	Store tier3.Store // where uploaded indexes are; nil if none
	Cache *Cache      // required
	// Parallel bounds the indexes downloaded or built at once (GOMAXPROCS).
	Parallel int
	// Realtime keeps an in-memory index of each partition's tail
	// (realtime.go) instead of indexing the tail at every search.
	Realtime bool
}

// NewEngine returns an engine.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Log == nil || cfg.Cache == nil {
		return nil, errors.New("indexer: an engine needs a log and a cache")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = runtime.GOMAXPROCS(0)
	}
	e := &Engine{log: cfg.Log, store: cfg.Store, cache: cfg.Cache, build: make(chan struct{}, cfg.Parallel), parallel: cfg.Parallel}
	if cfg.Realtime {
		e.tails = newTails(4096)
	}
	return e, nil
}

// Request is one search.
type Request struct {
	Topics []string
	Query  string // Bleve query-string syntax; empty matches everything
	// From and To bound record timestamps, both inclusive; zero is open.
	From, To time.Time
	Limit    int    // hits returned; 0 means DefaultLimit
	Offset   int    // hits skipped first (paging)
	Sort     string // "-time" (newest first, the default), "time", "score"
	// ExactTotal counts every match even where no index could add a
	// hit to the page (sorted by time, such indexes are skipped and
	// Result.Total is a lower bound).
	ExactTotal bool
	// After continues from a Result.Next: the hits after it (Offset more
	// skipped first).
	After string
	// MaxBytes bounds the hits' bytes (hitBytes) of the answer: past it
	// the page ends early, with Result.Next. 0: unbounded.
	MaxBytes int
	// Progress, when set, is called as indexes become ready.
	Progress func(ready, total int)
}

// Limits of a request.
const (
	DefaultLimit = 100
	MaxLimit     = 10_000_000
)

// maxScoreHits bounds offset + limit of a search sorted by score.
const maxScoreHits = 100_000

// Result is a search's answer.
type Result struct {
	Total uint64 `json:"total"`
	// TotalExact: Total counts every match; false when it is a lower
	// bound (a time-sorted search that skipped indexes it did not need
	// for the page; Request.ExactTotal counts them).
	TotalExact bool          `json:"total_exact"`
	Hits       []Hit         `json:"hits"`
	Took       time.Duration `json:"-"`
	Indexes    int           `json:"indexes"`      // segment and tail indexes searched
	Built      int           `json:"built_on_fly"` // of them built for this search
	Fetched    int           `json:"fetched"`      // hits whose record was read
	Missing    int           `json:"missing"`      // hits whose record is gone (retention)
	TookMs     float64       `json:"took_ms"`
	Sort       string        `json:"sort"`
	// Next, when set, continues the search (Request.After) after the
	// last hit of this page; there may be no more hits. Empty: none
	// follow.
	Next string `json:"next,omitempty"`
	// Truncated says why the page holds fewer hits than its limit when
	// it ended early: TruncatedBytes or TruncatedTimeout. Next continues it.
	Truncated string `json:"truncated,omitempty"`
}

// Why a page ended before its limit (Result.Truncated).
const (
	TruncatedBytes   = "max_response_bytes"
	TruncatedTimeout = "timeout"
)

// Hit is one matching record (DESIGN.md's jsonl shape).
type Hit struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       *string           `json:"key"`
	Headers   map[string]string `json:"headers"`
	Value     json.RawMessage   `json:"value"`
	Score     float64           `json:"score,omitempty"`
}

// unit is one index to search: an archived segment or a piece of the
// local tail.
type unit struct {
	key  string
	mem  bool
	t    Topic
	p    int32
	seg  *tier3.SegmentEntry // archived segment
	obj  *IndexEntry         // its uploaded index, if any
	from int64               // local piece: offsets [from, to)
	to   int64
}

func segmentKey(t Topic, p int32, e *tier3.SegmentEntry) string {
	return "seg/" + hex.EncodeToString(t.ID[:]) + "/" + strconv.Itoa(int(p)) + "/" + e.LogSHA256 + "/" + strconv.Itoa(mappingVersion)
}

// Search runs req.
func (e *Engine) Search(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	q, err := ParseQuery(req.Query)
	if err != nil {
		return nil, err
	}
	if req.Limit == 0 {
		req.Limit = DefaultLimit
	}
	if req.Limit < 0 || req.Limit > MaxLimit || req.Offset < 0 || req.Offset > MaxLimit {
		return nil, fmt.Errorf("%w: limit %d must be 1 to %d and offset %d from 0 to %d", errBadRequest, req.Limit, MaxLimit, req.Offset, MaxLimit)
	}
	switch req.Sort {
	case "", "-time", "time", "score":
	default:
		return nil, fmt.Errorf("%w: sort %q is not one of -time, time, score", errBadRequest, req.Sort)
	}
	if req.Sort == "" {
		req.Sort = "-time"
	}
	var after *cursor
	if req.After != "" {
		if after, err = parseCursor(req.After, req.Sort); err != nil {
			return nil, err
		}
	}
	if req.Sort == "score" && after != nil {
		// The position is a count of hits: page on from it.
		req.Offset += after.N
		after = nil
	}
	if req.Sort == "score" && req.Limit+req.Offset > maxScoreHits {
		return nil, fmt.Errorf("%w: sorted by score, offset + limit may be at most %d (sort by time pages further)", errBadRequest, maxScoreHits)
	}
	if len(req.Topics) == 0 {
		return nil, fmt.Errorf("%w: no topic to search", errBadRequest)
	}
	if !req.From.IsZero() && !req.To.IsZero() && req.To.Before(req.From) {
		return nil, fmt.Errorf("%w: the time range ends (%s) before it starts (%s)", errBadRequest, req.To.Format(time.RFC3339Nano), req.From.Format(time.RFC3339Nano))
	}
	var units []unit
	topics := map[string]Topic{}
	for _, name := range req.Topics {
		t, err := e.log.Topic(ctx, name)
		if err != nil {
			return nil, err
		}
		topics[name] = t
		us, err := e.plan(ctx, t, req.From)
		if err != nil {
			return nil, err
		}
		units = append(units, us...)
	}
	handles, built, err := e.open(ctx, units, req.Progress)
	defer func() {
		for _, h := range handles {
			if h != nil {
				h.Release()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	res := &Result{Indexes: len(units), Built: built, Sort: req.Sort, TotalExact: true}
	var pageTs []int64 // time orders: the page's timestamps as indexed (cursorAt)
	switch {
	case len(handles) == 0:
	case req.Sort == "score":
		if err := e.collectByScore(ctx, handles, timeBound(q, req.From, req.To), req, res); err != nil {
			return nil, err
		}
	default:
		if pageTs, err = e.collectByTime(ctx, handles, units, q, req, after, res); err != nil {
			return nil, err
		}
	}
	page := res.Hits
	n, err := e.fetch(ctx, topics, res, req.MaxBytes)
	if err != nil {
		return nil, err
	}
	if n > 0 && (n < len(page) || len(page) == req.Limit) {
		// The page ended early or is full: more hits may follow its
		// last (fetched or gone).
		if req.Sort == "score" {
			if next := req.Offset + n; next < maxScoreHits && uint64(next) < res.Total {
				res.Next = (&cursor{Sort: "score", N: next}).encode()
			}
		} else {
			res.Next = cursorAt(&page[n-1], pageTs[n-1], req.Sort).encode()
		}
	}
	res.Took = time.Since(start)
	res.TookMs = float64(res.Took.Microseconds()) / 1000
	return res, nil
}

// scoreOrder returns the score order: ties (equal scores) newest first,
// then by document ID, so the order is total. A fresh one per search:
// Bleve's sort fields hold per-search state. Time orders are
// collectByTime's.
func scoreOrder() search.SortOrder {
	return search.SortOrder{
		&search.SortScore{Desc: true},
		&search.SortField{Field: fieldTimestamp, Desc: true, Type: search.SortFieldAsDate},
		&search.SortField{Field: fieldOffset, Desc: true, Type: search.SortFieldAsNumber},
		&search.SortDocID{Desc: true},
	}
}

func timeBound(q query.Query, from, to time.Time) query.Query {
	if from.IsZero() && to.IsZero() {
		return q
	}
	incl := true
	r := query.NewDateRangeInclusiveQuery(from, to, &incl, &incl)
	r.SetField(fieldTimestamp)
	return query.NewConjunctionQuery([]query.Query{q, r})
}

// plan lists the indexes covering t's partitions from the time from on.
func (e *Engine) plan(ctx context.Context, t Topic, from time.Time) ([]unit, error) {
	var units []unit
	for p := int32(0); p < t.Partitions; p++ {
		pi, err := e.log.Partition(ctx, t, p)
		if err != nil {
			return nil, err
		}
		var im *IndexManifest
		if e.store != nil && len(pi.Archived) > 0 {
			if im, err = LoadIndexManifest(ctx, e.store, t.ID, p); err != nil {
				return nil, fmt.Errorf("indexer: index manifest of %s/%d: %w", t.Name, p, err)
			}
		}
		for i := range pi.Archived {
			s := &pi.Archived[i]
			if s.Next <= pi.LogStart || s.Size == 0 || (!from.IsZero() && s.MaxTs < from.UnixMilli()) {
				continue
			}
			u := unit{key: segmentKey(t, p, s), t: t, p: p, seg: s}
			if im != nil {
				if ie, ok := im.find(s); ok {
					u.obj = ie
				}
			}
			units = append(units, u)
		}
		if end := pi.ArchivedEnd(); end < pi.End {
			units = append(units, unit{mem: true, t: t, p: p, from: end, to: pi.End,
				key: "tail/" + hex.EncodeToString(t.ID[:]) + "/" + strconv.Itoa(int(p)) + "/" + strconv.FormatInt(end, 10) + "-" + strconv.FormatInt(pi.End, 10)})
		}
	}
	return units, nil
}

// open gets every unit's index, downloading or building at most
// Parallel at once. It returns how many it built.
func (e *Engine) open(ctx context.Context, units []unit, progress func(int, int)) ([]*Handle, int, error) {
	handles := make([]*Handle, len(units))
	var mu sync.Mutex
	var firstErr error
	ready, built := 0, 0
	var wg sync.WaitGroup
	for i := range units {
		u := &units[i]
		select {
		case e.build <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return handles, built, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-e.build; wg.Done() }()
			didBuild := false
			var h *Handle
			var err error
			if u.mem && e.tails != nil {
				h, err = e.tailHandle(ctx, u)
			} else {
				h, err = e.cache.Get(ctx, u.key, u.mem, func(dir string) (bleve.Index, error) {
					if u.obj != nil {
						idx, err := e.download(ctx, u, dir)
						if err == nil {
							return idx, nil
						}
						if ctx.Err() != nil {
							return nil, err
						}
						// A damaged or missing index object: the segment is
						// still searchable, indexed here.
						_ = removeAll(dir)
					}
					didBuild = u.seg != nil
					return e.buildUnit(ctx, u, dir)
				})
			}
			mu.Lock()
			defer mu.Unlock()
			handles[i] = h
			if err != nil && firstErr == nil {
				firstErr = err
			}
			ready++
			if didBuild {
				built++
			}
			if progress != nil {
				progress(ready, len(units))
			}
		}()
	}
	wg.Wait()
	return handles, built, firstErr
}

func (e *Engine) download(ctx context.Context, u *unit, dir string) (bleve.Index, error) {
	rc, info, err := e.store.Get(ctx, tier3.PartitionPrefix(u.t.ID, u.p)+u.obj.Object)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if info.SHA256 != "" && info.SHA256 != u.obj.SHA256 {
		return nil, fmt.Errorf("%w: index %s is not the one its manifest names", tier3.ErrChecksum, u.obj.Object)
	}
	if err := unpack(rc, dir); err != nil {
		return nil, err
	}
	return openDir(dir)
}

// buildUnit indexes a unit's records.
func (e *Engine) buildUnit(ctx context.Context, u *unit, dir string) (bleve.Index, error) {
	var b builder
	var err error
	if dir == "" {
		b, err = newMemBuilder()
	} else {
		b, err = newDiskBuilder(dir)
	}
	if err != nil {
		return nil, err
	}
	from, to := u.from, u.to
	if u.seg != nil {
		from, to = u.seg.Base, u.seg.Next
	}
	n := 0
	add := func(r *Record) error {
		// A read holds many records: stop between them when the search
		// is over.
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return b.add(r)
	}
	if err := scan(ctx, e.log, u.t, u.p, from, to, add); err != nil {
		b.abort()
		return nil, err
	}
	return b.finish()
}

// collectByScore runs a search sorted by score: one Bleve search over
// every index (an alias), which scores every match.
func (e *Engine) collectByScore(ctx context.Context, handles []*Handle, q query.Query, req Request, res *Result) error {
	idxs := make([]bleve.Index, len(handles))
	for i, h := range handles {
		idxs[i] = h.Index()
	}
	sr := bleve.NewSearchRequestOptions(q, req.Limit, req.Offset, false)
	sr.SortByCustom(scoreOrder())
	out, err := bleve.NewIndexAlias(idxs...).SearchInContext(ctx, sr)
	if err != nil {
		return &QueryError{Query: req.Query, End: len(req.Query), Msg: err.Error()}
	}
	res.Total, res.TotalExact = out.Total, true
	for _, m := range out.Hits {
		topic, p, off, ok := ParseDocID(m.ID)
		if !ok {
			return fmt.Errorf("indexer: index holds a document named %q", m.ID)
		}
		res.Hits = append(res.Hits, Hit{Topic: topic, Partition: p, Offset: off, Score: m.Score})
	}
	return nil
}

// Read sizes of fetch: a read returns at least the batch holding the
// offset asked for, and more while it fits.
const (
	minHitRead = 1
	maxHitRead = 4 << 20
)

// fetch reads the page's records (res.Hits, in page order) from their
// tiers and keeps the hits whose record it found. With maxBytes, hits are
// read a window at a time, each window sized by the largest hit so far to
// what the budget has left, and the page ends before the hit that would
// take it past maxBytes (never before its first hit); a context ended
// after at least one window ends the page too (a partial page, which
// Result.Next continues). It returns how many of the page's hits the
// answer covers, fetched or gone, and sets res.Truncated when that is not
// all of them.
func (e *Engine) fetch(ctx context.Context, topics map[string]Topic, res *Result, maxBytes int) (int, error) {
	page := res.Hits
	kept := make([]Hit, 0, len(page))
	window, largest, used := len(page), 0, 0
	if maxBytes > 0 {
		window = min(len(page), 16)
	}
	i := 0
	for i < len(page) {
		w := page[i : i+window]
		found, err := e.fetchHits(ctx, topics, w)
		if err != nil {
			if ctx.Err() != nil && i > 0 {
				res.Truncated = TruncatedTimeout
				break
			}
			return 0, err
		}
		for j := range w {
			if !found[j] {
				res.Missing++
				continue
			}
			size := hitBytes(&w[j])
			if maxBytes > 0 && used+size > maxBytes && len(kept) > 0 {
				res.Truncated = TruncatedBytes
				res.Hits = kept
				return i + j, nil
			}
			used += size
			largest = max(largest, size)
			kept = append(kept, w[j])
			res.Fetched++
		}
		i += window
		if maxBytes > 0 {
			window = max(1, min((maxBytes-used)/max(largest, 1), 1024))
		}
		window = min(window, len(page)-i)
	}
	res.Hits = kept
	return i, nil
}

// fetchHits reads the records of hits: per partition in offset order,
// each read as large as the hits it serves warrant (doubling while a read
// serves hits beyond its first, halving while it does not), so dense hits
// cost a few large reads and sparse ones a batch each. It reports which
// hits it found.
func (e *Engine) fetchHits(ctx context.Context, topics map[string]Topic, hits []Hit) ([]bool, error) {
	type partKey struct {
		topic string
		p     int32
	}
	byPart := map[partKey][]int{} // indexes into hits
	for i, h := range hits {
		k := partKey{h.Topic, h.Partition}
		byPart[k] = append(byPart[k], i)
	}
	found := make([]bool, len(hits))
	for k, idx := range byPart {
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(hits[a].Offset, hits[b].Offset) })
		t := topics[k.topic]
		size := 64 << 10
		for i := 0; i < len(idx); {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			first := hits[idx[i]].Offset
			b, err := e.log.Read(ctx, t, k.p, first, size)
			if err != nil {
				return nil, fmt.Errorf("indexer: read hit %s/%d@%d: %w", k.topic, k.p, first, err)
			}
			last := lastOffset(b)
			if last < first {
				break // nothing at or after first: the rest are gone
			}
			j := i
			err = tier2.EachBatchRecord(b, t.inflateLimit(), func(kr *kmsg.Record, off, ts int64) {
				for j < len(idx) && hits[idx[j]].Offset < off {
					j++
				}
				if j == len(idx) || hits[idx[j]].Offset != off {
					return
				}
				rec := Record{Offset: off, Timestamp: ts, Key: kr.Key, Value: kr.Value}
				for _, hd := range kr.Headers {
					rec.Headers = append(rec.Headers, Header{Key: hd.Key, Value: hd.Value})
				}
				fillHit(&hits[idx[j]], &rec)
				found[idx[j]] = true
			})
			if err != nil {
				return nil, fmt.Errorf("indexer: records of hit %s/%d@%d: %w", k.topic, k.p, first, err)
			}
			served := 0
			for i < len(idx) && hits[idx[i]].Offset <= last {
				i++
				served++
			}
			if served > 1 {
				size = min(size*2, maxHitRead)
			} else {
				size = max(size/2, minHitRead)
			}
		}
	}
	return found, nil
}

func fillHit(h *Hit, r *Record) {
	h.Timestamp = time.UnixMilli(r.Timestamp).UTC()
	if r.Key != nil {
		k := string(validUTF8(r.Key))
		h.Key = &k
	}
	h.Headers = make(map[string]string, len(r.Headers))
	for _, hd := range r.Headers {
		h.Headers[hd.Key] = string(validUTF8(hd.Value))
	}
	switch {
	case r.Value == nil:
		h.Value = json.RawMessage("null")
	case len(r.Value) > 0 && r.Value[0] == '{' && json.Valid(r.Value):
		h.Value = json.RawMessage(append([]byte(nil), r.Value...))
	default:
		b, _ := json.Marshal(string(validUTF8(r.Value)))
		h.Value = b
	}
}
