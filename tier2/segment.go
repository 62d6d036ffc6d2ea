package tier2

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/chronik-go/chronik/internal/vfs"
)

// Segment is one sealed segment. Its exported fields never change once the
// segment is published; compaction publishes a new Segment for the same
// base. Reads are safe for concurrent use and keep working on a segment
// that is being removed: its file is closed only after the last reader
// releases it.
type Segment struct {
	Base    int64 // first offset covered
	Next    int64 // offset after the last one covered
	Size    int64 // bytes in the .log
	MaxTs   int64 // largest batch max timestamp, -1 when empty
	Created int64 // unix millis the segment was sealed (file mod time after a restart)

	maxTsPos int64
	lastPos  int64

	dir   string
	fs    vfs.FS
	files *FileCache

	archived atomic.Bool

	// damage is set once damage is found (Load, Verify) and never cleared:
	// a repair publishes a new Segment. suspect is set by a read that
	// failed a check and cleared by Verify (damage.go).
	damage  atomic.Pointer[DamageError]
	suspect atomic.Bool

	idxMu  sync.Mutex // guards the following
	loaded bool
	idx    []offEntry
	tidx   []timeEntry

	// Guarded by files.mu.
	f       vfs.File
	refs    int
	removed bool
	elem    *list.Element
}

// Empty reports whether compaction left no batch in the segment.
func (s *Segment) Empty() bool { return s.Size == 0 }

// Archived reports whether Tier 3 holds a verified copy (see doc.go).
func (s *Segment) Archived() bool { return s.archived.Load() }

// Path returns the .log path.
func (s *Segment) Path() string { return s.path(logSuffix) }

func (s *Segment) path(suffix string) string {
	return filepath.Join(s.dir, segmentName(s.Base)+suffix)
}

// MarkArchived records that Tier 3 holds a verified copy of the segment:
// from then on local.retention.* govern its local deletion. The marker is
// durable when MarkArchived returns.
func (s *Segment) MarkArchived() error {
	f, err := s.fs.OpenFile(s.path(archivedSuffix), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return err
	}
	s.archived.Store(true)
	return nil
}

// FileCache bounds the segment files held open. A file in use by a reader
// is never closed; idle ones are closed least recently used first.
type FileCache struct {
	max int

	mu   sync.Mutex // guards the following and Segment.f/refs/removed/elem
	lru  list.List  // *Segment with an open file, most recent at the front
	open int
}

// NewFileCache returns a cache holding at most max files open; files in
// use may push it past max until they are released.
func NewFileCache(max int) *FileCache {
	return &FileCache{max: max}
}

// Close closes every idle file. Files still in use are closed on release.
func (c *FileCache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		s := e.Value.(*Segment)
		if s.refs == 0 {
			c.closeLocked(s)
		}
		e = next
	}
}

// Open reports the number of files open.
func (c *FileCache) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

func (c *FileCache) closeLocked(s *Segment) {
	s.f.Close()
	s.f = nil
	c.lru.Remove(s.elem)
	s.elem = nil
	c.open--
}

func (c *FileCache) acquire(s *Segment) (vfs.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.removed {
		return nil, ErrRemoved
	}
	if s.f == nil {
		f, err := s.fs.OpenFile(s.Path(), os.O_RDONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("tier2: open segment: %w", err)
		}
		s.f = f
		s.elem = c.lru.PushFront(s)
		c.open++
		for e := c.lru.Back(); e != nil && c.open > c.max; {
			prev := e.Prev()
			if o := e.Value.(*Segment); o.refs == 0 && o != s {
				c.closeLocked(o)
			}
			e = prev
		}
	} else {
		c.lru.MoveToFront(s.elem)
	}
	s.refs++
	return s.f, nil
}

func (c *FileCache) release(s *Segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refs--
	if s.refs == 0 && s.f != nil && (s.removed || c.open > c.max) {
		c.closeLocked(s)
	}
}

func (c *FileCache) isRemoved(s *Segment) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return s.removed
}

// forget marks s removed and closes its file once idle.
func (c *FileCache) forget(s *Segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.removed = true
	if s.refs == 0 && s.f != nil {
		c.closeLocked(s)
	}
}

