package vfs

import (
	"os"
)

// Default is the operating system's filesystem.
var Default FS = osFS{}

type osFS struct{}

var _ FS = osFS{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) Rename(oldpath, newpath string) error       { return os.Rename(oldpath, newpath) }
func (osFS) MkdirAll(p string, perm os.FileMode) error  { return os.MkdirAll(p, perm) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}

// osFile overrides Sync with fdatasync where the platform has it: the logs
// only need the data and the size that makes it readable, not timestamps.
type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }
