package inflate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// compress uses franz-go's compressors, which are what producers send.
func compress(t testing.TB, codec int, b []byte) []byte {
	t.Helper()
	var cc kgo.CompressionCodec
	switch codec {
	case Gzip:
		cc = kgo.GzipCompression()
	case Snappy:
		cc = kgo.SnappyCompression()
	case Lz4:
		cc = kgo.Lz4Compression()
	case Zstd:
		cc = kgo.ZstdCompression()
	}
	c, err := kgo.DefaultCompressor(cc)
	if err != nil {
		t.Fatal(err)
	}
	out, got := c.Compress(new(bytes.Buffer), b)
	if int(got) != codec {
		t.Fatalf("compressed with codec %d, want %d", got, codec)
	}
	return bytes.Clone(out)
}

// xerial frames b the way the Java producer writes snappy.
func xerial(b []byte, block int) []byte {
	out := append(bytes.Clone(xerialMagic), 0, 0, 0, 1, 0, 0, 0, 1)
	for len(b) > 0 {
		n := min(block, len(b))
		enc := s2.EncodeSnappy(nil, b[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(enc)))
		out = append(out, enc...)
		b = b[n:]
	}
	return out
}

func lz4Frame(t testing.TB, b []byte, withSize bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := lz4.NewWriter(&buf)
	if withSize {
		if err := w.Apply(lz4.SizeOption(uint64(len(b)))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zstdStream writes a frame without a declared content size.
func zstdStream(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipStream(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func records(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefgh{}:,\" 0123"[r.IntN(18)]
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	plain := records(300 << 10)
	cases := []struct {
		name  string
		codec int
		data  []byte
	}{
		{"none", None, plain},
		{"gzip", Gzip, compress(t, Gzip, plain)},
		{"gzip two members", Gzip, append(gzipStream(t, plain[:1000]), gzipStream(t, plain[1000:])...)},
		{"snappy raw", Snappy, compress(t, Snappy, plain)},
		{"snappy xerial", Snappy, xerial(plain, 32<<10)},
		{"lz4", Lz4, compress(t, Lz4, plain)},
		{"lz4 sized", Lz4, lz4Frame(t, plain, true)},
		{"zstd", Zstd, compress(t, Zstd, plain)},
		{"zstd stream", Zstd, zstdStream(t, plain)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Records(nil, tc.codec, tc.data, len(plain))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("inflated %d bytes that differ from the %d sent", len(got), len(plain))
			}
			// Exactly one byte less than the records is refused.
			if _, err := Records(nil, tc.codec, tc.data, len(plain)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("with a limit one byte short: %v, want ErrTooLarge", err)
			}
			// A reused buffer gives the same bytes.
			buf := make([]byte, 17, 64)
			if got, err := Records(buf, tc.codec, tc.data, len(plain)); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("into a reused buffer: %v", err)
			}
		})
	}
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Each codec's bomb (a few KB that inflate to 64 MiB, or that merely claim
// to) is refused with ErrTooLarge, and refusing it allocates no more than a
// small multiple of the bound.
func TestBombs(t *testing.T) {
	const huge = 64 << 20
	const limit = 1 << 20
	zeros := make([]byte, huge)
	// A raw snappy block whose header claims 2 GiB: a varint, then junk.
	snappyClaim := binary.AppendUvarint(nil, 1<<31-1)
	snappyClaim = append(snappyClaim, 0, 1, 2, 3)
	// An xerial stream whose blocks each claim 1 GiB.
	xerialClaim := append(bytes.Clone(xerialMagic), 0, 0, 0, 1, 0, 0, 0, 1)
	for range 4 {
		blk := binary.AppendUvarint(nil, 1<<30)
		xerialClaim = binary.BigEndian.AppendUint32(xerialClaim, uint32(len(blk)))
		xerialClaim = append(xerialClaim, blk...)
	}
	// An lz4 frame declaring a 1 TiB content size.
	lz4Claim := lz4Frame(t, []byte("x"), true)
	binary.LittleEndian.PutUint64(lz4Claim[lz4SizeOffset:], 1<<40)
	cases := []struct {
		name  string
		codec int
		data  []byte
	}{
		{"gzip", Gzip, gzipStream(t, zeros)},
		// Snappy cannot compress past about 21:1, so its bombs are claims.
		{"snappy raw", Snappy, compress(t, Snappy, zeros[:8<<20])},
		{"snappy raw claim", Snappy, snappyClaim},
		{"snappy xerial", Snappy, xerial(zeros[:8<<20], 1<<20)},
		{"snappy xerial claim", Snappy, xerialClaim},
		{"lz4", Lz4, lz4Frame(t, zeros, false)},
		{"lz4 sized", Lz4, lz4Frame(t, zeros, true)},
		{"lz4 claim", Lz4, lz4Claim},
		{"zstd sized", Zstd, compress(t, Zstd, zeros)},
		{"zstd stream", Zstd, zstdStream(t, zeros)},
		{"none", None, zeros[:limit+1]},
	}
	zeros = nil
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.data) > 1<<19 && tc.codec != None {
				t.Fatalf("the bomb is %d bytes compressed; want a small one", len(tc.data))
			}
			var err error
			n := allocated(func() { _, err = Records(nil, tc.codec, tc.data, limit) })
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err %v, want ErrTooLarge", err)
			}
			// The output never outgrows twice the bound; lz4 and zstd
			// add their working memory (up to 4 MiB blocks, an 8 MiB
			// window) on top.
			if n > 2*limit+10<<20 {
				t.Fatalf("refusing a %d-byte bomb allocated %d bytes; the bound is %d", len(tc.data), n, limit)
			}
		})
	}
}

