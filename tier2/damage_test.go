package tier2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/vfs"
)

// logBatch is one batch of a log as written.
type logBatch struct {
	pos, size, base, last int64
}

func logBatches(t testing.TB, data []byte) []logBatch {
	t.Helper()
	var out []logBatch
	for pos := int64(0); pos < int64(len(data)); {
		_, l, ok := parseBatchPrefix(data[pos:])
		if !ok {
			t.Fatalf("bad batch at %d in the test's own log", pos)
		}
		h := headerInfo(data[pos:])
		out = append(out, logBatch{pos: pos, size: l, base: h.base, last: h.last()})
		pos += l
	}
	return out
}

// damagedDir writes a segment of about 20 batches at base 100 in a memfs
// and returns it, its log's bytes and batches, and the batch that damage
// should hit (one in the middle).
func damagedDir(t testing.TB) (*vfs.MemFS, *Segment, []byte, []logBatch, logBatch) {
	t.Helper()
	mem := vfs.NewMemFS()
	s := writeSegment(t, mem, "/p", NewFileCache(4), 100, 5, 40, 6000)
	data, err := mem.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	bs := logBatches(t, data)
	if len(bs) < 10 {
		t.Fatalf("only %d batches", len(bs))
	}
	return mem, s, data, bs, bs[len(bs)/2]
}

func flip(t testing.TB, mem *vfs.MemFS, path string, pos int64) {
	t.Helper()
	data, err := mem.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[pos] ^= 0x10
	if err := mem.WriteFile(path, data); err != nil {
		t.Fatal(err)
	}
}

// checkDamagedReads reads every offset of s: below the damage a read
// returns whole checked batches, starting with the one holding the offset
// and never reaching into the damage; at or past it, the *DamageError.
func checkDamagedReads(t *testing.T, s *Segment, data []byte, bs []logBatch, bad logBatch) {
	t.Helper()
	for off := s.Base; off < s.Next; off++ {
		buf, atEnd, err := s.ReadFrom(off, 1<<20, nil, true)
		if off >= bad.base {
			var d *DamageError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &d) || len(buf) != 0 {
				t.Fatalf("ReadFrom(%d) past the damage: %d bytes, %v; want a *DamageError", off, len(buf), err)
			}
			continue
		}
		if err != nil || atEnd {
			t.Fatalf("ReadFrom(%d) in the verified prefix: atEnd %v, %v", off, atEnd, err)
		}
		var first logBatch
		for _, b := range bs {
			if b.last >= off {
				first = b
				break
			}
		}
		if want := data[first.pos:bad.pos]; !bytes.Equal(buf, want) {
			t.Fatalf("ReadFrom(%d) returned %d bytes; want the %d bytes from its batch to the damage", off, len(buf), len(want))
		}
	}
}

