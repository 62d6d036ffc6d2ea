package indexer

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// An index object unpacks only into files below its directory.
func TestUnpackRefusesEscapes(t *testing.T) {
	for _, name := range []string{"../evil", "/abs", "a/../../b"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		if err := unpack(&buf, t.TempDir()); err == nil {
			t.Errorf("%q was unpacked", name)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "link", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink})
	tw.Close()
	if err := unpack(&buf, t.TempDir()); err == nil {
		t.Errorf("a symlink was unpacked")
	}
}

func FuzzUnpack(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("hello"), 0o644)
	var good bytes.Buffer
	packDir(dir, &good)
	f.Add(good.Bytes())
	f.Add([]byte{})
	f.Add(append(append([]byte(nil), good.Bytes()[:600]...), 0xff, 0xff))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = unpack(bytes.NewReader(b), t.TempDir())
	})
}
