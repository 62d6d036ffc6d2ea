package vfs

import (
	"os"
	"sync"
)

// Op names an FS or File operation for ErrorFS hooks.
type Op uint8

const (
	OpOpen Op = iota
	OpRemove
	OpRename
	OpMkdirAll
	OpReadDir
	OpSyncDir
	OpWrite
	OpRead
	OpSync
	OpTruncate
	OpStat
	OpClose
)

var opNames = [...]string{"open", "remove", "rename", "mkdirall", "readdir", "syncdir",
	"write", "read", "sync", "truncate", "stat", "close"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op?"
}

// Hook is called before an operation on path. It may block (to model a slow
// disk or hold a commit in flight). A non-nil error is returned in place of
// doing the operation.
type Hook func(op Op, path string) error

// ErrorFS wraps an FS and injects failures through a Hook, a one-shot sync
// failure, and a write budget that models a disk filling up.
type ErrorFS struct {
	fs FS

	mu           sync.Mutex // guards the following
	hook         Hook
	failNextSync error
	writeErr     error // non-nil once a budget is set
	writeBudget  int64 // bytes that may still be written when writeErr != nil
}

var _ FS = (*ErrorFS)(nil)

// NewErrorFS wraps fs; it injects nothing until told to.
func NewErrorFS(fs FS) *ErrorFS { return &ErrorFS{fs: fs} }

// SetHook installs fn (nil removes it). fn runs outside ErrorFS's lock, on
// the goroutine doing the operation.
func (e *ErrorFS) SetHook(fn Hook) {
	e.mu.Lock()
	e.hook = fn
	e.mu.Unlock()
}

// FailNextSync makes the next File.Sync return err without syncing.
func (e *ErrorFS) FailNextSync(err error) {
	e.mu.Lock()
	e.failNextSync = err
	e.mu.Unlock()
}

// FailWritesAfter lets n more bytes be written, across all files, and fails
// every write after that with err. The write that crosses the limit writes
// its first bytes and then fails, the way write(2) reports ENOSPC. A nil err
// removes the limit.
func (e *ErrorFS) FailWritesAfter(n int64, err error) {
	e.mu.Lock()
	e.writeErr, e.writeBudget = err, n
	e.mu.Unlock()
}

func (e *ErrorFS) before(op Op, path string) error {
	e.mu.Lock()
	hook := e.hook
	var err error
	if op == OpSync && e.failNextSync != nil {
		err, e.failNextSync = e.failNextSync, nil
	}
	e.mu.Unlock()
	if hook != nil {
		if herr := hook(op, path); herr != nil && err == nil {
			err = herr
		}
	}
	return err
}

func (e *ErrorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := e.before(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := e.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, f: f, name: name}, nil
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.before(OpRemove, name); err != nil {
		return err
	}
	return e.fs.Remove(name)
}

func (e *ErrorFS) Rename(oldpath, newpath string) error {
	if err := e.before(OpRename, oldpath); err != nil {
		return err
	}
	return e.fs.Rename(oldpath, newpath)
}

func (e *ErrorFS) MkdirAll(path string, perm os.FileMode) error {
	if err := e.before(OpMkdirAll, path); err != nil {
		return err
	}
	return e.fs.MkdirAll(path, perm)
}

func (e *ErrorFS) ReadDir(name string) ([]os.DirEntry, error) {
	if err := e.before(OpReadDir, name); err != nil {
		return nil, err
	}
	return e.fs.ReadDir(name)
}

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.before(OpSyncDir, dir); err != nil {
		return err
	}
	return e.fs.SyncDir(dir)
}

type errorFile struct {
	fs   *ErrorFS
	f    File
	name string
}

var _ File = (*errorFile)(nil)

func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.fs.before(OpWrite, f.name); err != nil {
		return 0, err
	}
	e := f.fs
	e.mu.Lock()
	allowed, werr := len(p), e.writeErr
	if werr != nil {
		allowed = int(min(int64(len(p)), max(e.writeBudget, 0)))
		e.writeBudget -= int64(allowed)
	}
	e.mu.Unlock()
	n, err := f.f.Write(p[:allowed])
	if err == nil && allowed < len(p) {
		err = werr
	}
	return n, err
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.before(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *errorFile) Sync() error {
	if err := f.fs.before(OpSync, f.name); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.fs.before(OpTruncate, f.name); err != nil {
		return err
	}
	return f.f.Truncate(size)
}

func (f *errorFile) Stat() (os.FileInfo, error) {
	if err := f.fs.before(OpStat, f.name); err != nil {
		return nil, err
	}
	return f.f.Stat()
}

func (f *errorFile) Close() error {
	if err := f.fs.before(OpClose, f.name); err != nil {
		f.f.Close()
		return err
	}
	return f.f.Close()
}
