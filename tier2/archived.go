package tier2

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
)

// Reading a segment's archived copy (Tier 3). An archived segment is the
// same three files as a local one, in object storage: Tier 3 fetches the
// .index and .timeindex whole, parses them with ParseIndex, and reads the
// .log through an io.ReaderAt that issues ranged GETs. The lookups below
// are the local segment's, over that ReaderAt.

// Index is a segment's verified offset and time index. An Index parsed
// from the offset index alone (ParseOffsetIndex) serves every lookup; its
// time index (WithTimeIndex) only narrows timestamp searches.
type Index struct {
	Base, Next, Size int64
	MaxTs            int64 // -1 when empty
	MaxTsPos         int64 // position of the first batch holding MaxTs
	idx              []offEntry
	tidx             []timeEntry
	hasTime          bool
}

// ParseIndex verifies the bytes of a segment's .index and .timeindex
// (headers, kinds, entry CRCs, agreement with each other) and returns the
// index they describe.
func ParseIndex(index, timeindex []byte) (*Index, error) {
	x, err := ParseOffsetIndex(index)
	if err != nil {
		return nil, err
	}
	return x.WithTimeIndex(timeindex)
}

// ParseOffsetIndex verifies the bytes of a segment's .index (header, kind,
// entry CRC) and returns the index they describe, without a time index.
func ParseOffsetIndex(index []byte) (*Index, error) {
	oh, err := parseIndexHeader(index)
	if err != nil {
		return nil, err
	}
	oe := index[idxHeaderSize:]
	switch {
	case oh.kind != kindOffset:
		return nil, fmt.Errorf("%w: offset index of kind %d", ErrCorrupt, oh.kind)
	case int64(len(oe)) != int64(oh.count)*offEntrySize:
		return nil, fmt.Errorf("%w: offset index entry count does not match its size", ErrCorrupt)
	case crc32Sum(oe) != oh.ecrc:
		return nil, fmt.Errorf("%w: offset index entries crc mismatch", ErrCorrupt)
	}
	return &Index{Base: oh.base, Next: oh.next, Size: oh.logSize, MaxTs: oh.maxTs, MaxTsPos: oh.maxTsPos,
		idx: parseOffEntries(oe)}, nil
}

// WithTimeIndex verifies the bytes of the segment's .timeindex (header,
// kind, entry CRC, agreement with x) and returns a copy of x that uses it.
func (x *Index) WithTimeIndex(timeindex []byte) (*Index, error) {
	th, err := parseIndexHeader(timeindex)
	if err != nil {
		return nil, err
	}
	te := timeindex[idxHeaderSize:]
	switch {
	case th.kind != kindTime:
		return nil, fmt.Errorf("%w: time index of kind %d", ErrCorrupt, th.kind)
	case th.base != x.Base || th.next != x.Next || th.logSize != x.Size:
		return nil, fmt.Errorf("%w: .index and .timeindex disagree", ErrCorrupt)
	case int64(len(te)) != int64(th.count)*timeEntrySize:
		return nil, fmt.Errorf("%w: time index entry count does not match its size", ErrCorrupt)
	case crc32Sum(te) != th.ecrc:
		return nil, fmt.Errorf("%w: time index entries crc mismatch", ErrCorrupt)
	}
	y := *x
	y.tidx, y.hasTime = parseTimeEntries(te), true
	return &y, nil
}

// HasTimeIndex reports whether x has its time index.
func (x *Index) HasTimeIndex() bool { return x.hasTime }