// Remove deletes the segment's files (retention, or a deleted topic).
// Readers holding it finish their reads (the open file outlives its name);
// later reads get ErrRemoved, and the caller looks again.
func (s *Segment) Remove() error {
	s.files.forget(s)
	var errs []error
	for _, suf := range []string{archivedSuffix, timeSuffix, indexSuffix, logSuffix} {
		if err := s.fs.Remove(s.path(suf)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// retire drops an old in-memory Segment whose files now belong to a
// replacement with the same base.
func (s *Segment) retire() { s.files.forget(s) }

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 8<<10); return &b }}

// ReadFrom appends to dst the batches starting with the first one whose
// last offset is >= offset, up to limit bytes; when force is set the first
// batch is returned whole even if larger (KIP-74). It reports whether the
// read reached the end of the segment. Batches are copied as stored, never
// decoded. A damaged segment serves its verified prefix: a read that
// reaches the damage stops there (atEnd false), and a read at or past it
// fails with the *DamageError.
func (s *Segment) ReadFrom(offset int64, limit int, dst []byte, force bool) (_ []byte, atEnd bool, err error) {
	d := s.damage.Load()
	if d != nil && offset >= d.Offset {
		return dst, false, d
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return dst, false, err
	}
	defer s.files.release(s)
	end := s.verifiedEnd()
	pos, err := s.locate(f, offset)
	if err != nil {
		s.noteReadErr(err)
		return dst, false, err
	}
	if pos >= end {
		if d != nil {
			return dst, false, d
		}
		return dst, true, nil
	}
	dst, n, err := readRange(f, pos, end, limit, dst, force, s.Path())
	if err != nil {
		s.noteReadErr(err)
		return dst, false, err
	}
	return dst, d == nil && pos+n >= s.Size, nil
}

// BatchAt returns the whole batch at pos, verified.
func (s *Segment) BatchAt(pos int64, dst []byte) ([]byte, error) {
	if d := s.damage.Load(); d != nil && pos >= d.Pos {
		return dst, d
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return dst, err
	}
	defer s.files.release(s)
	dst, err = readBatch(f, pos, s.verifiedEnd(), dst)
	s.noteReadErr(err)
	return dst, err
}