// A bit flip in the middle of a sealed log whose index is lost too: Load
// used to cut the log at the last good batch and keep the recorded end, so
// the segment claimed offsets it no longer held. Now the log is kept byte
// for byte, the damage is described, the verified prefix reads, and every
// read of the damaged range fails.
func TestLoadKeepsDamagedSegment(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lose       []string // index files removed
		headerLost bool
	}{
		{"offset index lost", []string{indexSuffix}, false},
		{"time index lost", []string{timeSuffix}, false},
		{"both indexes lost", []string{indexSuffix, timeSuffix}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, orig, data, bs, bad := damagedDir(t)
			flip(t, mem, orig.Path(), bad.pos+bad.size-3) // inside the records: CRC-covered
			data[bad.pos+bad.size-3] ^= 0x10
			for _, suf := range tc.lose {
				if err := mem.Remove(orig.path(suf)); err != nil {
					t.Fatal(err)
				}
			}
			segs, rep, err := Load(mem, "/p", NewFileCache(4), quiet())
			if err != nil || len(segs) != 1 || rep.Damaged != 1 {
				t.Fatalf("Load: %d segments, %+v, %v", len(segs), rep, err)
			}
			if got, _ := mem.ReadFile(orig.Path()); !bytes.Equal(got, data) {
				t.Fatalf("Load changed the damaged log: %d bytes, was %d", len(got), len(data))
			}
			s := segs[0]
			d := s.Damage()
			if d == nil || d.Pos != bad.pos || d.Offset != bad.base || d.Base != orig.Base || d.HeaderLost != tc.headerLost {
				t.Fatalf("damage %+v; want it at byte %d, offset %d, header lost %v", d, bad.pos, bad.base, tc.headerLost)
			}
			wantNext := orig.Next
			if tc.headerLost {
				wantNext = bad.base // only the verified prefix is known
			}
			if s.Next != wantNext || d.Next != wantNext || s.Size != orig.Size {
				t.Fatalf("segment [%d, %d) of %d bytes; want next %d, %d bytes", s.Base, s.Next, s.Size, wantNext, orig.Size)
			}
			if tc.headerLost {
				s.ResolveNext(orig.Next) // what the broker knows
				if s.Next != orig.Next || s.Damage().Next != orig.Next {
					t.Fatalf("ResolveNext: next %d, damage %+v", s.Next, s.Damage())
				}
			}
			checkDamagedReads(t, s, data, bs, bad)
			if err := s.Verify(context.Background(), VerifyOptions{}); err != s.Damage() {
				t.Fatalf("Verify: %v; want the recorded damage", err)
			}
			if _, _, err := s.IndexBytes(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("IndexBytes of a damaged segment (what Tier 3 uploads): %v", err)
			}
			if _, err := Compact([]*Segment{s}, CompactOptions{MemoryBytes: 1 << 20}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Compact of a damaged segment: %v", err)
			}
			if _, _, err := s.FindTimestampFrom(1000+bad.base, s.Base); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("timestamp lookup whose answer lies in the damage: %v", err)
			}
			if pos, ok, err := s.FindTimestampFrom(1000+s.Base+5, s.Base); err != nil || !ok || pos != bs[1].pos {
				t.Fatalf("timestamp lookup in the prefix: %d %v %v; want %d", pos, ok, err, bs[1].pos)
			}
			// The files stay for the repair: a second load finds the same.
			segs, rep, err = Load(mem, "/p", NewFileCache(4), quiet())
			if err != nil || rep.Damaged != 1 || segs[0].Damage().Pos != bad.pos {
				t.Fatalf("second Load: %+v %v", rep, err)
			}
		})
	}
}

// A flip where Load's cheap checks do not look (the index and the last
// batch are fine) is found by the first read through it (Suspect) and
// located by Verify; from then on the whole damaged range fails to read,
// even the intact batches after the bad one.
func TestVerifyFindsMidLogFlip(t *testing.T) {
	mem, orig, data, bs, bad := damagedDir(t)
	flip(t, mem, orig.Path(), bad.pos+bad.size-3)
	data[bad.pos+bad.size-3] ^= 0x10
	segs, rep, err := Load(mem, "/p", NewFileCache(4), quiet())
	if err != nil || rep.Damaged != 0 || rep.Rebuilt != 0 {
		t.Fatalf("Load: %+v %v; the cheap checks should not see a mid-log flip", rep, err)
	}
	s := segs[0]
	after := bs[len(bs)-2]
	if buf, _, err := s.ReadFrom(after.base, 1, nil, true); err != nil || !bytes.Equal(buf, data[after.pos:after.pos+after.size]) {
		t.Fatalf("intact batch after the flip, before Verify: %v", err)
	}
	if _, _, err := s.ReadFrom(bad.base, 1<<20, nil, true); !errors.Is(err, ErrCorrupt) || !s.Suspect() {
		t.Fatalf("read of the flipped batch: %v, suspect %v", err, s.Suspect())
	}
	var read int64
	err = s.Verify(context.Background(), VerifyOptions{Progress: func(n int64) { read += n }})
	var d *DamageError
	if !errors.As(err, &d) || d.Pos != bad.pos || d.Offset != bad.base || d.Next != orig.Next || d.HeaderLost {
		t.Fatalf("Verify: %v; want damage at byte %d, offset %d", err, bad.pos, bad.base)
	}
	if s.Damage() != d || s.Suspect() || read < bad.pos {
		t.Fatalf("after Verify: damage %v, suspect %v, %d bytes read", s.Damage(), s.Suspect(), read)
	}
	checkDamagedReads(t, s, data, bs, bad)
}

// Verify finds every kind of damage a log can have, each at the batch
// where it starts.
func TestVerifyDamageKinds(t *testing.T) {
	for _, tc := range []struct {
		name string
		hit  func(data []byte, bs []logBatch) ([]byte, logBatch)
	}{
		{"crc-covered byte", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[len(bs)/2]
			data[b.pos+bOffAttributes+5] ^= 1
			return data, b
		}},
		{"length field", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[3]
			binary.BigEndian.PutUint32(data[b.pos+bOffLength:], 7)
			return data, b
		}},
		{"magic", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[4]
			data[b.pos+16] = 1
			return data, b
		}},
		{"offsets out of order", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[5] // the base offset is not CRC-covered
			binary.BigEndian.PutUint64(data[b.pos:], uint64(bs[4].base))
			return data, b
		}},
		{"offset past the segment's end", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[len(bs)-1]
			binary.BigEndian.PutUint64(data[b.pos:], uint64(b.base+1000))
			return data, b
		}},
		{"tail cut inside a batch", func(data []byte, bs []logBatch) ([]byte, logBatch) {
			b := bs[len(bs)-1]
			return data[:b.pos+20], b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, orig, data, bs, _ := damagedDir(t)
			data, bad := tc.hit(data, bs)
			if err := mem.WriteFile(orig.Path(), data); err != nil {
				t.Fatal(err)
			}
			segs, _, err := Load(mem, "/p", NewFileCache(4), quiet()) // finds damage to the last batch itself
			if err != nil {
				t.Fatal(err)
			}
			err = segs[0].Verify(context.Background(), VerifyOptions{})
			var d *DamageError
			if !errors.As(err, &d) || d.Pos != bad.pos || d.Offset != bad.base {
				t.Fatalf("Verify: %v; want damage at byte %d, offset %d", err, bad.pos, bad.base)
			}
		})
	}
}

// A log whose tail is gone at a batch boundary passes every batch check;
// its index header still says how long it was written, so Load calls it
// damaged instead of serving a segment that claims offsets it lacks.
func TestLoadLostTailAtBatchBoundary(t *testing.T) {
	mem, orig, data, bs, _ := damagedDir(t)
	bad := bs[len(bs)-3]
	if err := mem.WriteFile(orig.Path(), data[:bad.pos]); err != nil {
		t.Fatal(err)
	}
	segs, rep, err := Load(mem, "/p", NewFileCache(4), quiet())
	if err != nil || rep.Damaged != 1 {
		t.Fatalf("Load: %+v %v", rep, err)
	}
	d := segs[0].Damage()
	if d.Pos != bad.pos || d.Offset != bad.base || segs[0].Next != orig.Next {
		t.Fatalf("damage %+v, next %d; want byte %d, offset %d, next %d", d, segs[0].Next, bad.pos, bad.base, orig.Next)
	}
	if _, _, err := segs[0].ReadFrom(orig.Next-1, 1<<20, nil, true); !errors.As(err, &d) {
		t.Fatalf("read of the lost tail: %v", err)
	}
}

