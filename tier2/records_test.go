package tier2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
	"github.com/chronik-go/chronik/internal/vfs"
)

var testLimit = inflate.Limit(inflate.DefaultMaxMessageBytes)

func TestEachBatchRecord(t *testing.T) {
	b := append(testBatch(10, 3, 5, 1000), testBatch(13, 2, 5, 2000)...)
	ctrl := testBatch(15, 1, 0, 3000)
	binary.BigEndian.PutUint16(ctrl[bOffAttributes:], 0x20)
	binary.BigEndian.PutUint32(ctrl[bOffCRC:], crc32Sum(ctrl[bOffAttributes:]))
	b = append(b, ctrl...)
	var offs []int64
	if err := EachBatchRecord(b, testLimit, func(_ *kmsg.Record, off, ts int64) { offs = append(offs, off) }); err != nil {
		t.Fatal(err)
	}
	if len(offs) != 5 || offs[0] != 10 || offs[4] != 14 {
		t.Errorf("offsets %v, want 10-14 (the control batch skipped)", offs)
	}
	b[30] ^= 1
	if err := EachBatchRecord(b, testLimit, func(*kmsg.Record, int64, int64) {}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a damaged batch: %v", err)
	}
	if err := EachBatchRecord(b[:40], testLimit, func(*kmsg.Record, int64, int64) {}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a truncated batch: %v", err)
	}
}

// compressedBatch is testBatch's records compressed with codec (franz-go's
// compressor, what producers send).
func compressedBatch(t testing.TB, base int64, n, size int, ts int64, codec kgo.CompressionCodec) []byte {
	t.Helper()
	plain := testBatch(base, n, size, ts)
	c, err := kgo.DefaultCompressor(codec)
	if err != nil {
		t.Fatal(err)
	}
	records, got := c.Compress(new(bytes.Buffer), plain[batchHeaderLen:])
	return reframe(plain, records, int16(got))
}

// reframe puts records (compressed with codec) behind plain's header, with
// the length and CRC fixed.
func reframe(plain, records []byte, codec int16) []byte {
	b := append(bytes.Clone(plain[:batchHeaderLen]), records...)
	binary.BigEndian.PutUint16(b[bOffAttributes:], uint16(codec))
	binary.BigEndian.PutUint32(b[bOffLength:], uint32(len(b)-batchPrefix))
	binary.BigEndian.PutUint32(b[bOffCRC:], crc32Sum(b[bOffAttributes:]))
	return b
}

// gzipBomb is a batch of 4 records holding 16 MiB of zeros in 16 KB of
// gzip: past the inflate bound of any topic with max.message.bytes up to
// 512 KiB.
func gzipBomb(t testing.TB, base int64) []byte {
	t.Helper()
	plain := testBatch(base, 4, 4<<20, 1000)
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(plain[batchHeaderLen:])
	w.Close()
	return reframe(plain, buf.Bytes(), 1)
}

// Search reads inflate no batch past the bound.
func TestEachBatchRecordBombs(t *testing.T) {
	limit := inflate.Limit(128 << 10)
	good := compressedBatch(t, 0, 3, 100, 1000, kgo.ZstdCompression())
	if err := EachBatchRecord(good, limit, func(*kmsg.Record, int64, int64) {}); err != nil {
		t.Fatalf("a small zstd batch: %v", err)
	}
	enc, _ := zstd.NewWriter(nil)
	plain := testBatch(3, 4, 4<<20, 1000)
	for name, bomb := range map[string][]byte{
		"gzip": gzipBomb(t, 3),
		"zstd": reframe(plain, enc.EncodeAll(plain[batchHeaderLen:], nil), 4),
	} {
		n := 0
		err := EachBatchRecord(append(bytes.Clone(good), bomb...), limit, func(*kmsg.Record, int64, int64) { n++ })
		if !errors.Is(err, inflate.ErrTooLarge) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s bomb of %d bytes: %v, want ErrTooLarge (and ErrCorrupt)", name, len(bomb), err)
		}
		if n != 3 {
			t.Errorf("%s: %d records before the bomb, want 3", name, n)
		}
	}
}

// Compaction, retried every pass, fails on a bomb instead of inflating it.
func TestCompactBomb(t *testing.T) {
	mem := vfs.NewMemFS()
	w, err := Create(mem, "/c", NewFileCache(4), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{compressedBatch(t, 0, 3, 10, 1000, kgo.Lz4Compression()), gzipBomb(t, 3)} {
		if err := w.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	s, err := w.Finish(7)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compact([]*Segment{s}, CompactOptions{MemoryBytes: 1 << 20, InflateLimit: inflate.Limit(128 << 10)})
	if !errors.Is(err, inflate.ErrTooLarge) {
		t.Fatalf("Compact over a bomb: %v, want ErrTooLarge", err)
	}
	// Under the default bound (32 MiB) the same 16 MiB batch is allowed.
	if _, err := Compact([]*Segment{s}, CompactOptions{MemoryBytes: 1 << 20}); err != nil {
		t.Fatalf("Compact under the default bound: %v", err)
	}
}

// FuzzEachBatchRecord decodes arbitrary bytes as stored batches: nothing
// may panic or inflate past the bound. Seeds: each codec, empty input, a
// huge declared length, valid-then-garbage, and a claimed 2 GiB snappy
// block.
func FuzzEachBatchRecord(f *testing.F) {
	good := testBatch(0, 3, 10, 1)
	f.Add(good)
	f.Add([]byte{})
	huge := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(huge[bOffLength:], 1<<31-1)
	f.Add(huge)
	f.Add(append(append([]byte(nil), good...), 0xff, 0xff, 0xff))
	for _, c := range []kgo.CompressionCodec{kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		cb := compressedBatch(f, 0, 5, 20, 1, c)
		f.Add(cb)
		f.Add(append(bytes.Clone(cb), good...))
	}
	f.Add(reframe(good, append(binary.AppendUvarint(nil, 1<<31-1), 0, 0), 2))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = EachBatchRecord(b, limit, func(r *kmsg.Record, _, _ int64) {
			if len(r.Key)+len(r.Value) > limit {
				t.Fatalf("a record of %d bytes from a batch bounded at %d", len(r.Key)+len(r.Value), limit)
			}
		})
	})
}
