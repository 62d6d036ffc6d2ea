package indexer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chronik-go/chronik/tier3"
)

// Indexer is the batch indexer (DESIGN.md, data path 5): a bounded pool
// of workers that turns archived segments into Bleve indexes off the
// produce and fetch paths, uploads each beside its segment and lists it
// in the partition's index manifest. It is told about partitions by
// Notify (after an upload) and looks at every partition of the log at
// start and every ResyncInterval, so segments archived while it was off
// or failing are indexed later. A partition is handled by one worker at a
// time, which makes that worker its index manifest's only writer here;
// as with segments, one broker (the partition's leader) writes a
// partition's manifests.
type Indexer struct {
	cfg   Config
	log   *slog.Logger
	queue chan partKey
	m     *poolMetrics

	mu      sync.Mutex // guards the following
	queued  map[partKey]bool
	lag     map[partKey][2]int64       // segments and records archived but not indexed
	dropped bool                       // a Notify found the queue full: resync soon
	mans    map[partKey]*IndexManifest // the last read or written

	partMu sync.Map // partKey -> *sync.Mutex: one pass per partition at a time

	stop chan struct{}
	wg   sync.WaitGroup
}

type partKey struct {
	topic string
	p     int32
}

// Config configures an Indexer.
type Config struct {
	Log   Log
	Store tier3.Store // where indexes and index manifests go
	// Topics lists the topics to look at on resync.
	Topics func() []string
	// Workers bounds the segments indexed at once (1); QueueLen the
	// partitions waiting (4096).
	Workers, QueueLen int
	// TempDir is where indexes are built before upload.
	TempDir string
	// BuildCommand, when set, builds each index in a child process (see
	// child.go): the program BuildCommand[0] is run with the rest and the
	// index directory as arguments, and must call BuildChild (chronik's
	// hidden index-build command does). Empty builds in this process.
	BuildCommand []string
	// YieldCPU pauses build children while this process uses more than
	// this many cores (0.5: half a core's time), and continues them once
	// it has been below for a second (child.go, "Pausing"). Zero never
	// pauses. Only with BuildCommand.
	YieldCPU float64
	// ResyncInterval is how often every partition is looked at (1 min).
	ResyncInterval time.Duration
	Logger         *slog.Logger
	Metrics        prometheus.Registerer // nil keeps the metrics unexported
}

