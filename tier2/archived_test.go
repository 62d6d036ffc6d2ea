package tier2

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
)

// pieces holds a segment copy in pieces of random sizes, as Tier 3 holds
// an archived .log in chunks.
type pieces struct {
	starts []int64
	bufs   [][]byte
	size   int64
}

func newPieces(b []byte, rng *rand.Rand) *pieces {
	p := &pieces{size: int64(len(b))}
	for off := 0; off < len(b); {
		n := min(len(b)-off, 1+rng.IntN(700))
		p.starts = append(p.starts, int64(off))
		p.bufs = append(p.bufs, bytes.Clone(b[off:off+n]))
		off += n
	}
	return p
}

func (p *pieces) Slice(off, n int64) ([]byte, error) {
	if off >= p.size {
		return nil, nil
	}
	i := len(p.starts) - 1
	for p.starts[i] > off {
		i--
	}
	b := p.bufs[i][off-p.starts[i]:]
	return b[:min(n, int64(len(b)))], nil
}

func (p *pieces) ReadAt(dst []byte, off int64) (int, error) {
	n := 0
	for n < len(dst) {
		b, _ := p.Slice(off+int64(n), int64(len(dst)-n))
		if len(b) == 0 {
			return n, io.EOF
		}
		n += copy(dst[n:], b)
	}
	return n, nil
}

func archivedCopy(t *testing.T) (*Segment, []byte, *Index) {
	t.Helper()
	mem := vfs.NewMemFS()
	s := writeSegment(t, mem, "/seg", NewFileCache(2), 100, 7, 60, 20000)
	log, _, err := s.ReadFrom(s.Base, int(s.Size), nil, true)
	if err != nil || int64(len(log)) != s.Size {
		t.Fatalf("read segment: %d bytes, %v", len(log), err)
	}
	ib, tb, err := s.IndexBytes()
	if err != nil {
		t.Fatal(err)
	}
	x, err := ParseIndex(ib, tb)
	if err != nil {
		t.Fatal(err)
	}
	return s, log, x
}

// ReadVec returns, as views of the pieces, exactly the bytes ReadFrom
// copies, for every offset and limit, and the offset after them.
func TestReadVecMatchesReadFrom(t *testing.T) {
	s, log, x := archivedCopy(t)
	rng := rand.New(rand.NewPCG(3, 4))
	p := newPieces(log, rng)
	flat := bytes.NewReader(log)
	for off := s.Base; off < s.Next; off += 5 {
		for _, limit := range []int{1, 200, 1000, 5000, int(s.Size)} {
			want, wantEnd, err := x.ReadFrom(flat, off, limit, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, check := range []bool{true, false} {
				views, n, next, atEnd, err := x.ReadVec(p, off, limit, [][]byte{[]byte("caller")}, true, check)
				if err != nil {
					t.Fatalf("ReadVec(%d, %d): %v", off, limit, err)
				}
				if string(views[0]) != "caller" {
					t.Fatal("ReadVec changed the caller's views")
				}
				got := bytes.Join(views[1:], nil)
				if !bytes.Equal(got, want) || n != len(want) || atEnd != wantEnd {
					t.Fatalf("ReadVec(%d, %d): %d bytes (n %d, atEnd %v), ReadFrom %d bytes (atEnd %v)", off, limit, len(got), n, atEnd, len(want), wantEnd)
				}
				h := headerInfo(want[len(want)-int(lastLen(want)):])
				if next != h.last()+1 {
					t.Fatalf("ReadVec(%d, %d): next %d, want %d", off, limit, next, h.last()+1)
				}
			}
		}
	}
}

// lastLen returns the length of the last batch in b.
func lastLen(b []byte) int64 {
	var l int64
	for len(b) > 0 {
		_, l, _ = parseBatchPrefix(b)
		b = b[l:]
	}
	return l
}

// A damaged byte inside a batch fails ReadVec's CRC check (when asked
// for) and the BatchVerifier, however the bytes are split.
func TestDamagedBatchCaught(t *testing.T) {
	s, log, x := archivedCopy(t)
	rng := rand.New(rand.NewPCG(5, 6))

	var v BatchVerifier
	for off := 0; off < len(log); {
		n := min(len(log)-off, 1+rng.IntN(300))
		if _, err := v.Write(log[off : off+n]); err != nil {
			t.Fatalf("verifier rejects a sound segment at %d: %v", off, err)
		}
		off += n
	}
	if err := v.Close(); err != nil {
		t.Fatalf("verifier rejects a sound segment: %v", err)
	}
	var cut BatchVerifier
	cut.Write(log[:len(log)-10])
	if err := cut.Close(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("verifier on a truncated segment: %v", err)
	}

	// Where each batch starts: Kafka's CRC covers a batch from its
	// attributes on (base offset, length and leader epoch are outside it;
	// Tier 3's chunk CRCs cover those).
	var starts []int
	for b, pos := log, 0; len(b) > 0; {
		_, l, _ := parseBatchPrefix(b)
		starts = append(starts, pos)
		b, pos = b[l:], pos+int(l)
	}
	for i := 0; i < 20; i++ {
		bad := bytes.Clone(log)
		k := rng.IntN(len(starts))
		end := len(log)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		at := starts[k] + bOffAttributes + rng.IntN(end-starts[k]-bOffAttributes)
		bad[at] ^= 0x40
		var v BatchVerifier
		for off := 0; off < len(bad); {
			n := min(len(bad)-off, 1+rng.IntN(300))
			v.Write(bad[off : off+n])
			off += n
		}
		if err := v.Close(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("verifier missed a flipped byte at %d: %v", at, err)
		}
		_, _, _, _, err := x.ReadVec(newPieces(bad, rng), s.Base, int(s.Size), nil, true, true)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ReadVec missed a flipped byte at %d: %v", at, err)
		}
	}
}