// IndexBytes returns the bytes of the segment's .index and .timeindex,
// verified against the segment; an index that fails is rebuilt from the
// log (as on first use) and its rebuilt bytes returned.
func (s *Segment) IndexBytes() (index, timeindex []byte, err error) {
	if d := s.damage.Load(); d != nil {
		return nil, nil, d // a damaged segment is never archived
	}
	index, err1 := readSmallFile(s.fs, s.path(indexSuffix), 1<<31)
	timeindex, err2 := readSmallFile(s.fs, s.path(timeSuffix), 1<<31)
	if err1 == nil && err2 == nil {
		if x, err := ParseIndex(index, timeindex); err == nil && x.Base == s.Base && x.Size == s.Size && x.Next == s.Next {
			return index, timeindex, nil
		}
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return nil, nil, err
	}
	defer s.files.release(s)
	ix := newIndexer(s.Base)
	if err := walk(f, 0, s.Size, func(p int64, h batchInfo) bool { ix.add(p, h); return true }); err != nil {
		return nil, nil, err
	}
	oe := appendOffEntries(nil, ix.idx)
	te := appendTimeEntries(nil, ix.tidx)
	oh := ix.header(kindOffset, s.Next, s.Size, oe)
	th := ix.header(kindTime, s.Next, s.Size, te)
	return append(oh.append(nil), oe...), append(th.append(nil), te...), nil
}

// Locate returns the position of the first batch whose last offset is >=
// offset, or Size if none is.
func (x *Index) Locate(r io.ReaderAt, offset int64) (int64, error) {
	if offset <= x.Base || x.Size == 0 {
		return 0, nil
	}
	rel := offset - x.Base
	i := sort.Search(len(x.idx), func(i int) bool { return int64(x.idx[i].rel) > rel }) - 1
	pos := int64(0)
	if i >= 0 {
		pos = int64(x.idx[i].pos)
	}
	found := x.Size
	err := walk(r, pos, x.Size, func(p int64, h batchInfo) bool {
		if h.last() >= offset {
			found = p
			return false
		}
		return true
	})
	return found, err
}

// ReadFrom is Segment.ReadFrom over r, and also verifies the CRC of every
// batch it returns: an archived copy's bytes were not checked on the way
// in as a local segment's were.
func (x *Index) ReadFrom(r io.ReaderAt, offset int64, limit int, dst []byte, force bool) (_ []byte, atEnd bool, err error) {
	pos, err := x.Locate(r, offset)
	if err != nil || pos >= x.Size {
		return dst, pos >= x.Size, err
	}
	dst, end, err := readRange(r, pos, x.Size, limit, dst, force, "archived segment") // checks every batch's CRC
	if err != nil {
		return dst, false, err
	}
	return dst, pos+end >= x.Size, nil
}

// SliceReader gives read-only views of a segment copy's bytes: Slice
// returns up to n bytes at off (fewer where the copy is held in pieces,
// at least one unless off is at the end). The views must never change:
// callers keep them past the call, until a response is written.
type SliceReader interface {
	io.ReaderAt
	Slice(off, n int64) ([]byte, error)
}

