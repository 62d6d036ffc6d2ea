package tier3

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// Archive uploads sealed segments to a Store and serves reads of the
// archived copies: ranged GETs of fixed-size chunks of a segment's .log,
// each checked against its CRC-32C from the manifest before it is cached
// or used, a bounded on-disk chunk cache, and read-ahead for consumers
// reading in order.
type Archive struct {
	store Store
	cfg   ArchiveConfig
	ctx   context.Context // cancelled by Close; read-ahead and disk writes run under it
	stop  context.CancelFunc
	raSem chan struct{}  // bounds read-ahead GETs in flight
	raWG  sync.WaitGroup // read-ahead goroutines and the disk writer; Close waits for them
	diskQ chan diskWrite // chunks to copy into the disk cache; bounded, dropped when full
	pool  bufPool        // free chunk buffers
	st    readCounters

	mu       sync.Mutex // guards the following
	inflight map[string]*flight
	idxLRU   list.List // *idxEntry, most recent at the front
	idx      map[string]*list.Element
	idxBytes int64
	seq      map[string][]int64    // partition prefix -> offsets where recent reads ended
	cursor   map[string]readCursor // partition prefix -> its last sequential read
	hotLRU   list.List             // *hotChunk, most recent at the front
	hot      map[string]*list.Element
	hotBytes int64
	ghosts   map[string]struct{} // chunks read and dropped from memory without a disk copy
	ghostQ   []string            // ghosts, oldest first; at most maxGhosts
}

// ArchiveConfig tunes an Archive; zero fields take the defaults.
type ArchiveConfig struct {
	Cache *Cache // required: where chunks are kept
	// ChunkSize is the unit of ranged GETs and of the cache (4 MiB).
	ChunkSize int64
	// ReadAhead is how far past a sequential read chunks are fetched
	// (64 MiB), by at most ReadAheadParallel GETs at once (4), each of at
	// most ReadAheadGET bytes (16 MiB; consecutive chunks of a segment).
	// A window larger than ReadAheadParallel x ReadAheadGET keeps every
	// GET slot busy while the reader waits for the oldest one. Any other
	// read fetches ReadAheadGET bytes from its chunk (at most ReadAhead).
	ReadAhead         int64
	ReadAheadParallel int
	ReadAheadGET      int64
	// IndexCacheBytes bounds the parsed indexes kept in memory (64 MiB).
	IndexCacheBytes int64
	// HotBytes bounds the verified chunks kept in memory (2 x ReadAhead,
	// at least 2 chunks). Fetch responses hold views of these chunks until
	// they are written, so a chunk evicted meanwhile lives on until then;
	// its buffer is reused after that (see read.go).
	HotBytes int64
}

type flight struct {
	// Guarded by Archive.mu: used is set when a reader waits for it (not
	// only read-ahead); waiters counts the readers waiting, each of whom
	// gets a reference when it lands.
	used    bool
	waiters int32
	landed  bool
	done    chan struct{}
	c       *chunk // landed: its reference passed to the LRU, or kept for good
	err     error
}

type idxEntry struct {
	key  string
	x    *tier2.Index
	size int64
}

// NewArchive returns an Archive over store.
func NewArchive(store Store, cfg ArchiveConfig) (*Archive, error) {
	if cfg.Cache == nil {
		return nil, errors.New("tier3: archive needs a cache")
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 4 << 20
	}
	if cfg.ReadAhead < 0 {
		cfg.ReadAhead = 0
	} else if cfg.ReadAhead == 0 {
		cfg.ReadAhead = 64 << 20
	}
	if cfg.ReadAheadParallel <= 0 {
		cfg.ReadAheadParallel = 4
	}
	if cfg.ReadAheadGET <= 0 {
		cfg.ReadAheadGET = 16 << 20
	}
	if cfg.IndexCacheBytes <= 0 {
		cfg.IndexCacheBytes = 64 << 20
	}
	if cfg.HotBytes <= 0 {
		cfg.HotBytes = 2 * max(cfg.ReadAhead, cfg.ChunkSize)
	}
	ctx, stop := context.WithCancel(context.Background())
	a := &Archive{store: store, cfg: cfg, ctx: ctx, stop: stop, raSem: make(chan struct{}, cfg.ReadAheadParallel),
		diskQ: make(chan diskWrite, diskQueue), inflight: make(map[string]*flight), idx: make(map[string]*list.Element),
		seq: make(map[string][]int64), cursor: make(map[string]readCursor), hot: make(map[string]*list.Element), ghosts: make(map[string]struct{})}
	// Buffers flow from the LRU's evictions to the next GETs; more free ones
	// than one GET fills would be memory kept for nothing.
	a.pool = bufPool{size: cfg.ChunkSize, max: int(max(2, cfg.ReadAheadGET/cfg.ChunkSize))}
	a.raWG.Add(1)
	go a.diskWriter()
	return a, nil
}

