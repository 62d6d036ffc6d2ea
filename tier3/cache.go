package tier3

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Cache is a bounded on-disk cache of archived byte ranges (chunks of
// segment copies), evicted least recently used first by bytes. Its
// directory is emptied when the cache is created: entries are verified
// when downloaded, and a restart simply downloads again.
type Cache struct {
	dir string
	max int64

	mu    sync.Mutex // guards the following
	lru   list.List  // *cacheEntry, most recent at the front
	items map[string]*list.Element
	size  int64
}

type cacheEntry struct {
	key  string
	path string
	size int64
}

// NewCache returns an empty cache in dir holding at most maxBytes.
func NewCache(dir string, maxBytes int64) (*Cache, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("tier3: clear cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tier3: create cache %s: %w", dir, err)
	}
	return &Cache{dir: dir, max: maxBytes, items: make(map[string]*list.Element)}, nil
}

// Size returns the bytes cached.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Has reports whether key is cached.
func (c *Cache) Has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[key]
	return ok
}

// ReadAt copies the cached bytes of key at off into p; ok is false on a
// miss (including an entry evicted while it was being opened).
func (c *Cache) ReadAt(key string, p []byte, off int64) (ok bool, err error) {
	c.mu.Lock()
	el := c.items[key]
	var path string
	if el != nil {
		c.lru.MoveToFront(el)
		path = el.Value.(*cacheEntry).path
	}
	c.mu.Unlock()
	if el == nil {
		return false, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return true, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return false, fmt.Errorf("tier3: read cache entry: %w", err)
}

// Put stores data under key (verified by the caller) and evicts old
// entries beyond the bound.
func (c *Cache) Put(key string, data []byte) error {
	if int64(len(data)) > c.max {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	path := filepath.Join(c.dir, hex.EncodeToString(sum[:16]))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tier3: write cache entry: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tier3: write cache entry: %w", err)
	}
	c.items[key] = c.lru.PushFront(&cacheEntry{key: key, path: path, size: int64(len(data))})
	c.size += int64(len(data))
	for c.size > c.max {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.items, e.key)
		c.size -= e.size
		os.Remove(e.path) // open readers keep the bytes until they close
	}
	return nil
}

// Drop removes key's entry (a failed check).
func (c *Cache) Drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.items, key)
		c.size -= e.size
		os.Remove(e.path)
	}
}
