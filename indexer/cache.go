package indexer

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/blevesearch/bleve/v2"
)

// Cache keeps opened segment indexes: downloaded or built on disk under
// a directory bounded by bytes (least recently used first out), and built
// in memory for ranges of the log that still change, bounded by count.
// Disk entries survive restarts: each directory holds a marker written
// once the index is complete; directories without one are deleted when
// the cache opens. One process at a time uses a directory (an flock);
// another gets a private one beside it, removed on Close.
type Cache struct {
	dir      string
	private  bool
	lock     *os.File
	maxBytes int64
	maxMem   int

	mu      sync.Mutex // guards the following
	entries map[string]*cacheEntry
	lru     list.List // *cacheEntry, most recent at the front
	bytes   int64     // disk entries' sizes
	mem     int       // memory entries
	closed  bool
}

type cacheEntry struct {
	key   string
	dir   string // "" for an index held in memory
	size  int64
	refs  int
	ready chan struct{} // closed when idx or err is set
	idx   bleve.Index   // nil while closed on disk
	err   error
	el    *list.Element

	cmu       sync.Mutex
	docCoords *docCoords // read on first use by a search sorted by time
}

const markerName = "chronik-index.json"

type marker struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// OpenCache opens (creating) a cache in dir holding up to maxBytes on
// disk and maxMem indexes in memory.
func OpenCache(dir string, maxBytes int64, maxMem int) (*Cache, error) {
	if maxBytes < 1<<20 || maxMem < 1 {
		return nil, fmt.Errorf("indexer: cache of %d bytes and %d memory indexes is too small", maxBytes, maxMem)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("indexer: create index cache: %w", err)
	}
	c := &Cache{dir: dir, maxBytes: maxBytes, maxMem: maxMem, entries: map[string]*cacheEntry{}}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("indexer: index cache lock: %w", err)
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		if c.dir, err = os.MkdirTemp(dir, "private-"); err != nil {
			return nil, err
		}
		c.private = true
		return c, nil
	}
	c.lock = f
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range ents {
		if !de.IsDir() {
			continue
		}
		path := filepath.Join(dir, de.Name())
		var m marker
		b, err := os.ReadFile(filepath.Join(path, markerName))
		if err != nil || json.Unmarshal(b, &m) != nil || m.Key == "" || entryDirName(m.Key) != de.Name() {
			_ = os.RemoveAll(path)
			continue
		}
		e := &cacheEntry{key: m.Key, dir: path, size: m.Size, ready: make(chan struct{})}
		close(e.ready)
		e.el = c.lru.PushBack(e)
		c.entries[m.Key] = e
		c.bytes += m.Size
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

func entryDirName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:12])
}

// Handle is a use of an index; Release ends it.
type Handle struct {
	c *Cache
	e *cacheEntry
	// An index from elsewhere (a realtime tail index), and what ends its use.
	idx  bleve.Index
	done func()
}

// Index returns the opened index.
func (h *Handle) Index() bleve.Index {
	if h.e == nil {
		return h.idx
	}
	return h.e.idx
}

// Release lets the cache evict the index again.
func (h *Handle) Release() {
	if h.e == nil {
		if h.done != nil {
			h.done()
		}
		return
	}
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.e.refs--
	h.c.evictLocked()
}

// Has reports whether key is cached (on disk or in memory).
func (c *Cache) Has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return ok && e.err == nil
}

