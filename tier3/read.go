package tier3

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// The archived read path.
//
// A chunk (ChunkSize bytes of a .log) is verified against its CRC-32C once,
// when it arrives from the store or the disk cache, and is never modified
// afterwards: readers take views of it (ReadVec) that a Fetch response
// writes to its socket without copying, while the chunk stays in the
// in-memory LRU (HotBytes) for the next reader. Views outlive eviction.
//
// Chunk buffers come from a bounded pool and go back to it when nobody
// holds the chunk any more: the in-memory LRU, the disk writer and each
// reader that passed a Hold (released once its views are written) hold a
// reference. Reusing buffers spares the page faults and garbage of a
// fresh 4 MiB buffer per chunk. A reader without a Hold keeps its
// reference for good: that chunk's buffer is left to the garbage collector.
//
// The disk cache is a second level fed off the read path by one writer
// goroutine through a bounded queue (a full queue drops the write: the
// chunk can be fetched again). It admits a chunk when it would otherwise
// be lost: read-ahead fetched it but nobody read it before it left
// memory, or it is fetched again after being read and dropped (a
// "ghost"). A consumer reading a log once, start to end, so costs no disk
// writes, and a log read again is served from disk from its second read.

// hotChunk is a verified chunk in memory.
type hotChunk struct {
	key  string
	c    *chunk // the LRU's reference
	used bool   // a reader took it; read-ahead alone leaves it false
}

type diskWrite struct {
	key string
	c   *chunk // the writer's reference
}

// chunk is a verified chunk's bytes, never written after the check, and
// the count of references to it (see the top of this file).
type chunk struct {
	buf  []byte // from the pool; data is its start
	data []byte
	refs atomic.Int32
}

