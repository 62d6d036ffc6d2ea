package vfs

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// recordingFile is an in-memory file that records the writeback asked of
// it.
type recordingFile struct {
	File
	calls [][3]int64
}

func (f *recordingFile) writeback(prevOff, off, n int64) error {
	f.calls = append(f.calls, [3]int64{prevOff, off, n})
	return nil
}

// Every WriteBehindBytes written, writeback starts for the chunk just
// written after the chunk before it is waited for; nothing is lost or
// reordered on the way.
func TestWriteBehindChunks(t *testing.T) {
	mem := NewMemFS()
	mf, err := mem.OpenFile("f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f := &recordingFile{File: mf}
	w := WriteBehind(f, f, 100)
	chunk := bytes.Repeat([]byte{7}, 1<<20)
	for range 25 {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	const m = WriteBehindBytes
	want := [][3]int64{{100, 100, m}, {100, 100 + m, m}, {100 + m, 100 + 2*m, m}}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("writeback calls %v; want %v", f.calls, want)
	}
	if st, _ := mf.Stat(); st.Size() != 25<<20 {
		t.Fatalf("file holds %d bytes; wrote %d", st.Size(), 25<<20)
	}
	if got := WriteBehind(mf, mf, 0); got != mf {
		t.Fatal("a file that cannot start writeback early is not written through unchanged")
	}
}

// On the operating system's files the writeback runs (sync_file_range on
// Linux) without changing what the file holds.
func TestWriteBehindOSFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	f, err := Default.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []byte
	w := WriteBehind(f, f, 0)
	for i := range 20 {
		chunk := bytes.Repeat([]byte{byte(i)}, 1<<20+i)
		want = append(want, chunk...)
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if wb, ok := w.(*writeBehind); ok && wb.failed {
		t.Fatal("writeback failed on the operating system's file")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file differs from what was written (%d bytes, want %d): %v", len(got), len(want), err)
	}
}
