package tier1

import (
	"errors"
	"fmt"
	"io"
)

// scanWindow is how much of a segment the scanner reads at once.
const scanWindow = 1 << 20

// badRange is a region of a segment with no frame that verifies.
type badRange struct {
	off, end int64
	reason   string // why the first frame of the range failed
}

// segmentScan is what scanSegment found in one segment file.
type segmentScan struct {
	// headerReason is set when the segment header cannot be trusted; then
	// nothing else was scanned.
	headerReason string
	salt         uint64
	// corrupt lists bad ranges followed by a valid frame, in file order.
	corrupt []badRange
	// validEnd is where the frame after the last valid one starts (its
	// padding included, so it may exceed the file size by up to 7 bytes).
	// Bytes in [validEnd, size) hold no valid frame.
	validEnd int64
	// tailReason says why the bytes after validEnd were not a frame.
	tailReason string
	// checksummed counts the bytes whose checksum was computed: the work
	// of the scan, which must stay linear in the segment size.
	checksummed int64
}

// entryFunc receives each verified entry. Its bytes are only valid during
// the call.
type entryFunc func(e Entry) error

// scanSegment reads a segment file of the given size and calls fn for every
// verified entry in order. It never trusts a length it has not bounded by
// size, so arbitrary bytes cannot make it panic or allocate more than size.
// The error is an I/O error, ErrUnsupported, or fn's error.
func scanSegment(r io.ReaderAt, size int64, seq uint64, fn entryFunc) (segmentScan, error) {
	var res segmentScan
	w := window{r: r, size: size}
	h, err := w.get(0, int(min(size, segHeaderSize)))
	if err != nil {
		return res, err
	}
	salt, reason, err := decodeSegHeader(h, seq)
	if err != nil || reason != "" {
		res.headerReason = reason
		return res, err
	}
	res.salt = salt

	off := int64(segHeaderSize)
	res.validEnd = off
	bad := badRange{off: -1}
	for off+frameHeaderSize <= size {
		frame, reason, err := w.frame(salt, off, &res.checksummed)
		if err != nil {
			return res, err
		}
		if reason != "" {
			if bad.off < 0 {
				bad = badRange{off: off, reason: reason}
			}
			off += frameAlign
			continue
		}
		if bad.off >= 0 {
			bad.end = off
			res.corrupt = append(res.corrupt, bad)
			bad.off = -1
		}
		if err := fn(decodeEntry(frame, seq, off)); err != nil {
			return res, err
		}
		off += alignUp(int64(len(frame)))
		res.validEnd = off
	}
	switch {
	case bad.off >= 0:
		res.tailReason = bad.reason
	case res.validEnd < size:
		res.tailReason = "partial frame header"
	}
	return res, nil
}

// window serves byte ranges of a file from one reusable buffer.
type window struct {
	r    io.ReaderAt
	size int64
	off  int64 // file offset of buf[0]
	buf  []byte
}

// get returns the bytes [off, off+n), which must lie inside the file. The
// slice is valid until the next call.
func (w *window) get(off int64, n int) ([]byte, error) {
	if off >= w.off && off+int64(n) <= w.off+int64(len(w.buf)) {
		return w.buf[off-w.off:][:n], nil
	}
	want := int(min(max(int64(n), scanWindow), w.size-off))
	if cap(w.buf) < want {
		w.buf = make([]byte, want)
	}
	w.buf = w.buf[:want]
	w.off = off
	got, err := w.r.ReadAt(w.buf, off)
	if got < want {
		w.buf = w.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read at %d: %w", off, err)
	}
	return w.buf[:n], nil
}

// frame returns the verified unpadded frame at off, or why there is none.
// It adds the bytes it checksums to *work.
func (w *window) frame(salt uint64, off int64, work *int64) ([]byte, string, error) {
	h, err := w.get(off, frameHeaderSize)
	if err != nil {
		return nil, "", err
	}
	n, reason := frameLen(h, salt, w.size-off)
	if reason != "" {
		return nil, reason, nil
	}
	f, err := w.get(off, int(n))
	if err != nil {
		return nil, "", err
	}
	*work += n
	reason, err = checkFrame(salt, off, f)
	if err != nil || reason != "" {
		return nil, reason, err
	}
	return f, "", nil
}
