package tier3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// MemStore is an in-memory Store for unit tests.
type MemStore struct {
	mu   sync.Mutex // guards objs
	objs map[string]memObject
}

type memObject struct {
	data []byte
	sum  string
}

var _ ConditionalStore = (*MemStore)(nil)

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{objs: make(map[string]memObject)} }

func (m *MemStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (ObjectInfo, error) {
	return m.put(ctx, key, body, size, nil)
}

// PutIf implements ConditionalStore.
func (m *MemStore) PutIf(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string) (ObjectInfo, error) {
	return m.put(ctx, key, body, size, &ifMatch)
}

func (m *MemStore) put(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch *string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	sum, err := hashBody(body, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(body, data); err != nil {
		return ObjectInfo{}, fmt.Errorf("tier3: read body: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ifMatch != nil {
		if cur, ok := m.objs[key]; (ok && cur.sum != *ifMatch) || (!ok && *ifMatch != "") {
			return ObjectInfo{}, fmt.Errorf("%w: %s", ErrPrecondition, key)
		}
	}
	m.objs[key] = memObject{data: data, sum: sum}
	return ObjectInfo{Key: key, Size: size, SHA256: sum, ETag: sum}, nil
}

func (m *MemStore) lookup(key string) (memObject, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return o, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return o, nil
}

func (m *MemStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	o, err := m.lookup(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	info := ObjectInfo{Key: key, Size: int64(len(o.data)), SHA256: o.sum, ETag: o.sum}
	return newVerifyingReader(io.NopCloser(bytes.NewReader(o.data)), info), info, nil
}

func (m *MemStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	o, err := m.lookup(key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 || off > int64(len(o.data)) {
		return nil, fmt.Errorf("tier3: range %d+%d of %s (%d bytes) is invalid", off, length, key, len(o.data))
	}
	end := min(off+length, int64(len(o.data)))
	return io.NopCloser(bytes.NewReader(o.data[off:end])), nil
}

func (m *MemStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	o, err := m.lookup(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Key: key, Size: int64(len(o.data)), SHA256: o.sum, ETag: o.sum}, nil
}

func (m *MemStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ObjectInfo
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, ObjectInfo{Key: k, Size: int64(len(o.data)), SHA256: o.sum})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (m *MemStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	delete(m.objs, key)
	m.mu.Unlock()
	return nil
}

// Corrupt flips one byte of an object's content, keeping its stored
// checksum: a test's way to simulate bit rot.
func (m *MemStore) Corrupt(key string, at int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok || at < 0 || at >= int64(len(o.data)) {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	o.data = bytes.Clone(o.data)
	o.data[at] ^= 0xff
	m.objs[key] = o
	return nil
}

// checkKey rejects keys that would escape a file backend's root or that
// S3 would treat specially.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("tier3: bad key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("tier3: bad key %q", key)
		}
	}
	return nil
}
