package tier3

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
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
	ctx   context.Context // cancelled by Close; read-ahead runs under it
	stop  context.CancelFunc
	raSem chan struct{}  // bounds read-ahead GETs in flight
	raWG  sync.WaitGroup // read-ahead goroutines; Close waits for them

	mu       sync.Mutex // guards the following
	inflight map[string]*flight
	idxLRU   list.List // *idxEntry, most recent at the front
	idx      map[string]*list.Element
	idxBytes int64
	seq      map[string][]int64 // partition prefix -> offsets where recent reads ended
	hotLRU   list.List          // *hotChunk, most recent at the front
	hot      map[string]*list.Element
	hotBytes int64
}

// hotChunk is a recently fetched chunk kept in memory: a sequential
// reader usually wants the chunk read-ahead just fetched, and serving it
// from memory saves reading it back from the disk cache.
type hotChunk struct {
	key  string
	data []byte
}

// ArchiveConfig tunes an Archive; zero fields take the defaults.
type ArchiveConfig struct {
	Cache *Cache // required: where chunks are kept
	// ChunkSize is the unit of ranged GETs and of the cache (4 MiB).
	ChunkSize int64
	// ReadAhead is how far past a sequential read chunks are fetched
	// (16 MiB), by at most ReadAheadParallel GETs at once (4).
	ReadAhead         int64
	ReadAheadParallel int
	// IndexCacheBytes bounds the parsed indexes kept in memory (64 MiB).
	IndexCacheBytes int64
	// HotBytes bounds the recently fetched chunks kept in memory besides
	// the disk cache (2 x ReadAhead).
	HotBytes int64
}

type flight struct {
	done chan struct{}
	data []byte
	err  error
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
		cfg.ReadAhead = 16 << 20
	}
	if cfg.ReadAheadParallel <= 0 {
		cfg.ReadAheadParallel = 4
	}
	if cfg.IndexCacheBytes <= 0 {
		cfg.IndexCacheBytes = 64 << 20
	}
	if cfg.HotBytes <= 0 {
		cfg.HotBytes = 2 * max(cfg.ReadAhead, cfg.ChunkSize)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Archive{store: store, cfg: cfg, ctx: ctx, stop: stop, raSem: make(chan struct{}, cfg.ReadAheadParallel),
		inflight: make(map[string]*flight), idx: make(map[string]*list.Element), seq: make(map[string][]int64),
		hot: make(map[string]*list.Element)}, nil
}

// Store returns the archive's store.
func (a *Archive) Store() Store { return a.store }