// ReadVec is ReadFrom without copying: it appends to dst views of the
// batches (from r.Slice, coalesced where contiguous) and returns how many
// bytes they hold and the offset after the last batch. Every batch's
// header is checked; its CRC too, across its pieces, when checkCRC is set
// (the caller may know the bytes equal batches checked before: see
// BatchVerifier).
func (x *Index) ReadVec(r SliceReader, offset int64, limit int, dst [][]byte, force, checkCRC bool) (_ [][]byte, n int, next int64, atEnd bool, err error) {
	pos, err := x.Locate(r, offset)
	if err != nil || pos >= x.Size {
		return dst, 0, 0, pos >= x.Size, err
	}
	start := len(dst)
	var hdr [batchHeaderLen]byte
	for pos < x.Size {
		if pos+batchHeaderLen > x.Size {
			return dst[:start], 0, 0, false, fmt.Errorf("%w: truncated batch header in archived segment at %d", ErrCorrupt, pos)
		}
		if err := readFull(r, hdr[:], pos); err != nil {
			return dst[:start], 0, 0, false, err
		}
		base, l, ok := parseBatchPrefix(hdr[:])
		if !ok || pos+l > x.Size {
			return dst[:start], 0, 0, false, fmt.Errorf("%w: bad batch header in archived segment at %d", ErrCorrupt, pos)
		}
		if int64(n)+l > int64(limit) && (n > 0 || !force) {
			break
		}
		if hdr[16] != 2 {
			return dst[:start], 0, 0, false, fmt.Errorf("%w: batch magic %d in archived segment at %d", ErrCorrupt, hdr[16], pos)
		}
		crc := uint32(0)
		for off := pos; off < pos+l; {
			b, err := r.Slice(off, pos+l-off)
			if err != nil {
				return dst[:start], 0, 0, false, err
			}
			if len(b) == 0 {
				return dst[:start], 0, 0, false, fmt.Errorf("tier2: archived segment ends at %d, inside a batch", off)
			}
			if checkCRC {
				skip := max(0, min(int64(len(b)), pos+bOffAttributes-off)) // bytes before the CRC'd range
				crc = crc32.Update(crc, crc32c, b[skip:])
			}
			dst = appendView(dst, start, b)
			off += int64(len(b))
		}
		if checkCRC && binary.BigEndian.Uint32(hdr[bOffCRC:]) != crc {
			return dst[:start], 0, 0, false, fmt.Errorf("%w: batch crc mismatch at offset %d in archived segment", ErrCorrupt, base)
		}
		n += int(l)
		pos += l
		next = base + int64(int32(binary.BigEndian.Uint32(hdr[bOffLastOffsetDelta:]))) + 1
	}
	return dst, n, next, pos >= x.Size, nil
}

// appendView appends b to dst, extending the last view when b follows it
// in the same buffer (batches of one chunk); views before mark (the
// caller's) are never touched.
func appendView(dst [][]byte, mark int, b []byte) [][]byte {
	if k := len(dst) - 1; k >= mark && k >= 0 {
		last := dst[k]
		if len(last) > 0 && cap(last) > len(last) && len(b) > 0 && &last[:len(last)+1][len(last)] == &b[0] {
			dst[k] = last[:len(last)+len(b)]
			return dst
		}
	}
	return append(dst, b)
}

// readRange appends the whole batches from pos up to limit bytes (the
// first one whole even if larger when force is set), each CRC-checked, and
// returns how many bytes it appended.
func readRange(f io.ReaderAt, pos, size int64, limit int, dst []byte, force bool, name string) ([]byte, int64, error) {
	n := min(int64(max(limit, batchHeaderLen)), size-pos)
	start := len(dst)
	dst = slices.Grow(dst, int(n))[:start+int(n)]
	if err := readFull(f, dst[start:], pos); err != nil {
		return dst[:start], 0, err
	}
	buf := dst[start:]
	end := int64(0)
	for end+batchPrefix <= int64(len(buf)) {
		_, l, ok := parseBatchPrefix(buf[end:])
		if !ok {
			return dst[:start], 0, fmt.Errorf("%w: bad batch header in %s at %d", ErrCorrupt, name, pos+end)
		}
		if end+l > int64(len(buf)) {
			if end == 0 && force {
				// The first batch is larger than limit: return it whole.
				if pos+l > size {
					return dst[:start], 0, fmt.Errorf("%w: batch at %d in %s runs past the end", ErrCorrupt, pos, name)
				}
				dst = slices.Grow(dst[:start+len(buf)], int(l)-len(buf))[:start+int(l)]
				if err := readFull(f, dst[start+len(buf):], pos+int64(len(buf))); err != nil {
					return dst[:start], 0, err
				}
				end = l
			}
			break
		}
		end += l
	}
	// Never serve bytes that fail their check: one CRC32C pass over bytes
	// already in memory, far cheaper than the read.
	for b := dst[start : start+int(end)]; len(b) > 0; {
		_, l, _ := parseBatchPrefix(b)
		if _, err := checkBatch(b[:l]); err != nil {
			return dst[:start], 0, fmt.Errorf("%w in %s", err, name)
		}
		b = b[l:]
	}
	return dst[:start+int(end)], end, nil
}

