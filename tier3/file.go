package tier3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/chronik-go/chronik/internal/vfs"
)

// FileStore keeps objects as files under a root directory: the embedded
// default (file://<data-dir>/archive), needing no other process.
//
// An object is the file <root>/<key> holding the content followed by a
// 40-byte trailer: the content's SHA-256 (32 bytes) and the magic
// "CHRNKSUM". Put writes <dir>/.<name>.tmp-<random>, fsyncs it, renames it
// over the key and fsyncs the directory, so a crash leaves the old object
// or the new one. Leftover .tmp- files (a crash mid-Put) are never listed
// or read; an operator may delete them.
type FileStore struct {
	root string
	fs   vfs.FS

	condMu sync.Mutex // serialises PutIf within this process; flock across processes
}

var _ ConditionalStore = (*FileStore)(nil)

const (
	fileTrailerMagic = "CHRNKSUM"
	fileTrailerLen   = 32 + len(fileTrailerMagic)
	fileTmpMarker    = ".tmp-"
)

// NewFileStore returns a store rooted at dir (created if missing). fs nil
// means the OS.
func NewFileStore(dir string, fs vfs.FS) (*FileStore, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tier3: create %s: %w", dir, err)
	}
	return &FileStore{root: dir, fs: fs}, nil
}

func (s *FileStore) path(key string) string { return filepath.Join(s.root, filepath.FromSlash(key)) }

// PutIf implements ConditionalStore. The check and the rename happen under
// an exclusive flock(2) of <dir>/.<name>.lock (and a mutex within this
// process), so writers sharing the directory — brokers on one machine, or
// on one NFS mount that honours flock — see one another's versions. An
// object's ETag is its content's SHA-256.
func (s *FileStore) PutIf(ctx context.Context, key string, body io.ReadSeeker, size int64, ifMatch string) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	dst := s.path(key)
	if err := s.mkdirs(filepath.Dir(dst)); err != nil {
		return ObjectInfo{}, err
	}
	s.condMu.Lock()
	defer s.condMu.Unlock()
	if s.fs == vfs.Default {
		lf, err := os.OpenFile(filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return ObjectInfo{}, fmt.Errorf("tier3: lock %s: %w", key, err)
		}
		defer lf.Close() // releases the lock
		if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
			return ObjectInfo{}, fmt.Errorf("tier3: lock %s: %w", key, err)
		}
	}
	cur, err := s.Head(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		if ifMatch != "" {
			return ObjectInfo{}, fmt.Errorf("%w: %s is gone", ErrPrecondition, key)
		}
	case err != nil:
		return ObjectInfo{}, err
	case cur.ETag != ifMatch:
		return ObjectInfo{}, fmt.Errorf("%w: %s", ErrPrecondition, key)
	}
	return s.Put(ctx, key, body, size)
}

func (s *FileStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return ObjectInfo{}, err
	}
	sum, err := hashBody(body, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	if err := s.mkdirs(dir); err != nil {
		return ObjectInfo{}, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(dst)+fileTmpMarker+hex.EncodeToString(rnd[:]))
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("tier3: put %s: %w", key, err)
	}
	fail := func(err error) (ObjectInfo, error) {
		f.Close()
		s.fs.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("tier3: put %s: %w", key, err)
	}
	// Written behind, so copying a large segment into the archive does
	// not stall the write-ahead log's fsyncs behind its dirty pages.
	n, err := io.Copy(vfs.WriteBehind(f, f, 0), &ctxReader{ctx: ctx, r: body})
	if err != nil {
		return fail(err)
	}
	if n != size {
		return fail(fmt.Errorf("body shrank to %d bytes from %d", n, size))
	}
	raw, _ := hex.DecodeString(sum)
	if _, err := f.Write(append(raw, fileTrailerMagic...)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("tier3: put %s: %w", key, err)
	}
	if err := s.fs.Rename(tmp, dst); err != nil {
		s.fs.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("tier3: put %s: %w", key, err)
	}
	if err := s.fs.SyncDir(dir); err != nil {
		return ObjectInfo{}, fmt.Errorf("tier3: put %s: sync dir: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: size, SHA256: sum, ETag: sum}, nil
}

// mkdirs creates dir and syncs each parent whose entry it added, so a new
// directory survives a crash as well as the file renamed into it.
func (s *FileStore) mkdirs(dir string) error {
	var created []string
	for d := dir; len(d) > len(s.root); d = filepath.Dir(d) {
		if _, err := s.fs.ReadDir(d); err == nil {
			break
		}
		created = append(created, d)
	}
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tier3: mkdir %s: %w", dir, err)
	}
	for _, d := range created {
		if err := s.fs.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("tier3: sync %s: %w", filepath.Dir(d), err)
		}
	}
	return nil
}