// Store returns the archive's store.
func (a *Archive) Store() Store { return a.store }

// Close stops read-ahead and disk-cache writes and waits for them.
func (a *Archive) Close() {
	a.stop()
	a.raWG.Wait()
}

// SegmentSource is a sealed segment to upload.
type SegmentSource struct {
	Base, Next, Size, MaxTs, MaxTsPos int64
	Log                               io.ReaderAt // Size bytes
	Index, TimeIndex                  []byte      // verified by tier2.Segment.IndexBytes
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Upload puts the segment's three objects under prefix and verifies each
// (size and SHA-256 as stored) before returning the manifest entry that
// names them. Nothing is recorded in any manifest here.
func (a *Archive) Upload(ctx context.Context, prefix string, src SegmentSource) (SegmentEntry, error) {
	h := sha256.New()
	var crcs []uint32
	var batches tier2.BatchVerifier
	buf := make([]byte, a.cfg.ChunkSize)
	for off := int64(0); off < src.Size; off += a.cfg.ChunkSize {
		n := min(a.cfg.ChunkSize, src.Size-off)
		if _, err := src.Log.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return SegmentEntry{}, fmt.Errorf("tier3: read segment %d: %w", src.Base, err)
		}
		h.Write(buf[:n])
		crcs = append(crcs, crc32.Checksum(buf[:n], crcTable))
		batches.Write(buf[:n])
	}
	if err := batches.Close(); err != nil {
		// Never archive a damaged batch: the chunk CRCs would vouch for it.
		return SegmentEntry{}, fmt.Errorf("tier3: segment %d: %w", src.Base, err)
	}
	logSum := hex.EncodeToString(h.Sum(nil))
	name := fmt.Sprintf("%020d-%s", src.Base, logSum[:16])
	e := SegmentEntry{
		Base: src.Base, Next: src.Next, Size: src.Size, MaxTs: src.MaxTs, MaxTsPos: src.MaxTsPos,
		Log: name + ".log", Index: name + ".index", TimeIndex: name + ".timeindex",
		LogSHA256: logSum, ChunkSize: a.cfg.ChunkSize, ChunkCRC32C: crcs, BatchesChecked: true, Uploaded: time.Now().UnixMilli(),
	}
	put := func(key string, body io.ReadSeeker, size int64, want string) (string, error) {
		info, err := a.store.Put(ctx, prefix+key, body, size)
		if err != nil {
			return "", err
		}
		if want != "" && info.SHA256 != want {
			return "", fmt.Errorf("%w: %s changed while it was uploaded", ErrChecksum, key)
		}
		got, err := a.store.Head(ctx, prefix+key)
		if err != nil {
			return "", fmt.Errorf("tier3: verify %s: %w", key, err)
		}
		if got.Size != size || got.SHA256 != info.SHA256 {
			return "", fmt.Errorf("%w: %s stored as %d bytes sha256 %s, sent %d bytes sha256 %s", ErrChecksum, key, got.Size, got.SHA256, size, info.SHA256)
		}
		return info.SHA256, nil
	}
	var err error
	if _, err = put(e.Log, io.NewSectionReader(src.Log, 0, src.Size), src.Size, logSum); err != nil {
		return SegmentEntry{}, err
	}
	if e.IndexSHA256, err = put(e.Index, bytes.NewReader(src.Index), int64(len(src.Index)), ""); err != nil {
		return SegmentEntry{}, err
	}
	if e.TimeIndexSHA256, err = put(e.TimeIndex, bytes.NewReader(src.TimeIndex), int64(len(src.TimeIndex)), ""); err != nil {
		return SegmentEntry{}, err
	}
	return e, nil
}

// DeleteSegment removes an entry's objects (after no manifest names it).
func (a *Archive) DeleteSegment(ctx context.Context, prefix string, e SegmentEntry) error {
	var errs []error
	for _, k := range []string{e.Log, e.Index, e.TimeIndex} {
		errs = append(errs, a.store.Delete(ctx, prefix+k))
	}
	return errors.Join(errs...)
}