// Close stops read-ahead and waits for it to finish.
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
	buf := make([]byte, a.cfg.ChunkSize)
	for off := int64(0); off < src.Size; off += a.cfg.ChunkSize {
		n := min(a.cfg.ChunkSize, src.Size-off)
		if _, err := src.Log.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
			return SegmentEntry{}, fmt.Errorf("tier3: read segment %d: %w", src.Base, err)
		}
		h.Write(buf[:n])
		crcs = append(crcs, crc32.Checksum(buf[:n], crcTable))
	}
	logSum := hex.EncodeToString(h.Sum(nil))
	name := fmt.Sprintf("%020d-%s", src.Base, logSum[:16])
	e := SegmentEntry{
		Base: src.Base, Next: src.Next, Size: src.Size, MaxTs: src.MaxTs, MaxTsPos: src.MaxTsPos,
		Log: name + ".log", Index: name + ".index", TimeIndex: name + ".timeindex",
		LogSHA256: logSum, ChunkSize: a.cfg.ChunkSize, ChunkCRC32C: crcs, Uploaded: time.Now().UnixMilli(),
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

// Sweep deletes the segment objects under prefix that m does not name:
// what an upload killed before its manifest write left behind. Only the
// partition's single writer may call it, before it uploads. Without a
// manifest (Generation 0) it deletes nothing.
func (a *Archive) Sweep(ctx context.Context, prefix string, m *Manifest) (int, error) {
	if m.Generation == 0 {
		// No manifest exists. It may never have been written (an upload
		// killed before its first manifest) or it may have been lost; in
		// the second case the unnamed objects are the only copy of the
		// archive. Leave them: an orphan costs space, a wrong delete data.
		return 0, nil
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
		if err := a.store.Delete(ctx, o.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
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

// index returns e's parsed index, fetched whole and verified on first use.
func (a *Archive) index(ctx context.Context, prefix string, e *SegmentEntry) (*tier2.Index, error) {
	key := prefix + e.Log
	a.mu.Lock()
	if el, ok := a.idx[key]; ok {
		a.idxLRU.MoveToFront(el)
		a.mu.Unlock()
		return el.Value.(*idxEntry).x, nil
	}
	a.mu.Unlock()
	ib, ii, err := ReadAll(ctx, a.store, prefix+e.Index)
	if err != nil {
		return nil, err
	}
	tb, ti, err := ReadAll(ctx, a.store, prefix+e.TimeIndex)
	if err != nil {
		return nil, err
	}
	if ii.SHA256 != e.IndexSHA256 || ti.SHA256 != e.TimeIndexSHA256 {
		return nil, fmt.Errorf("%w: indexes of %s are not the ones the manifest names", ErrChecksum, key)
	}
	x, err := tier2.ParseIndex(ib, tb)
	if err != nil {
		return nil, fmt.Errorf("%w: indexes of %s: %v", ErrChecksum, key, err)
	}
	if x.Base != e.Base || x.Next != e.Next || x.Size != e.Size {
		return nil, fmt.Errorf("%w: indexes of %s describe another segment", ErrChecksum, key)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.idx[key]; !ok {
		size := int64(len(ib) + len(tb))
		a.idx[key] = a.idxLRU.PushFront(&idxEntry{key: key, x: x, size: size})
		a.idxBytes += size
		for a.idxBytes > a.cfg.IndexCacheBytes && a.idxLRU.Len() > 1 {
			el := a.idxLRU.Back()
			ie := el.Value.(*idxEntry)
			a.idxLRU.Remove(el)
			delete(a.idx, ie.key)
			a.idxBytes -= ie.size
		}
	}
	return x, nil
}

// objReader reads an archived .log through the chunk cache.
type objReader struct {
	a   *Archive
	ctx context.Context
	key string
	e   *SegmentEntry
}

func (r *objReader) ReadAt(p []byte, off int64) (int, error) {
	cs := r.e.ChunkSize
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.e.Size {
			return n, io.EOF
		}
		ci := pos / cs
		in := pos - ci*cs
		want := min(int64(len(p)-n), min(cs, r.e.Size-ci*cs)-in)
		dst := p[n : n+int(want)]
		ck := chunkKey(r.key, ci)
		if data, ok := r.a.hotChunk(ck); ok {
			copy(dst, data[in:])
			n += int(want)
			continue
		}
		ok, err := r.a.cfg.Cache.ReadAt(ck, dst, in)
		if err != nil || !ok {
			data, err := r.a.chunk(r.ctx, r.key, r.e, ci)
			if err != nil {
				return n, err
			}
			copy(dst, data[in:])
		}
		n += int(want)
	}
	return n, nil
}

func chunkKey(key string, ci int64) string { return fmt.Sprintf("%s#%d", key, ci) }

// chunk returns chunk ci of the object, from one ranged GET shared by
// everyone who wants it meanwhile, checked against its CRC-32C before it
// is cached or returned.
// chunkFetchTimeout bounds one shared ranged GET of a chunk.
const chunkFetchTimeout = time.Minute

func (a *Archive) chunk(ctx context.Context, key string, e *SegmentEntry, ci int64) ([]byte, error) {
	ck := chunkKey(key, ci)
	a.mu.Lock()
	f, ok := a.inflight[ck]
	if !ok {
		f = &flight{done: make(chan struct{})}
		a.inflight[ck] = f
	}
	a.mu.Unlock()
	if !ok {
		// Other readers may be waiting on this fetch: their requests must not
		// fail because this caller gave up, so it runs under its own bound.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chunkFetchTimeout)
		f.data, f.err = a.fetchChunk(fctx, key, e, ci)
		cancel()
		// Waiters take the bytes at once; the flight stays findable until
		// the cache has them, so nobody fetches the chunk again meanwhile.
		close(f.done)
		if f.err == nil {
			a.keepHot(ck, f.data)
			// A chunk that cannot be cached is still good to serve.
			_ = a.cfg.Cache.Put(ck, f.data)
		}
		a.mu.Lock()
		delete(a.inflight, ck)
		a.mu.Unlock()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return f.data, f.err
}

func (a *Archive) fetchChunk(ctx context.Context, key string, e *SegmentEntry, ci int64) ([]byte, error) {
	if ci >= int64(len(e.ChunkCRC32C)) {
		return nil, fmt.Errorf("%w: %s has no chunk %d", ErrChecksum, key, ci)
	}
	off := ci * e.ChunkSize
	n := min(e.ChunkSize, e.Size-off)
	rc, err := a.store.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data := make([]byte, n)
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("tier3: read %s chunk %d: %w", key, ci, err)
	}
	if crc32.Checksum(data, crcTable) != e.ChunkCRC32C[ci] {
		return nil, fmt.Errorf("%w: %s bytes %d-%d", ErrChecksum, key, off, off+n)
	}
	return data, nil
}

// Read appends the archived batches from the one holding offset on, up to
// limit bytes (the first batch whole, as KIP-74), continuing into the next
// archived segments. segs is the manifest's list. A read that continues
// where an earlier one ended fetches ReadAhead bytes ahead in the
// background.
func (a *Archive) Read(ctx context.Context, prefix string, segs []SegmentEntry, offset int64, limit int, dst []byte) ([]byte, error) {
	start := len(dst)
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Next > offset })
	if i < len(segs) && a.sequential(prefix, offset) {
		a.readAhead(prefix, segs[i:], offset)
	}
	for ; i < len(segs); i++ {
		e := &segs[i]
		left := limit - (len(dst) - start)
		if len(dst) > start && left <= 0 {
			break
		}
		x, err := a.index(ctx, prefix, e)
		if err != nil {
			return dst[:start], err
		}
		var atEnd bool
		dst, atEnd, err = x.ReadFrom(&objReader{a: a, ctx: ctx, key: prefix + e.Log, e: e}, offset, left, dst, len(dst) == start)
		if err != nil {
			return dst[:start], fmt.Errorf("tier3: read %s%s: %w", prefix, e.Log, err)
		}
		if !atEnd {
			break
		}
		offset = e.Next
	}
	if end, ok := lastOffset(dst[start:]); ok {
		a.remember(prefix, end+1)
	}
	return dst, nil
}

// lastOffset returns the last offset of the last batch in b.
func lastOffset(b []byte) (int64, bool) {
	last, ok := int64(0), false
	for len(b) >= 61 {
		l := int64(int32(binary.BigEndian.Uint32(b[8:]))) + 12
		if l < 61 || l > int64(len(b)) {
			break
		}
		last, ok = int64(binary.BigEndian.Uint64(b))+int64(int32(binary.BigEndian.Uint32(b[23:]))), true
		b = b[l:]
	}
	return last, ok
}

// sequential reports whether a read at offset continues an earlier one of
// the partition (a consumer reading in order); remember records where a
// read ended. A few readers per partition are told apart.
func (a *Archive) sequential(prefix string, offset int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range a.seq[prefix] {
		if o == offset {
			return true
		}
	}
	return false
}

func (a *Archive) remember(prefix string, next int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seq[prefix]
	if len(s) >= 8 {
		s = s[1:]
	}
	a.seq[prefix] = append(s, next)
	if len(a.seq) > 4096 {
		clear(a.seq)
	}
}

// readAhead fetches, in the background, the chunks covering ReadAhead
// bytes from offset's segment on, skipping cached and in-flight ones; it
// never waits for a GET slot.
func (a *Archive) readAhead(prefix string, segs []SegmentEntry, offset int64) {
	budget := a.cfg.ReadAhead
	// Start at the chunk after the one the read itself fetches.
	first := true
	for i := range segs {
		e := &segs[i]
		if budget <= 0 {
			return
		}
		ci := int64(0)
		if first {
			if x, ok := a.cachedIndex(prefix + e.Log); ok {
				ci = x.Near(offset) / e.ChunkSize
			}
			first = false
		}
		key := prefix + e.Log
		for ; ci*e.ChunkSize < e.Size && budget > 0; ci++ {
			budget -= e.ChunkSize
			ck := chunkKey(key, ci)
			a.mu.Lock()
			_, busy := a.inflight[ck]
			a.mu.Unlock()
			if busy {
				continue
			}
			if a.cfg.Cache.Has(ck) {
				continue
			}
			select {
			case a.raSem <- struct{}{}:
			default:
				return
			}
			ci := ci // the loop variable outlives this iteration
			a.raWG.Add(1)
			go func() {
				defer func() { <-a.raSem; a.raWG.Done() }()
				ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
				defer cancel()
				a.chunk(ctx, key, e, ci)
			}()
		}
	}
}

func (a *Archive) cachedIndex(key string) (*tier2.Index, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.idx[key]; ok {
		return el.Value.(*idxEntry).x, true
	}
	return nil, false
}

// BatchAt returns the verified batch at pos of the archived segment.
func (a *Archive) BatchAt(ctx context.Context, prefix string, e *SegmentEntry, pos int64) ([]byte, error) {
	x, err := a.index(ctx, prefix, e)
	if err != nil {
		return nil, err
	}
	return x.BatchAt(&objReader{a: a, ctx: ctx, key: prefix + e.Log, e: e}, pos, nil)
}

// FindTimestampFrom returns the position of the first batch of the
// archived segment whose last offset is >= from and max timestamp >= ts.
func (a *Archive) FindTimestampFrom(ctx context.Context, prefix string, e *SegmentEntry, ts, from int64) (int64, bool, error) {
	x, err := a.index(ctx, prefix, e)
	if err != nil {
		return 0, false, err
	}
	return x.FindTimestampFrom(&objReader{a: a, ctx: ctx, key: prefix + e.Log, e: e}, ts, from)
}

func (a *Archive) hotChunk(ck string) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.hot[ck]; ok {
		a.hotLRU.MoveToFront(el)
		return el.Value.(*hotChunk).data, true
	}
	return nil, false
}

func (a *Archive) keepHot(ck string, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.hot[ck]; ok || int64(len(data)) > a.cfg.HotBytes {
		return
	}
	a.hot[ck] = a.hotLRU.PushFront(&hotChunk{key: ck, data: data})
	a.hotBytes += int64(len(data))
	for a.hotBytes > a.cfg.HotBytes {
		el := a.hotLRU.Back()
		h := el.Value.(*hotChunk)
		a.hotLRU.Remove(el)
		delete(a.hot, h.key)
		a.hotBytes -= int64(len(h.data))
	}
}