// acquire adds a reference unless the chunk has none left (its buffer may
// already be reused).
func (c *chunk) acquire() bool {
	for {
		n := c.refs.Load()
		if n <= 0 {
			return false
		}
		if c.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (a *Archive) release(c *chunk) {
	switch n := c.refs.Add(-1); {
	case n == 0:
		a.pool.put(c.buf)
	case n < 0:
		panic("tier3: chunk released more often than acquired")
	}
}

// Hold keeps the chunks a read's views point into from being reused until
// Release. The zero Hold is ready to use.
type Hold struct {
	a      *Archive
	chunks []*chunk
}

func (h *Hold) add(a *Archive, c *chunk) {
	h.a = a
	h.chunks = append(h.chunks, c)
}

// Release lets go of the chunks: views taken under h must no longer be
// used. h can be used again.
func (h *Hold) Release() {
	if h == nil {
		return
	}
	for i, c := range h.chunks {
		h.a.release(c)
		h.chunks[i] = nil
	}
	h.chunks = h.chunks[:0]
}

// bufPool keeps free chunk buffers of one size, at most max of them.
type bufPool struct {
	size int64
	max  int

	mu     sync.Mutex
	free   [][]byte
	reuses atomic.Int64
}

// get returns a buffer of n bytes (its contents are old bytes).
func (p *bufPool) get(n int64) []byte {
	if n > p.size {
		return make([]byte, n)
	}
	p.mu.Lock()
	if k := len(p.free); k > 0 {
		b := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		p.mu.Unlock()
		p.reuses.Add(1)
		return b[:n]
	}
	p.mu.Unlock()
	return make([]byte, n, p.size)
}

func (p *bufPool) put(b []byte) {
	if int64(cap(b)) != p.size {
		return
	}
	p.mu.Lock()
	if len(p.free) < p.max {
		p.free = append(p.free, b[:p.size])
	}
	p.mu.Unlock()
}

// newChunk wraps a verified buffer from the pool with refs references.
func newChunk(buf []byte, refs int32) *chunk {
	c := &chunk{buf: buf, data: buf[:len(buf):len(buf)]}
	c.refs.Store(refs)
	return c
}

const (
	// diskQueue bounds the chunks waiting for the disk cache writer.
	diskQueue = 8
	// maxGhosts bounds the keys remembered as read and dropped.
	maxGhosts = 1 << 14
	// chunkFetchTimeout bounds one shared ranged GET of a chunk.
	chunkFetchTimeout = time.Minute
)

// readCounters count archived reads for ReadStats.
type readCounters struct {
	gets, getBytes          atomic.Int64
	memHits, memMisses      atomic.Int64
	diskHits, diskMisses    atomic.Int64
	diskWrites, diskDropped atomic.Int64
	waitNanos               atomic.Int64
}

// ReadStats are an Archive's read counters since it was created.
type ReadStats struct {
	GETs, GETBytes int64 // ranged GETs of .log chunks and the bytes they returned
	// MemHits and MemMisses count readers' chunk lookups in memory; a miss
	// then looks in the disk cache (DiskHits, DiskMisses), and a disk miss
	// waits for a GET (its own or one already running).
	MemHits, MemMisses   int64
	DiskHits, DiskMisses int64
	// DiskWrites are chunks copied into the disk cache; DiskDropped are
	// admissions dropped because the writer was busy.
	DiskWrites, DiskDropped int64
	// Wait is the time readers spent waiting for GETs (a pipeline stall
	// when read-ahead is behind).
	Wait time.Duration
	// BufferReuses are chunks received into a buffer from the pool rather
	// than a new one.
	BufferReuses int64
}

// ReadStats returns the read counters.
func (a *Archive) ReadStats() ReadStats {
	return ReadStats{
		GETs: a.st.gets.Load(), GETBytes: a.st.getBytes.Load(),
		MemHits: a.st.memHits.Load(), MemMisses: a.st.memMisses.Load(),
		DiskHits: a.st.diskHits.Load(), DiskMisses: a.st.diskMisses.Load(),
		DiskWrites: a.st.diskWrites.Load(), DiskDropped: a.st.diskDropped.Load(),
		Wait: time.Duration(a.st.waitNanos.Load()), BufferReuses: a.pool.reuses.Load(),
	}
}

func chunkKey(key string, ci int64) string { return key + "#" + strconv.FormatInt(ci, 10) }

func chunkLen(e *SegmentEntry, ci int64) int64 { return min(e.ChunkSize, e.Size-ci*e.ChunkSize) }

// chunkReader reads an archived .log through the chunk caches; it
// implements tier2.SliceReader. It remembers the last chunk it used, so
// a read walking one chunk looks it up once.
type chunkReader struct {
	a    *Archive
	ctx  context.Context
	key  string
	e    *SegmentEntry
	hold *Hold // takes the reference to each chunk used; nil keeps them

	ci   int64
	data []byte // chunk ci, or nil
}

var _ tier2.SliceReader = (*chunkReader)(nil)

func (r *chunkReader) chunkAt(pos int64) ([]byte, int64, error) {
	ci := pos / r.e.ChunkSize
	if r.data == nil || r.ci != ci {
		c, err := r.a.chunkData(r.ctx, r.key, r.e, ci)
		if err != nil {
			return nil, 0, err
		}
		if r.hold != nil {
			r.hold.add(r.a, c)
		}
		r.ci, r.data = ci, c.data
	}
	return r.data, pos - ci*r.e.ChunkSize, nil
}

// Slice returns a view of up to n bytes at off within one chunk. The view
// keeps the chunk's capacity so that tier2 can join adjacent views; it
// must never be appended to.
func (r *chunkReader) Slice(off, n int64) ([]byte, error) {
	if off >= r.e.Size || n <= 0 {
		return nil, nil
	}
	data, in, err := r.chunkAt(off)
	if err != nil {
		return nil, err
	}
	return data[in : in+min(n, int64(len(data))-in)], nil
}

func (r *chunkReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off+int64(n) >= r.e.Size {
			return n, io.EOF
		}
		b, err := r.Slice(off+int64(n), int64(len(p)-n))
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b)
	}
	return n, nil
}