// Verify of a healthy log reads it all at no more than the rate asked
// for, and stops when its context ends.
func TestVerifyPaced(t *testing.T) {
	_, s, _, _, _ := damagedDir(t)
	var read int64
	start := time.Now()
	rate := s.Size * 4 // about a quarter of a second for the whole log
	if err := s.Verify(context.Background(), VerifyOptions{BytesPerSec: rate, Progress: func(n int64) { read += n }}); err != nil {
		t.Fatalf("Verify of a healthy segment: %v", err)
	}
	if read != s.Size {
		t.Fatalf("read %d bytes of %d", read, s.Size)
	}
	if took, least := time.Since(start), time.Duration(float64(s.Size)/float64(rate)*float64(time.Second)); took < least*9/10 {
		t.Fatalf("verified %d bytes in %v at %d bytes/s; pacing should take %v", s.Size, took, rate, least)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Verify(ctx, VerifyOptions{}); !errors.Is(err, context.Canceled) || s.Damage() != nil {
		t.Fatalf("Verify with an ended context: %v, damage %v", err, s.Damage())
	}
}

// Whatever a log's bytes become, Load and Verify never panic, a reported
// damage lies within the log and the segment, and every read either fails
// or returns batches that pass their checks; a log that is changed in its
// checked bytes is never called whole.
func FuzzVerify(f *testing.F) {
	f.Add(uint16(0), byte(0), uint16(0), false)
	f.Add(uint16(3000), byte(0xff), uint16(0), false)
	f.Add(uint16(10), byte(1), uint16(0), true)
	f.Add(uint16(0), byte(0), uint16(100), true)
	f.Add(uint16(65535), byte(0x80), uint16(65535), false)
	f.Fuzz(func(t *testing.T, at uint16, xor byte, cut uint16, loseIndex bool) {
		mem, orig, data, bs, _ := damagedDir(t)
		pos := int64(at) % int64(len(data))
		data[pos] ^= xor
		data = data[:int64(len(data))-min(int64(cut), int64(len(data)))]
		if err := mem.WriteFile(orig.Path(), data); err != nil {
			t.Fatal(err)
		}
		if loseIndex {
			mem.Remove(orig.path(indexSuffix))
			mem.Remove(orig.path(timeSuffix))
		}
		segs, _, err := Load(mem, "/p", NewFileCache(4), quiet())
		if err != nil {
			t.Fatal(err)
		}
		s := segs[0]
		verr := s.Verify(context.Background(), VerifyOptions{})
		var d *DamageError
		if verr != nil && !errors.As(verr, &d) {
			t.Fatalf("Verify failed without damage: %v", verr)
		}
		if d != nil && (d.Pos < 0 || d.Pos > s.Size || d.Offset < s.Base || d.Offset > d.Next || d.Next != s.Next) {
			t.Fatalf("damage %+v outside segment [%d, %d) of %d bytes", d, s.Base, s.Next, s.Size)
		}
		// Kafka's batch CRC leaves out the base offset (which may change
		// and still be in order) and the leader epoch; everything else of
		// a batch is checked, and so is a tail cut anywhere but at a batch
		// boundary, or anywhere while an index header remembers the size.
		mustFind := false
		for _, b := range bs {
			if r := pos - b.pos; xor != 0 && r >= 0 && r < b.size && pos < int64(len(data)) {
				mustFind = !(r < 8 || (r >= 12 && r < 16))
			}
			if cut > 0 && (!loseIndex || int64(len(data)) > b.pos && int64(len(data)) < b.pos+b.size) {
				mustFind = true
			}
		}
		if verr == nil && mustFind {
			t.Fatalf("log changed at byte %d (xor %#x, %d bytes cut, indexes lost %v) but Verify calls it whole", pos, xor, cut, loseIndex)
		}
		for off := s.Base; off < min(s.Next, s.Base+1000); off += 3 {
			buf, _, err := s.ReadFrom(off, 1<<20, nil, true)
			if err != nil {
				continue
			}
			for rest := buf; len(rest) > 0; {
				_, l, ok := parseBatchPrefix(rest)
				if !ok || l > int64(len(rest)) {
					t.Fatalf("ReadFrom(%d) returned a malformed batch", off)
				}
				if _, err := checkBatch(rest[:l]); err != nil {
					t.Fatalf("ReadFrom(%d) served a batch that fails its check: %v", off, err)
				}
				rest = rest[l:]
			}
		}
	})
}