// open opens key and reads its trailer.
func (s *FileStore) open(key string) (vfs.File, ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	f, err := s.fs.OpenFile(s.path(key), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("tier3: open %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("tier3: stat %s: %w", key, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	size := fi.Size() - int64(fileTrailerLen)
	var tr [fileTrailerLen]byte
	if size < 0 {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s has no checksum trailer", ErrChecksum, key)
	}
	if _, err := f.ReadAt(tr[:], size); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("tier3: read %s: %w", key, err)
	}
	if string(tr[32:]) != fileTrailerMagic {
		f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s has no checksum trailer", ErrChecksum, key)
	}
	sum := hex.EncodeToString(tr[:32])
	return f, ObjectInfo{Key: key, Size: size, SHA256: sum, ETag: sum}, nil
}

func (s *FileStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	f, info, err := s.open(key)
	if err != nil {
		return nil, info, err
	}
	return newVerifyingReader(readCloser{io.NewSectionReader(f, 0, info.Size), f}, info), info, nil
}

func (s *FileStore) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	f, info, err := s.open(key)
	if err != nil {
		return nil, err
	}
	if off < 0 || length < 0 || off > info.Size {
		f.Close()
		return nil, fmt.Errorf("tier3: range %d+%d of %s (%d bytes) is invalid", off, length, key, info.Size)
	}
	return readCloser{io.NewSectionReader(f, off, min(length, info.Size-off)), f}, nil
}

func (s *FileStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	f, info, err := s.open(key)
	if err != nil {
		return info, err
	}
	f.Close()
	return info, nil
}

func (s *FileStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	// Walk only the directory the prefix names; its last element filters.
	dir := path.Dir(prefix)
	if strings.HasSuffix(prefix, "/") {
		dir = strings.TrimSuffix(prefix, "/")
	}
	if dir == "." {
		dir = ""
	}
	var out []ObjectInfo
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, err := s.fs.ReadDir(filepath.Join(s.root, filepath.FromSlash(rel)))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tier3: list %s: %w", prefix, err)
		}
		for _, e := range ents {
			key := e.Name()
			if rel != "" {
				key = rel + "/" + e.Name()
			}
			if e.IsDir() {
				if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
					if err := walk(key); err != nil {
						return err
					}
				}
				continue
			}
			if !strings.HasPrefix(key, prefix) || strings.Contains(e.Name(), fileTmpMarker) || isLockFile(e.Name()) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out = append(out, ObjectInfo{Key: key, Size: max(fi.Size()-int64(fileTrailerLen), 0)})
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *FileStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	p := s.path(key)
	if err := s.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tier3: delete %s: %w", key, err)
	}
	if err := s.fs.SyncDir(filepath.Dir(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tier3: delete %s: sync dir: %w", key, err)
	}
	return nil
}

// isLockFile reports a PutIf lock file, which is not an object.
func isLockFile(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".lock")
}

type readCloser struct {
	io.Reader
	io.Closer
}

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// CorruptFile flips one content byte of a FileStore object in place,
// keeping its trailer: a test's way to simulate bit rot.
func (s *FileStore) CorruptFile(key string, at int64) error {
	f, err := os.OpenFile(s.path(key), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		return err
	}
	_, err = f.WriteAt(bytes.Repeat([]byte{b[0] ^ 0xff}, 1), at)
	return err
}