// chunkData returns chunk ci of the object for a reader, with a reference
// the reader owns: from memory, else the disk cache (checked again against
// its CRC-32C), else a GET.
func (a *Archive) chunkData(ctx context.Context, key string, e *SegmentEntry, ci int64) (*chunk, error) {
	if ci < 0 || ci >= int64(len(e.ChunkCRC32C)) {
		return nil, fmt.Errorf("%w: %s has no chunk %d", ErrChecksum, key, ci)
	}
	ck := chunkKey(key, ci)
	for retried := false; ; retried = true {
		if c, ok := a.hotChunk(ck); ok {
			a.st.memHits.Add(1)
			return c, nil
		}
		a.st.memMisses.Add(1)
		if a.cfg.Cache.Has(ck) {
			buf := a.pool.get(chunkLen(e, ci))
			ok, err := a.cfg.Cache.ReadAt(ck, buf, 0)
			if ok && err == nil && crc32.Checksum(buf, crcTable) == e.ChunkCRC32C[ci] {
				a.st.diskHits.Add(1)
				c := newChunk(buf, 2) // the reader's and the LRU's
				a.keepHot(ck, c, true)
				return c, nil
			}
			a.pool.put(buf)
			if ok {
				a.cfg.Cache.Drop(ck) // damaged on local disk: fetch it again
			}
		}
		a.st.diskMisses.Add(1)
		start := time.Now()
		c, err := a.chunk(ctx, key, e, ci)
		a.st.waitNanos.Add(int64(time.Since(start)))
		if err == nil || retried || errors.Is(err, ErrChecksum) || ctx.Err() != nil {
			return c, err
		}
		// The GET may have been read-ahead's, failed midway; try once more.
	}
}

// chunk returns chunk ci of the object, with a reference for the caller,
// from one ranged GET shared by everyone who wants it meanwhile, checked
// against its CRC-32C before anyone sees it.
func (a *Archive) chunk(ctx context.Context, key string, e *SegmentEntry, ci int64) (*chunk, error) {
	ck := chunkKey(key, ci)
	a.mu.Lock()
	f, owner := a.flightLocked(ck, true)
	f.waiters++
	a.mu.Unlock()
	if owner {
		// Other readers may be waiting on this fetch: their requests must not
		// fail because this caller gave up, so it runs under its own bound.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chunkFetchTimeout)
		a.fetchRun(fctx, key, e, ci, []*flight{f})
		cancel()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		a.mu.Lock()
		landed := f.landed
		if !landed {
			f.waiters--
		}
		a.mu.Unlock()
		if landed && f.err == nil {
			a.release(f.c) // the reference land took for this caller
		}
		return nil, ctx.Err()
	}
	return f.c, f.err // on success, land took the reference for this caller
}

// flightLocked returns chunk ck's flight, starting one (owner) when none
// runs. mu must be held.
func (a *Archive) flightLocked(ck string, used bool) (f *flight, owner bool) {
	f, ok := a.inflight[ck]
	if !ok {
		f = &flight{done: make(chan struct{})}
		a.inflight[ck] = f
	}
	f.used = f.used || used
	return f, !ok
}

// land ends a flight: a verified chunk goes to memory (and to disk when it
// was read before and dropped), before the flight stops being findable,
// so nobody fetches it again meanwhile.
func (a *Archive) land(ck string, f *flight, c *chunk, err error) {
	a.mu.Lock()
	f.c, f.err, f.landed = c, err, true
	if err == nil {
		// A reference for each reader waiting, taken before the chunk can
		// leave memory and its buffer be reused.
		c.refs.Add(f.waiters)
		if _, ghost := a.ghosts[ck]; ghost {
			delete(a.ghosts, ck) // read before and fetched again: worth a disk copy
			a.queueDiskLocked(ck, c)
		}
		a.keepHotLocked(ck, c, f.used) // takes the flight's reference
	}
	delete(a.inflight, ck)
	a.mu.Unlock()
	close(f.done)
}

// fetchRun fetches the consecutive chunks from c0 on, one per flight, with
// one ranged GET, landing each chunk as soon as its bytes are in and
// checked: a reader waiting for the first chunk does not wait for the
// whole run. A failure lands on every chunk not yet landed.
func (a *Archive) fetchRun(ctx context.Context, key string, e *SegmentEntry, c0 int64, flights []*flight) {
	off := c0 * e.ChunkSize
	n := int64(0)
	for k := range flights {
		n += chunkLen(e, c0+int64(k))
	}
	rc, err := a.store.GetRange(ctx, key, off, n)
	if err == nil {
		defer rc.Close()
		a.st.gets.Add(1)
	}
	for k, f := range flights {
		ci := c0 + int64(k)
		var c *chunk
		if err == nil {
			c, err = a.readChunk(rc, key, e, ci)
		}
		a.land(chunkKey(key, ci), f, c, err)
	}
}

