package tier2

import (
	"fmt"
	"io"
)

// Tail is the part of a sealed segment from a batch boundary on, described
// as a segment of its own: what Tier 3 uploads when the archive already
// holds the segment's first offsets (another replica, sealing elsewhere,
// archived them), so the archive stays one log of contiguous,
// non-overlapping segments.
type Tail struct {
	Base, Next, Size int64
	MaxTs, MaxTsPos  int64 // MaxTsPos relative to the tail; MaxTs -1 when empty
	// Log reads the tail's Size bytes: the segment's .log from its
	// position on. It stays valid until Release.
	Log io.ReaderAt
	// Index and TimeIndex are the tail's own index files, in the same
	// format as a sealed segment's (doc.go), with Base as their base.
	Index, TimeIndex []byte

	release func()
}

// Release lets the segment's file go.
func (t *Tail) Release() {
	if t.release != nil {
		t.release()
		t.release = nil
	}
}

// ErrNotBoundary is returned by TailFrom when a batch of the segment holds
// offsets on both sides of the cut: this log and the one the cut was taken
// from do not share batch boundaries there.
var ErrNotBoundary = fmt.Errorf("tier2: offset is not a batch boundary")

// TailFrom returns the segment's records from offset from (Base < from <
// Next) on, as a segment starting at from. Every batch of the tail is read
// and CRC-checked to build its indexes. The batch holding from-1 must end
// there: a batch across from gets ErrNotBoundary.
func (s *Segment) TailFrom(from int64) (*Tail, error) {
	if from <= s.Base || from >= s.Next {
		return nil, fmt.Errorf("tier2: tail from %d of the segment [%d, %d)", from, s.Base, s.Next)
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.files.release(s)
		}
	}()
	pos, err := s.locate(f, from)
	if err != nil {
		return nil, err
	}
	if pos < s.Size {
		var pre [batchHeaderLen]byte
		if err := readFull(f, pre[:], pos); err != nil {
			return nil, err
		}
		if h := headerInfo(pre[:]); h.base < from {
			return nil, fmt.Errorf("%w: the batch at %d holds offsets %d to %d, across %d", ErrNotBoundary, pos, h.base, h.last(), from)
		}
	}
	size := s.Size - pos
	ix := newIndexer(from)
	var buf []byte
	for p := int64(0); p < size; {
		if buf, err = readBatch(f, pos+p, s.Size, buf[:0]); err != nil {
			return nil, err
		}
		h := headerInfo(buf)
		if h.base <= ix.lastOffset {
			return nil, fmt.Errorf("%w: batch offset %d after %d", ErrCorrupt, h.base, ix.lastOffset)
		}
		ix.add(p, h)
		p += h.length
	}
	oe := appendOffEntries(nil, ix.idx)
	te := appendTimeEntries(nil, ix.tidx)
	oh := ix.header(kindOffset, s.Next, size, oe)
	th := ix.header(kindTime, s.Next, size, te)
	t := &Tail{
		Base: from, Next: s.Next, Size: size, MaxTs: oh.maxTs, MaxTsPos: ix.maxTsPos,
		Log:   io.NewSectionReader(f, pos, size),
		Index: append(oh.append(nil), oe...), TimeIndex: append(th.append(nil), te...),
		release: func() { s.files.release(s) },
	}
	ok = true
	return t, nil
}