// Sweep deletes the segment objects under prefix that m does not name and
// that lie at or above the start of what m governs (its first segment, or
// its log start when it has none): what an upload killed before its
// manifest write, or a deposed leader's upload, left behind. Only the
// partition's single writer may call it, after its first fencing write and
// before it uploads. Objects below that start are left alone: they may be
// the only copy of history whose manifest was lost and written anew. Without
// a stored manifest it deletes nothing.
func (a *Archive) Sweep(ctx context.Context, prefix string, m *Manifest) (int, error) {
	if !m.Exists {
		// No manifest exists. It may never have been written (an upload
		// killed before its first manifest) or it may have been lost; in
		// the second case the unnamed objects are the only copy of the
		// archive. Leave them: an orphan costs space, a wrong delete data.
		return 0, nil
	}
	floor := m.LogStart
	if len(m.Segments) > 0 {
		floor = m.Segments[0].Base
	}
	objs, err := a.store.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	named := map[string]bool{}
	for _, e := range m.Segments {
		named[e.Log], named[e.Index], named[e.TimeIndex] = true, true, true
	}
	n := 0
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, prefix)
		if strings.Contains(rel, "/") || named[rel] || !(strings.HasSuffix(rel, ".log") || strings.HasSuffix(rel, ".index") || strings.HasSuffix(rel, ".timeindex")) {
			continue
		}
		if base, ok := SegmentObjectBase(rel); !ok || base < floor {
			continue
		}
		if err := a.store.Delete(ctx, o.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// SegmentObjectBase parses the base offset from a segment object's name
// (<base, 20 digits>-<sha prefix>.<ext>).
func SegmentObjectBase(name string) (int64, bool) {
	digits, _, ok := strings.Cut(name, "-")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	base, err := strconv.ParseInt(digits, 10, 64)
	return base, err == nil
}

// DeletePrefix removes every object under prefix (a deleted topic).
func (a *Archive) DeletePrefix(ctx context.Context, prefix string) error {
	objs, err := a.store.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := a.store.Delete(ctx, o.Key); err != nil {
			return err
		}
	}
	return nil
}

// index returns e's parsed offset index, fetched whole and verified on
// first use. The time index is left in the store until a timestamp lookup
// needs it (timeIndex): reads by offset, a catch-up's, never do.
func (a *Archive) index(ctx context.Context, prefix string, e *SegmentEntry) (*tier2.Index, error) {
	key := prefix + e.Log
	if x, ok := a.cachedIndex(key); ok {
		return x, nil
	}
	ib, ii, err := ReadAll(ctx, a.store, prefix+e.Index)
	if err != nil {
		return nil, err
	}
	if ii.SHA256 != e.IndexSHA256 {
		return nil, fmt.Errorf("%w: index of %s is not the one the manifest names", ErrChecksum, key)
	}
	x, err := tier2.ParseOffsetIndex(ib)
	if err != nil {
		return nil, fmt.Errorf("%w: index of %s: %v", ErrChecksum, key, err)
	}
	if x.Base != e.Base || x.Next != e.Next || x.Size != e.Size {
		return nil, fmt.Errorf("%w: index of %s describes another segment", ErrChecksum, key)
	}
	return a.cacheIndex(key, x, int64(len(ib)), false), nil
}

// timeIndex returns e's parsed index with its time index, fetching the
// .timeindex on first use.
func (a *Archive) timeIndex(ctx context.Context, prefix string, e *SegmentEntry) (*tier2.Index, error) {
	x, err := a.index(ctx, prefix, e)
	if err != nil || x.HasTimeIndex() {
		return x, err
	}
	key := prefix + e.Log
	tb, ti, err := ReadAll(ctx, a.store, prefix+e.TimeIndex)
	if err != nil {
		return nil, err
	}
	if ti.SHA256 != e.TimeIndexSHA256 {
		return nil, fmt.Errorf("%w: time index of %s is not the one the manifest names", ErrChecksum, key)
	}
	if x, err = x.WithTimeIndex(tb); err != nil {
		return nil, fmt.Errorf("%w: time index of %s: %v", ErrChecksum, key, err)
	}
	return a.cacheIndex(key, x, int64(len(tb)), true), nil
}

// cacheIndex keeps x as key's index, adding size bytes to its entry, and
// returns the index to use: x, or the one cached meanwhile by another
// reader unless x adds the time index it lacks.
func (a *Archive) cacheIndex(key string, x *tier2.Index, size int64, withTime bool) *tier2.Index {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.idx[key]; ok {
		ie := el.Value.(*idxEntry)
		a.idxLRU.MoveToFront(el)
		if !withTime || ie.x.HasTimeIndex() {
			return ie.x
		}
		ie.x = x
		ie.size += size
		a.idxBytes += size
	} else {
		a.idx[key] = a.idxLRU.PushFront(&idxEntry{key: key, x: x, size: size})
		a.idxBytes += size
	}
	for a.idxBytes > a.cfg.IndexCacheBytes && a.idxLRU.Len() > 1 {
		el := a.idxLRU.Back()
		ie := el.Value.(*idxEntry)
		a.idxLRU.Remove(el)
		delete(a.idx, ie.key)
		a.idxBytes -= ie.size
	}
	return x
}