// crcPiece is how much of a chunk is received before it is added to the
// chunk's CRC-32C: small enough to be checked while still in the CPU's
// cache, rather than read back from memory once the chunk is whole.
const crcPiece = 256 << 10

// readChunk reads chunk ci from a GET's body into a buffer from the pool
// and checks its CRC-32C; the chunk returned has one reference.
func (a *Archive) readChunk(body io.Reader, key string, e *SegmentEntry, ci int64) (*chunk, error) {
	data := a.pool.get(chunkLen(e, ci))
	var crc uint32
	for got := 0; got < len(data); {
		n, err := io.ReadFull(body, data[got:min(got+crcPiece, len(data))])
		crc = crc32.Update(crc, crcTable, data[got:got+n])
		got += n
		a.st.getBytes.Add(int64(n))
		if err != nil {
			a.pool.put(data)
			return nil, fmt.Errorf("tier3: read %s chunk %d: %w", key, ci, err)
		}
	}
	if crc != e.ChunkCRC32C[ci] {
		a.pool.put(data)
		off := ci * e.ChunkSize
		return nil, fmt.Errorf("%w: %s bytes %d-%d", ErrChecksum, key, off, off+int64(len(data)))
	}
	return newChunk(data, 1), nil
}

// Read appends the archived batches from the one holding offset on, up to
// limit bytes (the first batch whole, as KIP-74), continuing into the next
// archived segments. segs is the manifest's list. A read that continues
// where an earlier one ended fetches ReadAhead bytes ahead in the
// background.
func (a *Archive) Read(ctx context.Context, prefix string, segs []SegmentEntry, offset int64, limit int, dst []byte) ([]byte, error) {
	var h Hold
	defer h.Release()
	views, n, err := a.ReadVec(ctx, prefix, segs, offset, limit, nil, &h)
	if err != nil {
		return dst, err
	}
	dst = slices.Grow(dst, n)
	for _, v := range views {
		dst = append(dst, v...)
	}
	return dst, nil
}

// ReadVec is Read without copying: it appends to dst read-only views of
// verified chunks holding the batches, and returns how many bytes they
// hold. The views must never be written or appended to. With a Hold they
// stay valid until its Release (call it once they are written: their
// buffers are then reused); with a nil one, for as long as they are
// referenced.
func (a *Archive) ReadVec(ctx context.Context, prefix string, segs []SegmentEntry, offset int64, limit int, dst [][]byte, h *Hold) ([][]byte, int, error) {
	start, total := len(dst), 0
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Next > offset })
	seq := i < len(segs) && a.sequential(prefix, offset)
	if seq {
		a.mu.Lock()
		a.cursor[prefix] = readCursor{segs: segs[i:], offset: offset}
		a.mu.Unlock()
	}
	next := int64(-1)
	for first := i; i < len(segs); i++ {
		e := &segs[i]
		left := limit - total
		if total > 0 && left <= 0 {
			break
		}
		x, err := a.index(ctx, prefix, e)
		if err != nil {
			return dst[:start], 0, err
		}
		if i == first {
			// Read ahead once the index places offset in a chunk: a whole
			// window for a read continuing an earlier one; one GET's worth
			// for any other, whose GET then also brings the chunks the
			// reader's next read is likely to need.
			budget := a.cfg.ReadAheadGET
			if seq {
				budget = a.cfg.ReadAhead
			}
			a.readAhead(prefix, segs[i:], offset, min(budget, a.cfg.ReadAhead))
		}
		var n int
		var end int64
		var atEnd bool
		dst, n, end, atEnd, err = x.ReadVec(&chunkReader{a: a, ctx: ctx, key: prefix + e.Log, e: e, hold: h}, offset, left, dst, total == 0, !e.BatchesChecked)
		if err != nil {
			return dst[:start], 0, fmt.Errorf("tier3: read %s%s: %w", prefix, e.Log, err)
		}
		if n > 0 {
			total, next = total+n, end
		}
		if !atEnd {
			break
		}
		offset = e.Next
	}
	if next >= 0 {
		a.remember(prefix, next)
	}
	return dst, total, nil
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
		clear(a.cursor)
	}
}

