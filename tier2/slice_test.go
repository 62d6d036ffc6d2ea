package tier2

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
)

// A tail cut at a batch boundary is a segment of its own: its bytes are
// the segment's from that batch on, its indexes parse, describe it and
// find every offset in it; a cut inside a batch is refused.
func TestTailFrom(t *testing.T) {
	mem := vfs.NewMemFS()
	files := NewFileCache(4)
	s := writeSegment(t, mem, "/seg/p", files, 100, 10, 200, 64<<10) // batches of 10 offsets from 100
	all, _, err := s.ReadFrom(s.Base, int(s.Size), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	from := s.Base + 10*int64((s.Next-s.Base)/20) // a batch boundary near the middle
	tail, err := s.TailFrom(from)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Release()
	if tail.Base != from || tail.Next != s.Next {
		t.Fatalf("tail covers [%d, %d), want [%d, %d)", tail.Base, tail.Next, from, s.Next)
	}
	got := make([]byte, tail.Size)
	if _, err := tail.Log.ReadAt(got, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all[int64(len(all))-tail.Size:]) {
		t.Fatal("the tail's bytes are not the end of the segment's")
	}
	x, err := ParseIndex(tail.Index, tail.TimeIndex)
	if err != nil {
		t.Fatalf("tail index: %v", err)
	}
	if x.Base != from || x.Next != s.Next || x.Size != tail.Size || x.MaxTs != tail.MaxTs {
		t.Fatalf("tail index describes [%d, %d) %d bytes max ts %d", x.Base, x.Next, x.Size, x.MaxTs)
	}
	for off := from; off < s.Next; off += 7 {
		pos, err := x.Locate(tail.Log, off)
		if err != nil {
			t.Fatal(err)
		}
		b, err := x.BatchAt(tail.Log, pos, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := headerInfo(b); h.base > off || h.last() < off {
			t.Fatalf("offset %d located in the batch [%d, %d]", off, h.base, h.last())
		}
	}
	if _, err := s.TailFrom(from + 3); !errors.Is(err, ErrNotBoundary) {
		t.Fatalf("a cut inside a batch: %v, want ErrNotBoundary", err)
	}
	for _, bad := range []int64{s.Base, s.Next, s.Next + 5} {
		if _, err := s.TailFrom(bad); err == nil {
			t.Fatalf("TailFrom(%d) of [%d, %d) succeeded", bad, s.Base, s.Next)
		}
	}
}