func readBatch(f io.ReaderAt, pos, size int64, dst []byte) ([]byte, error) {
	var pre [batchPrefix]byte
	if pos+batchPrefix > size {
		return dst, fmt.Errorf("%w: batch at %d past the end", ErrCorrupt, pos)
	}
	if err := readFull(f, pre[:], pos); err != nil {
		return dst, err
	}
	_, l, ok := parseBatchPrefix(pre[:])
	if !ok || pos+l > size {
		return dst, fmt.Errorf("%w: bad batch header at %d", ErrCorrupt, pos)
	}
	start := len(dst)
	dst = slices.Grow(dst, int(l))[:start+int(l)]
	if err := readFull(f, dst[start:], pos); err != nil {
		return dst[:start], err
	}
	if _, err := checkBatch(dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// FindTimestampFrom returns the position of the first batch whose last
// offset is >= from and whose max timestamp is >= ts, and false if none is.
// In a damaged segment only the verified prefix is searched: when the
// answer may lie past the damage, the *DamageError is returned.
func (s *Segment) FindTimestampFrom(ts, from int64) (int64, bool, error) {
	d := s.damage.Load()
	if (s.MaxTs < ts && (d == nil || !d.HeaderLost)) || s.Size == 0 || s.Next <= from {
		return 0, false, nil
	}
	if d != nil && from >= d.Offset {
		return 0, false, d
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return 0, false, err
	}
	defer s.files.release(s)
	// Both lookups give a lower bound: every batch before the time index
	// position has a smaller max timestamp, every batch before the offset
	// position ends before from.
	pos, err := s.locate(f, from)
	if err != nil {
		s.noteReadErr(err)
		return 0, false, err
	}
	i := sort.Search(len(s.tidx), func(i int) bool { return s.tidx[i].ts >= ts }) - 1
	if i >= 0 {
		pos = max(pos, int64(s.tidx[i].pos))
	}
	found := int64(-1)
	err = walk(f, pos, s.verifiedEnd(), func(p int64, h batchInfo) bool {
		if h.maxTs >= ts && h.last() >= from {
			found = p
			return false
		}
		return true
	})
	s.noteReadErr(err)
	if err == nil && found < 0 && d != nil {
		return 0, false, d
	}
	return found, found >= 0, err
}

// MaxTimestampBatch returns the position of the first batch holding MaxTs.
func (s *Segment) MaxTimestampBatch() int64 { return s.maxTsPos }

// locate returns the position of the first batch whose last offset is >=
// offset, or the verified end (s.Size unless damaged) if none is before it.
func (s *Segment) locate(f vfs.File, offset int64) (int64, error) {
	if err := s.loadIndexes(f); err != nil {
		return 0, err
	}
	if offset <= s.Base || s.Size == 0 {
		return 0, nil
	}
	rel := offset - s.Base
	i := sort.Search(len(s.idx), func(i int) bool { return int64(s.idx[i].rel) > rel }) - 1
	pos := int64(0)
	if i >= 0 {
		pos = int64(s.idx[i].pos)
	}
	end := s.verifiedEnd()
	found := end
	err := walk(f, pos, end, func(p int64, h batchInfo) bool {
		if h.last() >= offset {
			found = p
			return false
		}
		return true
	})
	return found, err
}

// walk calls fn with the position and header of every batch from pos on
// until fn returns false, reading headers through a pooled scratch buffer.
func walk(f io.ReaderAt, pos, size int64, fn func(pos int64, h batchInfo) bool) error {
	bp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(bp)
	buf := *bp
	bufPos, bufLen := int64(0), 0
	for pos < size {
		if pos < bufPos || pos+batchHeaderLen > bufPos+int64(bufLen) {
			n := int(min(int64(len(buf)), size-pos))
			if n < batchHeaderLen {
				return fmt.Errorf("%w: truncated batch header at %d", ErrCorrupt, pos)
			}
			if err := readFull(f, buf[:n], pos); err != nil {
				return err
			}
			bufPos, bufLen = pos, n
		}
		h := buf[pos-bufPos:]
		if _, l, ok := parseBatchPrefix(h); !ok || pos+l > size {
			return fmt.Errorf("%w: bad batch header at %d", ErrCorrupt, pos)
		}
		info := headerInfo(h)
		if !fn(pos, info) {
			return nil
		}
		pos += info.length
	}
	return nil
}

func readFull(f io.ReaderAt, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("tier2: read at %d: %w", off, err)
}

// loadIndexes reads and verifies both index files on first use; a failing
// one is rebuilt from the log and rewritten.
func (s *Segment) loadIndexes(f vfs.File) error {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if s.loaded {
		return nil
	}
	idx, err1 := readEntries(s.fs, s.path(indexSuffix), kindOffset, s)
	tidx, err2 := readEntries(s.fs, s.path(timeSuffix), kindTime, s)
	if err1 == nil && err2 == nil {
		s.idx, s.tidx = parseOffEntries(idx), parseTimeEntries(tidx)
		s.loaded = true
		return nil
	}
	ix := newIndexer(s.Base)
	err := walk(f, 0, s.verifiedEnd(), func(p int64, h batchInfo) bool { ix.add(p, h); return true })
	if err != nil {
		return err
	}
	s.idx, s.tidx = ix.idx, ix.tidx
	s.loaded = true
	if s.damage.Load() == nil {
		// Best effort: the entries are right in memory either way. A
		// damaged segment's files are left as they are for its repair.
		_ = writeIndexFiles(s.fs, s.dir, s.Base, ix, s.Next, s.Size, false)
	}
	return nil
}

func readEntries(fs vfs.FS, path string, kind uint16, s *Segment) ([]byte, error) {
	b, err := readSmallFile(fs, path, 1<<31)
	if err != nil {
		return nil, err
	}
	h, err := parseIndexHeader(b)
	if err != nil {
		return nil, err
	}
	size := offEntrySize
	if kind == kindTime {
		size = timeEntrySize
	}
	e := b[idxHeaderSize:]
	if h.kind != kind || h.base != s.Base || h.logSize != s.Size || int64(len(e)) != int64(h.count)*int64(size) {
		return nil, fmt.Errorf("%w: index %s does not match its log", ErrCorrupt, path)
	}
	if crc32Sum(e) != h.ecrc {
		return nil, fmt.Errorf("%w: index %s entries crc mismatch", ErrCorrupt, path)
	}
	return e, nil
}

func readSmallFile(fs vfs.FS, path string, limit int64) ([]byte, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, path, fi.Size())
	}
	b := make([]byte, fi.Size())
	if err := readFull(f, b, 0); err != nil {
		return nil, err
	}
	return b, nil
}