// BatchAt returns the whole batch at pos, verified.
func (x *Index) BatchAt(r io.ReaderAt, pos int64, dst []byte) ([]byte, error) {
	return readBatch(r, pos, x.Size, dst)
}

// FindTimestampFrom is Segment.FindTimestampFrom over r.
func (x *Index) FindTimestampFrom(r io.ReaderAt, ts, from int64) (int64, bool, error) {
	if x.MaxTs < ts || x.Size == 0 || x.Next <= from {
		return 0, false, nil
	}
	pos, err := x.Locate(r, from)
	if err != nil {
		return 0, false, err
	}
	i := sort.Search(len(x.tidx), func(i int) bool { return x.tidx[i].ts >= ts }) - 1
	if i >= 0 {
		pos = max(pos, int64(x.tidx[i].pos))
	}
	found := int64(-1)
	err = walk(r, pos, x.Size, func(p int64, h batchInfo) bool {
		if h.maxTs >= ts && h.last() >= from {
			found = p
			return false
		}
		return true
	})
	return found, found >= 0, err
}

// Near returns the position of the sparse index entry at or before offset:
// where a lookup of offset starts walking.
func (x *Index) Near(offset int64) int64 {
	i := sort.Search(len(x.idx), func(i int) bool { return int64(x.idx[i].rel) > offset-x.Base }) - 1
	if i < 0 {
		return 0
	}
	return int64(x.idx[i].pos)
}

// BatchVerifier checks every batch of a segment's bytes written to it in
// pieces of any size (length, magic and CRC), as they stream past. Tier 3
// runs it over a segment while uploading it, so that the archive holds
// only verified batches; reads of the archive then check each chunk's
// CRC-32C, which covers every byte served.
type BatchVerifier struct {
	hdr  [batchHeaderLen]byte
	nh   int    // header bytes buffered
	left int64  // bytes of the current batch after its header
	crc  uint32 // running CRC of the current batch
	pos  int64  // where the current batch starts
	err  error
}

// Write checks the bytes in p; the first failure is sticky.
func (v *BatchVerifier) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && v.err == nil {
		if v.nh < batchHeaderLen {
			k := copy(v.hdr[v.nh:], p)
			v.nh += k
			p = p[k:]
			if v.nh < batchHeaderLen {
				break
			}
			_, l, ok := parseBatchPrefix(v.hdr[:])
			switch {
			case !ok:
				v.err = fmt.Errorf("%w: bad batch header at %d", ErrCorrupt, v.pos)
			case v.hdr[16] != 2:
				v.err = fmt.Errorf("%w: batch magic %d at %d", ErrCorrupt, v.hdr[16], v.pos)
			}
			v.crc = crc32.Update(0, crc32c, v.hdr[bOffAttributes:])
			v.left = l - batchHeaderLen
		}
		k := min(int64(len(p)), v.left)
		v.crc = crc32.Update(v.crc, crc32c, p[:k])
		v.left -= k
		p = p[k:]
		if v.left == 0 && v.err == nil {
			v.err = v.endBatch()
		}
	}
	return n, v.err
}

func (v *BatchVerifier) endBatch() error {
	if binary.BigEndian.Uint32(v.hdr[bOffCRC:]) != v.crc {
		return fmt.Errorf("%w: batch crc mismatch at %d (offset %d)", ErrCorrupt, v.pos, int64(binary.BigEndian.Uint64(v.hdr[bOffBase:])))
	}
	v.pos += int64(int32(binary.BigEndian.Uint32(v.hdr[bOffLength:]))) + batchPrefix
	v.nh = 0
	return nil
}

// Close reports the first failure, or a stream that ended inside a batch.
func (v *BatchVerifier) Close() error {
	if v.err == nil && v.nh > 0 {
		v.err = fmt.Errorf("%w: segment ends inside the batch at %d", ErrCorrupt, v.pos)
	}
	return v.err
}
