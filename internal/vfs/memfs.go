package vfs

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// ErrStaleHandle is returned by a MemFS file handle opened before a Crash:
// the process that held it is gone.
var ErrStaleHandle = errors.New("vfs: file handle from before a crash")

// MemFS is an in-memory FS that remembers what has been made durable, so
// tests can simulate power loss with Crash.
//
// Durability model:
//   - File contents: File.Sync makes every byte of that file durable. Bytes
//     written since are a volatile tail; Crash keeps none of it, all of it,
//     or a random-length prefix, and sometimes garbles or zeroes the last
//     kept bytes (up to 512, a torn sector).
//     If a file was overwritten or truncated below its synced length since
//     the last Sync, Crash keeps either the synced content or the current
//     content, at random.
//   - Directory entries: creations, removals and renames are logged per
//     directory; SyncDir makes them durable. Crash keeps a random prefix of
//     each directory's log (journaled filesystems apply metadata in order).
//     A rename within one directory is atomic; a rename across directories
//     is two independent changes.
//   - Directories themselves (MkdirAll) are durable at once.
//
// MemFS is safe for concurrent use.
type MemFS struct {
	mu   sync.Mutex // guards the following
	gen  uint64     // bumped by Crash; handles of an older generation fail
	dirs map[string]*memDir
}

// NewMemFS returns an empty MemFS with a root directory "/" (and "."
// for relative paths).
func NewMemFS() *MemFS {
	m := &MemFS{dirs: make(map[string]*memDir)}
	m.dirs["/"] = newMemDir()
	m.dirs["."] = newMemDir()
	return m
}

var _ FS = (*MemFS)(nil)

type memDir struct {
	entries map[string]*memNode // current names
	durable map[string]*memNode // names as of the last SyncDir
	log     []dirOp             // changes since the last SyncDir, oldest first
}

// dirOp is one atomic change to a directory: each name is linked to a node,
// or unlinked when the node is nil.
type dirOp []dirChange

type dirChange struct {
	name string
	node *memNode
}

func newMemDir() *memDir {
	return &memDir{entries: map[string]*memNode{}, durable: map[string]*memNode{}}
}

func (d *memDir) apply(op dirOp) {
	for _, c := range op {
		if c.node == nil {
			delete(d.entries, c.name)
		} else {
			d.entries[c.name] = c.node
		}
	}
	d.log = append(d.log, op)
}

type memNode struct {
	data    []byte
	modTime time.Time
	// data[:syncedLen] is durable, unless rewritten is set, in which case
	// syncedCopy holds the durable content.
	syncedLen  int
	rewritten  bool
	syncedCopy []byte
}

// preserveSynced must be called before changing bytes below syncedLen.
func (n *memNode) preserveSynced() {
	if !n.rewritten {
		n.syncedCopy = slices.Clone(n.data[:n.syncedLen])
		n.rewritten = true
	}
}

func (n *memNode) crash(rng *rand.Rand) {
	if n.rewritten {
		if rng.IntN(2) == 0 {
			n.data = n.syncedCopy
		}
	} else {
		tail := len(n.data) - n.syncedLen
		// Losing all or none of the tail are the common real outcomes; give
		// each a quarter of the crashes and spread the rest uniformly.
		keep := 0
		if tail > 0 {
			switch rng.IntN(4) {
			case 0:
			case 1:
				keep = tail
			default:
				keep = rng.IntN(tail + 1)
			}
		}
		n.data = n.data[:n.syncedLen+keep]
		if keep > 0 && rng.IntN(3) == 0 {
			torn := n.data[len(n.data)-1-rng.IntN(min(keep, 512)):]
			if rng.IntN(2) == 0 {
				clear(torn)
			} else {
				for i := range torn {
					torn[i] = byte(rng.UintN(256))
				}
			}
		}
	}
	n.data = slices.Clip(n.data)
	n.syncedLen = len(n.data)
	n.rewritten = false
	n.syncedCopy = nil
}

// Crash simulates power loss: every directory keeps its durable entries plus
// a random prefix of later changes, and every file keeps its durable content
// plus a random part of what was written since (see MemFS). Handles opened
// before the crash fail with ErrStaleHandle.
func (m *MemFS) Crash(rng *rand.Rand) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	// Iterate in a fixed order so a seeded rng reproduces a crash.
	names := make([]string, 0, len(m.dirs))
	for name := range m.dirs {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[*memNode]bool{}
	for _, name := range names {
		d := m.dirs[name]
		keep := rng.IntN(len(d.log) + 1)
		d.entries = cloneEntries(d.durable)
		for _, op := range d.log[:keep] {
			d.apply(op)
		}
		d.log = nil
		d.durable = cloneEntries(d.entries)
		files := make([]string, 0, len(d.entries))
		for f := range d.entries {
			files = append(files, f)
		}
		sort.Strings(files)
		for _, f := range files {
			if n := d.entries[f]; !seen[n] {
				seen[n] = true
				n.crash(rng)
			}
		}
	}
}

func cloneEntries(e map[string]*memNode) map[string]*memNode {
	c := make(map[string]*memNode, len(e))
	for k, v := range e {
		c[k] = v
	}
	return c
}

// ReadFile returns a copy of name's current content, for test assertions.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("read", name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(n.data), nil
}

// WriteFile replaces the content of an existing file, durably, as if the
// disk itself had changed under the filesystem (tests use it to corrupt).
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.lookupLocked("write", name)
	if err != nil {
		return err
	}
	n.data = slices.Clone(data)
	n.syncedLen = len(n.data)
	n.rewritten = false
	n.syncedCopy = nil
	return nil
}