func TestCorruptAndUnknown(t *testing.T) {
	plain := records(10 << 10)
	for _, codec := range []int{Gzip, Snappy, Lz4, Zstd} {
		good := compress(t, codec, plain)
		bad := bytes.Clone(good)
		for i := len(bad) / 2; i < len(bad); i++ {
			bad[i] ^= 0x5a
		}
		// Raw snappy carries no checksum, so damage can inflate to other
		// bytes; the batch CRC catches that.
		if _, err := Records(nil, codec, bad, 1<<20); codec != Snappy && !errors.Is(err, ErrCorrupt) {
			t.Errorf("codec %d, damaged: %v, want ErrCorrupt", codec, err)
		}
		if _, err := Records(nil, codec, good[:len(good)/2], 1<<20); !errors.Is(err, ErrCorrupt) {
			t.Errorf("codec %d, truncated: %v, want ErrCorrupt", codec, err)
		}
	}
	for _, codec := range []int{5, 6, 7} {
		if _, err := Records(nil, codec, plain, 1<<20); !errors.Is(err, ErrCodec) {
			t.Errorf("codec %d: %v, want ErrCodec", codec, err)
		}
	}
}

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want int
	}{{1 << 20, 32 << 20}, {0, Factor}, {-5, Factor}, {1 << 30, 1<<31 - 1}} {
		if got := Limit(tc.in); got != tc.want {
			t.Errorf("Limit(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzRecords feeds every codec arbitrary data: nothing may panic, nothing
// may come back longer than the bound, and whatever inflates must be what a
// reference decoder makes of it.
func FuzzRecords(f *testing.F) {
	plain := records(4 << 10)
	for _, codec := range []int{Gzip, Snappy, Lz4, Zstd} {
		good := compress(f, codec, plain)
		f.Add(uint8(codec), good)
		f.Add(uint8(codec), append(bytes.Clone(good), 0xde, 0xad, 0xbe, 0xef)) // valid, then garbage
	}
	f.Add(uint8(Snappy), xerial(plain, 1024))
	f.Add(uint8(Snappy), binary.AppendUvarint(nil, 1<<31-1))
	f.Add(uint8(Lz4), lz4Frame(f, plain, true))
	f.Add(uint8(Zstd), zstdStream(f, plain))
	f.Add(uint8(Gzip), []byte{})
	f.Add(uint8(None), []byte{})
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, codec uint8, data []byte) {
		out, err := Records(nil, int(codec%8), data, limit)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrCodec) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("inflated %d bytes past the bound %d", len(out), limit)
		}
	})
}

// BenchmarkRecords inflates a 1 MiB batch's records with each codec, into a
// reused buffer as the produce validator does, beside franz-go's unbounded
// decompressor for scale.
func BenchmarkRecords(b *testing.B) {
	plain := records(1 << 20)
	dec := kgo.DefaultDecompressor()
	for _, codec := range []int{Gzip, Snappy, Lz4, Zstd} {
		data := compress(b, codec, plain)
		name := []string{"", "gzip", "snappy", "lz4", "zstd"}[codec]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				out, err := Records(buf, codec, data, Limit(DefaultMaxMessageBytes))
				if err != nil {
					b.Fatal(err)
				}
				buf = out
			}
		})
		b.Run(name+"/franz-go", func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := dec.Decompress(data, kgo.CompressionCodecType(codec)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