// NewIndexer returns an indexer; Start runs it.
func NewIndexer(cfg Config) (*Indexer, error) {
	if cfg.Log == nil || cfg.Store == nil || cfg.TempDir == "" || cfg.Topics == nil {
		return nil, errors.New("indexer: needs a log, a store, a topic list and a temp dir")
	}
	if len(cfg.BuildCommand) > 0 && !filepath.IsAbs(cfg.BuildCommand[0]) {
		return nil, fmt.Errorf("indexer: the build command %q is not an absolute path", cfg.BuildCommand[0])
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.RemoveAll(cfg.TempDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.TempDir, 0o755); err != nil {
		return nil, err
	}
	x := &Indexer{cfg: cfg, log: cfg.Logger, queue: make(chan partKey, cfg.QueueLen), queued: map[partKey]bool{},
		mans: map[partKey]*IndexManifest{}, stop: make(chan struct{})}
	x.m = newPoolMetrics(x)
	if cfg.Metrics != nil {
		if err := x.m.register(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// Start runs the workers and the resync loop.
func (x *Indexer) Start() {
	for range x.cfg.Workers {
		x.wg.Add(1)
		go x.work()
	}
	x.wg.Add(1)
	go x.resyncLoop()
}

// Close stops the workers, abandoning (and cleaning up) builds in flight.
func (x *Indexer) Close() {
	close(x.stop)
	x.wg.Wait()
	if x.cfg.Metrics != nil {
		x.m.unregister(x.cfg.Metrics)
	}
	_ = os.RemoveAll(x.cfg.TempDir)
}

// Notify asks for a look at one partition (its segments were archived).
// It never blocks; a full queue is made up for by an early resync.
func (x *Indexer) Notify(topic string, partition int32) {
	k := partKey{topic, partition}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.queued[k] {
		return
	}
	select {
	case x.queue <- k:
		x.queued[k] = true
	default:
		x.dropped = true
	}
}

func (x *Indexer) resyncLoop() {
	defer x.wg.Done()
	x.resync()
	t := time.NewTicker(x.cfg.ResyncInterval)
	defer t.Stop()
	fast := time.NewTicker(time.Second)
	defer fast.Stop()
	for {
		select {
		case <-x.stop:
			return
		case <-t.C:
			x.resync()
		case <-fast.C:
			x.mu.Lock()
			d := x.dropped
			x.dropped = false
			x.mu.Unlock()
			if d {
				x.resync()
			}
		}
	}
}

func (x *Indexer) resync() {
	ctx, cancel := x.ctx()
	defer cancel()
	for _, name := range x.cfg.Topics() {
		t, err := x.cfg.Log.Topic(ctx, name)
		if err != nil {
			continue
		}
		for p := int32(0); p < t.Partitions; p++ {
			x.Notify(name, p)
		}
	}
}

// ctx is cancelled when the indexer stops.
func (x *Indexer) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-x.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (x *Indexer) work() {
	defer x.wg.Done()
	ctx, cancel := x.ctx()
	defer cancel()
	for {
		select {
		case <-x.stop:
			return
		case k := <-x.queue:
			x.mu.Lock()
			delete(x.queued, k)
			x.mu.Unlock()
			if err := x.indexPartition(ctx, k); err != nil && ctx.Err() == nil {
				x.m.failures.Inc()
				x.log.Warn("indexing failed; retrying later", "topic", k.topic, "partition", k.p, "err", err)
				x.mu.Lock()
				x.dropped = true // look again at the next resync tick
				x.mu.Unlock()
			}
		}
	}
}

// indexPartition indexes the partition's archived segments that have no
// index, oldest first, and drops index entries whose segment is gone.
func (x *Indexer) indexPartition(ctx context.Context, k partKey) error {
	mu, _ := x.partMu.LoadOrStore(k, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	t, err := x.cfg.Log.Topic(ctx, k.topic)
	if errors.Is(err, ErrUnknownTopic) {
		return nil
	}
	if err != nil {
		return err
	}
	if !t.SearchEnabled || k.p >= t.Partitions {
		return nil
	}
	pi, err := x.cfg.Log.Partition(ctx, t, k.p)
	if err != nil {
		return err
	}
	if pi.Follower {
		x.setManifest(k, nil) // read anew if this broker leads again
		return nil
	}
	m := x.manifest(k)
	if m == nil || m.TopicID != hex.EncodeToString(t.ID[:]) {
		if m, err = LoadIndexManifest(ctx, x.cfg.Store, t.ID, k.p); err != nil {
			return err
		}
	}
	x.setManifest(k, m)
	if m, err = x.prune(ctx, t, k.p, m, pi.Archived); err != nil {
		return err
	}
	x.setManifest(k, m)
	todo := x.missing(m, pi)
	for _, s := range todo {
		e, err := x.indexSegment(ctx, t, k.p, s)
		if err != nil {
			return fmt.Errorf("index segment %d: %w", s.Base, err)
		}
		n := *m
		n.Generation++
		n.Indexes = append(slices.Clip(m.Indexes), e)
		slices.SortFunc(n.Indexes, func(a, b IndexEntry) int { return int(min(max(a.Base-b.Base, -1), 1)) })
		if err := WriteIndexManifest(ctx, x.cfg.Store, t.ID, &n); err != nil {
			return fmt.Errorf("write index manifest: %w", err)
		}
		m = &n
		x.setManifest(k, m)
	}
	return nil
}

func (x *Indexer) manifest(k partKey) *IndexManifest {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.mans[k]
}

func (x *Indexer) setManifest(k partKey, m *IndexManifest) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mans[k] = m
}

func recordsOf(segs []*tier3.SegmentEntry) int64 {
	var n int64
	for _, s := range segs {
		n += s.Next - s.Base
	}
	return n
}

func (x *Indexer) missing(m *IndexManifest, pi Partition) []*tier3.SegmentEntry {
	var out []*tier3.SegmentEntry
	for i := range pi.Archived {
		s := &pi.Archived[i]
		if s.Size == 0 || s.Next <= pi.LogStart {
			continue
		}
		if _, ok := m.find(s); !ok {
			out = append(out, s)
		}
	}
	return out
}

// prune drops entries whose segment left the archive (retention) and
// deletes their objects, and on a manifest's first load deletes index
// objects no entry names (an upload killed before its manifest write).
func (x *Indexer) prune(ctx context.Context, t Topic, p int32, m *IndexManifest, segs []tier3.SegmentEntry) (*IndexManifest, error) {
	live := map[string]bool{}
	for _, s := range segs {
		live[s.LogSHA256] = true
	}
	var keep, drop []IndexEntry
	for _, e := range m.Indexes {
		if live[e.LogSHA256] && e.Mapping == mappingVersion {
			keep = append(keep, e)
		} else {
			drop = append(drop, e)
		}
	}
	prefix := tier3.PartitionPrefix(t.ID, p)
	if len(drop) > 0 {
		n := *m
		n.Generation++
		n.Indexes = keep
		if err := WriteIndexManifest(ctx, x.cfg.Store, t.ID, &n); err != nil {
			return m, err
		}
		m = &n
		for _, e := range drop {
			if err := x.cfg.Store.Delete(ctx, prefix+e.Object); err != nil {
				x.log.Warn("deleting a dropped index failed", "topic", t.Name, "partition", p, "object", e.Object, "err", err)
			}
		}
	}
	return m, nil
}

// indexSegment builds, uploads and verifies one segment's index.
func (x *Indexer) indexSegment(ctx context.Context, t Topic, p int32, s *tier3.SegmentEntry) (IndexEntry, error) {
	start := time.Now()
	dir, err := os.MkdirTemp(x.cfg.TempDir, "build-")
	if err != nil {
		return IndexEntry{}, err
	}
	defer os.RemoveAll(dir)
	var n int64
	if len(x.cfg.BuildCommand) > 0 {
		c := childConfig{command: x.cfg.BuildCommand, yieldCPU: x.cfg.YieldCPU, paused: func(p bool) {
			if p {
				x.m.paused.Add(1)
			} else {
				x.m.paused.Add(-1)
			}
		}, done: func(ps *os.ProcessState) {
			x.log.Debug("index build child finished", "topic", t.Name, "partition", p, "base", s.Base,
				"cpu", (ps.UserTime() + ps.SystemTime()).Round(time.Millisecond), "max_rss_mib", maxRSS(ps)>>20)
		}}
		n, err = buildInChild(ctx, c, x.cfg.Log, t, p, s.Base, s.Next, filepath.Join(dir, "index"))
	} else {
		n, err = buildLocal(ctx, x.cfg.Log, t, p, s.Base, s.Next, filepath.Join(dir, "index"))
	}
	if err != nil {
		return IndexEntry{}, err
	}
	tarPath := filepath.Join(dir, "index.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return IndexEntry{}, err
	}
	defer f.Close()
	h := sha256.New()
	if err := packDir(filepath.Join(dir, "index"), io.MultiWriter(f, h)); err != nil {
		return IndexEntry{}, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return IndexEntry{}, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	e := IndexEntry{Base: s.Base, Next: s.Next, LogSHA256: s.LogSHA256, Object: fmt.Sprintf("%020d-%s.bleve", s.Base, sum[:16]),
		SHA256: sum, Size: size, Records: n, Mapping: mappingVersion, Built: time.Now().UnixMilli()}
	key := tier3.PartitionPrefix(t.ID, p) + e.Object
	info, err := x.cfg.Store.Put(ctx, key, io.NewSectionReader(f, 0, size), size)
	if err != nil {
		return IndexEntry{}, err
	}
	got, err := x.cfg.Store.Head(ctx, key)
	if err != nil {
		return IndexEntry{}, fmt.Errorf("verify %s: %w", e.Object, err)
	}
	if info.SHA256 != sum || got.Size != size || got.SHA256 != sum {
		return IndexEntry{}, fmt.Errorf("%w: %s stored as %d bytes sha256 %s, sent %d bytes sha256 %s", tier3.ErrChecksum, e.Object, got.Size, got.SHA256, size, sum)
	}
	x.m.segments.Inc()
	x.m.records.Add(float64(n))
	x.m.bytes.Add(float64(s.Size))
	x.m.seconds.Observe(time.Since(start).Seconds())
	x.log.Debug("indexed segment", "topic", t.Name, "partition", p, "base", s.Base, "records", n,
		"index_bytes", size, "took", time.Since(start).Round(time.Millisecond))
	return e, nil
}

// Lag returns the archived segments and records not indexed yet: each
// partition the indexer has looked at, its archive now against its index
// manifest now (a pass in progress counts what it has not finished).
func (x *Indexer) Lag() (segments, records int64) {
	x.mu.Lock()
	mans := make(map[partKey]*IndexManifest, len(x.mans))
	for k, m := range x.mans {
		if m != nil {
			mans[k] = m
		}
	}
	x.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for k, m := range mans {
		t, err := x.cfg.Log.Topic(ctx, k.topic)
		if err != nil || !t.SearchEnabled || k.p >= t.Partitions {
			continue
		}
		// A scrape must not wait on a partition whose archive is not
		// readable yet: it is left out until it is.
		pctx, pcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		pi, err := x.cfg.Log.Partition(pctx, t, k.p)
		pcancel()
		if err != nil || pi.Follower {
			continue
		}
		todo := x.missing(m, pi)
		segments += int64(len(todo))
		records += recordsOf(todo)
	}
	return segments, records
}

type poolMetrics struct {
	segments, records, bytes, failures prometheus.Counter
	seconds                            prometheus.Histogram
	lagSegs, lagRecs                   prometheus.GaugeFunc
	paused                             prometheus.Gauge
}

func newPoolMetrics(x *Indexer) *poolMetrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "chronik_indexer_" + name, Help: help})
	}
	return &poolMetrics{
		segments: c("segments_total", "Archived segments indexed and uploaded."),
		records:  c("records_total", "Records indexed into uploaded segment indexes (its rate is the indexing throughput)."),
		bytes:    c("segment_bytes_total", "Bytes of the archived segments indexed."),
		failures: c("failures_total", "Partition passes of the indexer that failed (retried later)."),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chronik_indexer_segment_seconds",
			Help: "Time to index and upload one segment.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		lagSegs: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chronik_indexer_lag_segments",
			Help: "Archived segments not indexed yet."}, func() float64 { s, _ := x.Lag(); return float64(s) }),
		lagRecs: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chronik_indexer_lag_records",
			Help: "Records of archived segments not indexed yet."}, func() float64 { _, r := x.Lag(); return float64(r) }),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chronik_indexer_builds_paused",
			Help: "Index builds paused now because the broker is busy (CHRONIK_INDEX_YIELD_CPU)."}),
	}
}

func (m *poolMetrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.segments, m.records, m.bytes, m.failures, m.seconds, m.lagSegs, m.lagRecs, m.paused}
}

func (m *poolMetrics) register(r prometheus.Registerer) error {
	for _, c := range m.all() {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("indexer: register metrics: %w", err)
		}
	}
	return nil
}

func (m *poolMetrics) unregister(r prometheus.Registerer) {
	for _, c := range m.all() {
		r.Unregister(c)
	}
}