// Get returns key's index, calling load on a miss: with a fresh directory
// to fill (disk entries) or "" (memory ones). Concurrent callers for one
// key share one load.
func (c *Cache) Get(ctx context.Context, key string, mem bool, load func(dir string) (bleve.Index, error)) (*Handle, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("indexer: cache closed")
	}
	e, ok := c.entries[key]
	if ok {
		e.refs++
		c.lru.MoveToFront(e.el)
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(e)
			return nil, ctx.Err()
		}
		if e.err != nil {
			c.release(e)
			return nil, e.err
		}
		if err := c.open(e); err != nil {
			c.release(e)
			return nil, err
		}
		return &Handle{c: c, e: e}, nil
	}
	e = &cacheEntry{key: key, refs: 1, ready: make(chan struct{})}
	if !mem {
		e.dir = filepath.Join(c.dir, entryDirName(key))
	}
	e.el = c.lru.PushFront(e)
	c.entries[key] = e
	c.mu.Unlock()

	idx, size, err := c.fill(e, load)
	c.mu.Lock()
	e.idx, e.err, e.size = idx, err, size
	close(e.ready)
	if err != nil {
		c.lru.Remove(e.el)
		delete(c.entries, key)
		c.mu.Unlock()
		return nil, err
	}
	if mem {
		c.mem++
	} else {
		c.bytes += size
	}
	c.evictLocked()
	c.mu.Unlock()
	return &Handle{c: c, e: e}, nil
}

func (c *Cache) fill(e *cacheEntry, load func(dir string) (bleve.Index, error)) (bleve.Index, int64, error) {
	if e.dir == "" {
		idx, err := load("")
		return idx, 0, err
	}
	_ = os.RemoveAll(e.dir)
	idx, err := load(e.dir)
	if err != nil {
		_ = os.RemoveAll(e.dir)
		return nil, 0, err
	}
	size := dirSize(e.dir)
	b, _ := json.Marshal(marker{Key: e.key, Size: size})
	if err := os.WriteFile(filepath.Join(e.dir, markerName), b, 0o644); err != nil {
		idx.Close()
		_ = os.RemoveAll(e.dir)
		return nil, 0, err
	}
	return idx, size, nil
}

// grow counts n more bytes in a disk entry (a file added beside its
// index) and keeps the marker in step, so a later run counts them too.
func (c *Cache) grow(e *cacheEntry, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[e.key]; !ok || e.dir == "" {
		return
	}
	e.size += n
	c.bytes += n
	if b, err := json.Marshal(marker{Key: e.key, Size: e.size}); err == nil {
		_ = os.WriteFile(filepath.Join(e.dir, markerName), b, 0o644)
	}
	c.evictLocked()
}

// open opens a disk entry found from an earlier run.
func (c *Cache) open(e *cacheEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.idx != nil {
		return nil
	}
	idx, err := openDir(e.dir)
	if err != nil {
		return err
	}
	e.idx = idx
	return nil
}

func (c *Cache) release(e *cacheEntry) {
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// evictLocked drops unused entries, oldest first, while over a bound.
func (c *Cache) evictLocked() {
	for el := c.lru.Back(); el != nil && (c.bytes > c.maxBytes || c.mem > c.maxMem); {
		e := el.Value.(*cacheEntry)
		prev := el.Prev()
		select {
		case <-e.ready:
		default:
			el = prev
			continue
		}
		if e.refs > 0 || (e.dir == "" && c.mem <= c.maxMem) || (e.dir != "" && c.bytes <= c.maxBytes) {
			el = prev
			continue
		}
		c.dropLocked(e)
		el = prev
	}
}

func (c *Cache) dropLocked(e *cacheEntry) {
	c.lru.Remove(e.el)
	delete(c.entries, e.key)
	if e.idx != nil {
		_ = e.idx.Close()
	}
	if e.dir == "" {
		c.mem--
		return
	}
	c.bytes -= e.size
	_ = os.RemoveAll(e.dir)
}

// Close closes every index; disk entries stay for the next run (a
// private directory is removed).
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, e := range c.entries {
		select {
		case <-e.ready:
			if e.idx != nil {
				_ = e.idx.Close()
				e.idx = nil
			}
		default:
		}
	}
	if c.private {
		return os.RemoveAll(c.dir)
	}
	if c.lock != nil {
		return c.lock.Close()
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func removeAll(dir string) error {
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}