// readCursor is where the last sequential read of a partition started.
type readCursor struct {
	segs   []SegmentEntry
	offset int64
}

// continueAhead runs read-ahead again from the partition's last
// sequential read when a read-ahead GET ends, so that GET slots are kept
// busy while the reader waits for an earlier chunk.
func (a *Archive) continueAhead(prefix string) {
	a.mu.Lock()
	c, ok := a.cursor[prefix]
	a.mu.Unlock()
	if ok && a.ctx.Err() == nil {
		a.readAhead(prefix, c.segs, c.offset, a.cfg.ReadAhead)
	}
}

// readAhead fetches, in the background, the chunks covering budget bytes
// from offset's chunk on, skipping those in memory, in flight or on
// disk: consecutive missing chunks of a segment are fetched by one GET of
// up to ReadAheadGET bytes, at most ReadAheadParallel GETs at once. It
// also loads the indexes of the later segments it reaches, so a reader
// does not wait for them at a segment boundary. It never waits for a slot.
func (a *Archive) readAhead(prefix string, segs []SegmentEntry, offset, budget int64) {
	initial := budget
	for i := range segs {
		e := &segs[i]
		if budget <= 0 {
			return
		}
		key := prefix + e.Log
		ci := int64(0)
		if x, ok := a.cachedIndex(key); ok && i == 0 {
			ci = x.Near(offset) / e.ChunkSize
		} else if !ok && i > 0 {
			if !a.takeSlot() {
				return
			}
			a.goAhead(func(ctx context.Context) { a.index(ctx, prefix, e) }, nil)
		}
		maxRun := max(1, a.cfg.ReadAheadGET/e.ChunkSize)
		for ci*e.ChunkSize < e.Size && budget > 0 {
			if !a.takeSlot() {
				return
			}
			// The run of missing chunks from ci, within the budget.
			var flights []*flight
			c0 := ci
			a.mu.Lock()
			for ; ci*e.ChunkSize < e.Size && budget > 0 && int64(len(flights)) < maxRun; ci++ {
				ck := chunkKey(key, ci)
				_, busy := a.inflight[ck]
				_, hot := a.hot[ck]
				if busy || hot || a.cfg.Cache.Has(ck) {
					if len(flights) > 0 {
						break
					}
					c0 = ci + 1
					budget -= e.ChunkSize
					continue
				}
				if len(flights) == 0 && budget < initial {
					// A run cut short by the window's edge would take a GET
					// for part of what one GET brings when the window has
					// moved on: leave it for then.
					left := (e.Size - ci*e.ChunkSize + e.ChunkSize - 1) / e.ChunkSize
					if budget < min(maxRun, left)*e.ChunkSize {
						a.mu.Unlock()
						<-a.raSem
						return
					}
				}
				budget -= e.ChunkSize
				f, _ := a.flightLocked(ck, false)
				flights = append(flights, f)
			}
			a.mu.Unlock()
			if len(flights) == 0 {
				<-a.raSem
				continue
			}
			a.goAhead(func(ctx context.Context) { a.fetchRun(ctx, key, e, c0, flights) }, func() { a.continueAhead(prefix) })
		}
	}
}

// takeSlot takes a read-ahead slot if one is free; goAhead gives it back.
func (a *Archive) takeSlot() bool {
	select {
	case a.raSem <- struct{}{}:
		return true
	default:
		return false
	}
}

// goAhead runs fn in the background in a slot taken by takeSlot, then
// gives the slot back and runs then (when not nil).
func (a *Archive) goAhead(fn func(ctx context.Context), then func()) {
	a.raWG.Add(1)
	go func() {
		defer a.raWG.Done()
		ctx, cancel := context.WithTimeout(a.ctx, chunkFetchTimeout)
		fn(ctx)
		cancel()
		<-a.raSem
		if then != nil {
			then()
		}
	}()
}

