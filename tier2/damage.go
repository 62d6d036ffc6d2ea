package tier2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"
)

// Damaged segments: see doc.go, Startup validation and Damage.

// DamageError describes a damaged segment: where its log stops being
// verifiable. It wraps ErrCorrupt.
type DamageError struct {
	Path string // the .log
	Base int64
	Next int64
	// Pos is the first byte that failed a check: the start of the first
	// batch that is not whole and correct (the log's size when its tail is
	// missing).
	Pos int64
	// Offset is the first offset not verifiably present: the offset after
	// the last batch that passed every check, or Base when none did.
	// Offsets in [Offset, Next) are not served until a repair.
	Offset int64
	// HeaderLost says neither index header was usable, so Next is only
	// what the verified prefix shows: the segment's real end is unknown to
	// tier2 and its owner resolves it (Segment.ResolveNext).
	HeaderLost bool
	Reason     string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("%v: segment %s is damaged at byte %d, offsets %d to %d are not verifiable: %s",
		ErrCorrupt, e.Path, e.Pos, e.Offset, e.Next-1, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *DamageError) Unwrap() error { return ErrCorrupt }

// Damage returns the damage found in the segment (by Load or Verify), or
// nil. A damaged segment stays damaged: a repair publishes a new Segment.
func (s *Segment) Damage() *DamageError { return s.damage.Load() }

// Suspect reports whether a read of the segment failed a check (a batch
// CRC, a batch header) that no Verify has looked at since: the owner
// should Verify it soon to learn where the damage is.
func (s *Segment) Suspect() bool { return s.suspect.Load() }

// MarkSuspect records that a check outside this package (an upload's
// batch verifier) failed on the segment's bytes.
func (s *Segment) MarkSuspect() { s.suspect.Store(true) }

// ResolveNext sets the end of a damaged segment whose index headers were
// lost (DamageError.HeaderLost), from what the owner knows: the next
// segment's base, a checkpoint of the sealed end. It must be called before
// the segment is shared; next below the verified prefix's end is ignored.
func (s *Segment) ResolveNext(next int64) {
	d := s.damage.Load()
	if d == nil || !d.HeaderLost || next <= s.Next {
		return
	}
	c := *d
	c.Next = next
	s.Next = next
	s.damage.Store(&c)
}

// verifiedEnd is where reads of the segment stop: the damage, or the end.
func (s *Segment) verifiedEnd() int64 {
	if d := s.damage.Load(); d != nil {
		return d.Pos
	}
	return s.Size
}

// noteReadErr marks the segment suspect when a read failed a check.
func (s *Segment) noteReadErr(err error) {
	if errors.Is(err, ErrCorrupt) {
		s.suspect.Store(true)
	}
}

// damaged records d as the segment's damage (the first one found stays)
// and returns what is recorded.
func (s *Segment) damaged(d *DamageError) *DamageError {
	s.damage.CompareAndSwap(nil, d)
	return s.damage.Load()
}

// VerifyOptions paces a Verify and reports its progress.
type VerifyOptions struct {
	// BytesPerSec bounds the rate at which the log is read; 0 or less
	// reads as fast as the disk allows.
	BytesPerSec int64
	// Progress, when set, is called with the byte count of every read.
	Progress func(n int64)
}

// verifyChunk is the unit Verify reads: the only buffer it holds.
const verifyChunk = 256 << 10

// Verify reads the whole log and checks every batch: a whole header,
// length, magic and CRC, base offsets strictly increasing, every offset
// within [Base, Next), and the last batch ending the log. On damage it
// records it on the segment (reads at or past it fail from then on) and
// returns it as a *DamageError; a segment already known to be damaged
// returns its damage without reading. Other failures (a read error, ctx
// ended, ErrRemoved) say nothing about the log and are returned as they
// are. Verify clears Suspect once it has looked.
func (s *Segment) Verify(ctx context.Context, opt VerifyOptions) error {
	if d := s.damage.Load(); d != nil {
		return d
	}
	f, err := s.files.acquire(s)
	if err != nil {
		return err
	}
	defer s.files.release(s)
	s.suspect.Store(false)
	v := verifier{f: f, size: s.Size, buf: make([]byte, 0, min(verifyChunk, max(s.Size, batchHeaderLen))),
		pace: pacer{rate: opt.BytesPerSec, start: time.Now()}, progress: opt.Progress, removed: func() bool { return s.files.isRemoved(s) }}
	pos, last, reason, err := v.run(ctx, s.Base, s.Next)
	if err != nil {
		return err
	}
	if reason == "" {
		return nil
	}
	return s.damaged(&DamageError{Path: s.Path(), Base: s.Base, Next: s.Next, Pos: pos, Offset: last + 1, Reason: reason})
}

// verifier reads a log front to back through one bounded buffer.
type verifier struct {
	f        io.ReaderAt
	size     int64
	buf      []byte // holds the log's bytes [bufPos, bufPos+len(buf))
	bufPos   int64
	pace     pacer
	progress func(int64)
	removed  func() bool
}

// run checks every batch. It returns the position of the first bad batch,
// the last offset verified before it (base-1 if none) and what failed; an
// empty reason means the log is whole. err is a failure to read, not
// damage.
func (v *verifier) run(ctx context.Context, base, next int64) (pos, last int64, reason string, err error) {
	last = base - 1
	for pos < v.size {
		if v.size-pos < batchHeaderLen {
			return pos, last, fmt.Sprintf("the log ends %d bytes into a batch header", v.size-pos), nil
		}
		hdr, err := v.at(ctx, pos, batchHeaderLen)
		if err != nil {
			return pos, last, "", err
		}
		_, l, ok := parseBatchPrefix(hdr)
		switch {
		case !ok:
			return pos, last, "bad batch length", nil
		case pos+l > v.size:
			return pos, last, fmt.Sprintf("a %d-byte batch runs past the end of the log", l), nil
		case hdr[16] != 2:
			return pos, last, fmt.Sprintf("batch magic %d", hdr[16]), nil
		}
		h := headerInfo(hdr)
		switch {
		case h.lastDelta < 0:
			return pos, last, fmt.Sprintf("batch at offset %d has a negative last offset delta", h.base), nil
		case h.base <= last:
			return pos, last, fmt.Sprintf("batch at offset %d follows offset %d", h.base, last), nil
		case h.base < base || h.last() >= next || h.base-base > math.MaxUint32:
			return pos, last, fmt.Sprintf("batch %d-%d lies outside the segment's offsets %d-%d", h.base, h.last(), base, next-1), nil
		}
		want := binary.BigEndian.Uint32(hdr[bOffCRC:])
		crc := crc32.Update(0, crc32c, hdr[bOffAttributes:batchHeaderLen])
		for off := pos + batchHeaderLen; off < pos+l; {
			n := int(min(pos+l-off, verifyChunk))
			b, err := v.at(ctx, off, n)
			if err != nil {
				return pos, last, "", err
			}
			crc = crc32.Update(crc, crc32c, b)
			off += int64(n)
		}
		if crc != want {
			return pos, last, fmt.Sprintf("batch crc mismatch at offset %d", h.base), nil
		}
		last = h.last()
		pos += l
	}
	return pos, last, "", nil
}

// at returns the n log bytes at pos (n <= verifyChunk, pos+n <= size),
// reading the next chunk from pos when they are not buffered.
func (v *verifier) at(ctx context.Context, pos int64, n int) ([]byte, error) {
	if pos >= v.bufPos && pos+int64(n) <= v.bufPos+int64(len(v.buf)) {
		return v.buf[pos-v.bufPos:][:n], nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if v.removed() {
		return nil, ErrRemoved
	}
	m := int(min(int64(cap(v.buf)), v.size-pos))
	v.buf = v.buf[:m]
	if err := readFull(v.f, v.buf, pos); err != nil {
		v.buf = v.buf[:0]
		return nil, err
	}
	v.bufPos = pos
	if v.progress != nil {
		v.progress(int64(m))
	}
	if err := v.pace.wait(ctx, int64(m)); err != nil {
		return nil, err
	}
	return v.buf[:n], nil
}

// pacer holds a reader to rate bytes per second on average since start.
type pacer struct {
	rate  int64
	start time.Time
	done  int64
}

func (p *pacer) wait(ctx context.Context, n int64) error {
	p.done += n
	if p.rate <= 0 {
		return nil
	}
	due := p.start.Add(time.Duration(float64(p.done) / float64(p.rate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