func (m *MemFS) lookupLocked(op, name string) (*memNode, error) {
	name = filepath.Clean(name)
	d := m.dirs[filepath.Dir(name)]
	if d == nil || d.entries[filepath.Base(name)] == nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return d.entries[filepath.Base(name)], nil
}

func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if m.dirs[name] != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a directory")}
	}
	d := m.dirs[filepath.Dir(name)]
	if d == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	base := filepath.Base(name)
	n := d.entries[base]
	switch {
	case n != nil && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case n == nil && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case n == nil:
		n = &memNode{modTime: time.Now()}
		d.apply(dirOp{{base, n}})
	}
	if flag&os.O_TRUNC != 0 && len(n.data) > 0 {
		if n.syncedLen > 0 {
			n.preserveSynced()
		}
		n.data = n.data[:0]
	}
	return &memFile{fs: m, node: n, name: name, gen: m.gen, flag: flag}, nil
}

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if d := m.dirs[name]; d != nil {
		if len(d.entries) > 0 || m.hasSubdirLocked(name) {
			return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
		}
		delete(m.dirs, name)
		return nil
	}
	if _, err := m.lookupLocked("remove", name); err != nil {
		return err
	}
	m.dirs[filepath.Dir(name)].apply(dirOp{{filepath.Base(name), nil}})
	return nil
}

func (m *MemFS) hasSubdirLocked(dir string) bool {
	for p := range m.dirs {
		if p != dir && filepath.Dir(p) == dir {
			return true
		}
	}
	return false
}

func (m *MemFS) Rename(oldpath, newpath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldpath, newpath = filepath.Clean(oldpath), filepath.Clean(newpath)
	n, err := m.lookupLocked("rename", oldpath)
	if err != nil {
		return err
	}
	od, nd := m.dirs[filepath.Dir(oldpath)], m.dirs[filepath.Dir(newpath)]
	if nd == nil {
		return &fs.PathError{Op: "rename", Path: newpath, Err: fs.ErrNotExist}
	}
	if oldpath == newpath {
		return nil
	}
	if od == nd {
		od.apply(dirOp{{filepath.Base(oldpath), nil}, {filepath.Base(newpath), n}})
		return nil
	}
	od.apply(dirOp{{filepath.Base(oldpath), nil}})
	nd.apply(dirOp{{filepath.Base(newpath), n}})
	return nil
}

func (m *MemFS) MkdirAll(path string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := filepath.Clean(path); m.dirs[p] == nil; p = filepath.Dir(p) {
		if n := m.dirs[filepath.Dir(p)]; n != nil && n.entries[filepath.Base(p)] != nil {
			return &fs.PathError{Op: "mkdir", Path: p, Err: errors.New("not a directory")}
		}
		m.dirs[p] = newMemDir()
	}
	return nil
}

func (m *MemFS) ReadDir(name string) ([]os.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	d := m.dirs[name]
	if d == nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	var out []os.DirEntry
	for base, n := range d.entries {
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: base, size: int64(len(n.data)), mod: n.modTime}))
	}
	for p := range m.dirs {
		if p != name && filepath.Dir(p) == name {
			out = append(out, fs.FileInfoToDirEntry(memInfo{name: filepath.Base(p), dir: true}))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirs[filepath.Clean(dir)]
	if d == nil {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	d.durable = cloneEntries(d.entries)
	d.log = nil
	return nil
}

type memFile struct {
	fs   *MemFS
	node *memNode
	name string
	gen  uint64
	flag int

	// Owned by the handle's user, as with *os.File; read under fs.mu.
	off    int64
	closed bool
}

var _ File = (*memFile)(nil)

type access uint8

const (
	accessAny access = iota
	accessRead
	accessWrite
)

// checkLocked returns why the handle cannot be used for an operation.
// f.fs.mu must be held.
func (f *memFile) checkLocked(op string, need access) error {
	var err error
	acc := f.flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	switch {
	case f.closed:
		err = fs.ErrClosed
	case f.gen != f.fs.gen:
		err = ErrStaleHandle
	case need == accessWrite && acc == os.O_RDONLY, need == accessRead && acc == os.O_WRONLY:
		err = fs.ErrPermission
	default:
		return nil
	}
	return &fs.PathError{Op: op, Path: f.name, Err: err}
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write", accessWrite); err != nil {
		return 0, err
	}
	n := f.node
	off := f.off
	if f.flag&os.O_APPEND != 0 {
		off = int64(len(n.data))
	}
	if off < int64(n.syncedLen) && len(p) > 0 {
		n.preserveSynced()
	}
	if end := off + int64(len(p)); end > int64(len(n.data)) {
		n.data = slices.Grow(n.data, int(end)-len(n.data))[:end]
	}
	copy(n.data[off:], p)
	n.modTime = time.Now()
	f.off = off + int64(len(p))
	return len(p), nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("read", accessRead); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errors.New("negative offset")}
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("sync", accessAny); err != nil {
		return err
	}
	n := f.node
	n.syncedLen = len(n.data)
	n.rewritten = false
	n.syncedCopy = nil
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("truncate", accessWrite); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: errors.New("negative size")}
	}
	n := f.node
	if size < int64(n.syncedLen) {
		n.preserveSynced()
	}
	if size <= int64(len(n.data)) {
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-int64(len(n.data)))...)
	}
	n.modTime = time.Now()
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("stat", accessAny); err != nil {
		return nil, err
	}
	return memInfo{name: filepath.Base(f.name), size: int64(len(f.node.data)), mod: f.node.modTime}, nil
}

type memInfo struct {
	name string
	size int64
	mod  time.Time
	dir  bool
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }
func (i memInfo) Mode() os.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