func (a *Archive) cachedIndex(key string) (*tier2.Index, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.idx[key]; ok {
		a.idxLRU.MoveToFront(el)
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
	var h Hold
	defer h.Release()
	return x.BatchAt(&chunkReader{a: a, ctx: ctx, key: prefix + e.Log, e: e, hold: &h}, pos, nil)
}

// FindTimestampFrom returns the position of the first batch of the
// archived segment whose last offset is >= from and max timestamp >= ts.
func (a *Archive) FindTimestampFrom(ctx context.Context, prefix string, e *SegmentEntry, ts, from int64) (int64, bool, error) {
	x, err := a.timeIndex(ctx, prefix, e)
	if err != nil {
		return 0, false, err
	}
	var h Hold
	defer h.Release()
	return x.FindTimestampFrom(&chunkReader{a: a, ctx: ctx, key: prefix + e.Log, e: e, hold: &h}, ts, from)
}

// hotChunk returns chunk ck from memory with a reference for the caller.
func (a *Archive) hotChunk(ck string) (*chunk, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.hot[ck]; ok {
		a.hotLRU.MoveToFront(el)
		h := el.Value.(*hotChunk)
		if h.c.acquire() { // always: the LRU's reference is live
			h.used = true
			return h.c, true
		}
	}
	return nil, false
}

func (a *Archive) keepHot(ck string, c *chunk, used bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keepHotLocked(ck, c, used)
}

// keepHotLocked adds a verified chunk to memory, taking over one of its
// references, and evicts the least recently used beyond HotBytes,
// admitting to the disk cache those that would otherwise be lost (see the
// top of this file). mu must be held.
func (a *Archive) keepHotLocked(ck string, c *chunk, used bool) {
	if int64(len(c.data)) > a.cfg.HotBytes {
		return // never in memory: the reference is kept for good, so readers waiting for it can take theirs
	}
	if _, ok := a.hot[ck]; ok {
		a.release(c)
		return
	}
	a.hot[ck] = a.hotLRU.PushFront(&hotChunk{key: ck, c: c, used: used})
	a.hotBytes += int64(len(c.data))
	for a.hotBytes > a.cfg.HotBytes {
		el := a.hotLRU.Back()
		h := el.Value.(*hotChunk)
		a.hotLRU.Remove(el)
		delete(a.hot, h.key)
		a.hotBytes -= int64(len(h.c.data))
		switch {
		case a.cfg.Cache.Has(h.key):
		case !h.used:
			a.queueDiskLocked(h.key, h.c) // fetched ahead of a reader that has not come yet
		default:
			a.addGhostLocked(h.key)
		}
		a.release(h.c)
	}
}

func (a *Archive) addGhostLocked(ck string) {
	if _, ok := a.ghosts[ck]; ok {
		return
	}
	if len(a.ghostQ) >= maxGhosts {
		delete(a.ghosts, a.ghostQ[0])
		a.ghostQ = a.ghostQ[1:]
	}
	a.ghosts[ck] = struct{}{}
	a.ghostQ = append(a.ghostQ, ck)
}

// queueDiskLocked hands a chunk to the disk writer, or drops it when the
// writer is behind. mu must be held.
func (a *Archive) queueDiskLocked(ck string, c *chunk) {
	if len(a.diskQ) == cap(a.diskQ) || !c.acquire() {
		a.st.diskDropped.Add(1)
		return
	}
	select {
	case a.diskQ <- diskWrite{key: ck, c: c}:
	default:
		a.release(c)
		a.st.diskDropped.Add(1)
	}
}

func (a *Archive) diskWriter() {
	defer a.raWG.Done()
	for {
		select {
		case <-a.ctx.Done():
			return
		case w := <-a.diskQ:
			// A chunk that cannot be cached is still good to serve.
			if err := a.cfg.Cache.Put(w.key, w.c.data); err == nil {
				a.st.diskWrites.Add(1)
			}
			a.release(w.c)
		}
	}
}
