// Package vfs is the filesystem seam under tier1 and tier2. Production code
// uses Default (the OS); tests use MemFS to drop unsynced data on a simulated
// crash and ErrorFS to inject write and sync failures.
package vfs

import (
	"io"
	"os"
)

// File is the subset of *os.File the logs use.
type File interface {
	io.Writer
	io.ReaderAt
	io.Closer
	// Sync makes every byte written so far durable (fdatasync semantics).
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// FS is the subset of the os package the logs use.
type FS interface {
	// OpenFile opens name with os.OpenFile semantics (O_CREATE, O_APPEND,
	// O_RDWR, O_TRUNC, O_EXCL are honoured).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	// Rename atomically replaces newpath with oldpath. Durable once the
	// parent directory is synced.
	Rename(oldpath, newpath string) error
	MkdirAll(path string, perm os.FileMode) error
	ReadDir(name string) ([]os.DirEntry, error)
	// SyncDir makes creations, renames and removals in dir durable.
	SyncDir(dir string) error
}
