package tier1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

const fuzzSalt = 0x5EED5A175A17

// truncTo is a segmentWith part: a truncation entry to that offset.
type truncTo int64

// rawEntry is a segmentWith part: a verified frame of any type and body,
// including those this release refuses.
type rawEntry struct {
	typ  byte
	body []byte
}

// segmentWith encodes a segment whose frames are laid out by parts: a
// []byte part is raw bytes (garbage); a string part is a batch to frame at
// the current offset; a truncTo or rawEntry part is framed there too.
func segmentWith(salt uint64, parts ...any) []byte {
	b := appendSegHeader(nil, 1, salt)
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			b = append(b, p...)
		case string:
			b = appendFrame(b, salt, int64(len(b)), entryTypeBatch, tpOf(len(b)), []byte(p))
		case truncTo:
			b = appendFrame(b, salt, int64(len(b)), entryTypeTrunc, tpOf(len(b)), appendTruncBody(nil, int64(p)))
		case rawEntry:
			b = appendFrame(b, salt, int64(len(b)), p.typ, tpOf(len(b)), p.body)
		default:
			panic(fmt.Sprintf("segmentWith: part of type %T", p))
		}
	}
	return b
}

func FuzzDecode(f *testing.F) {
	valid := segmentWith(fuzzSalt, "one", string(bytes.Repeat([]byte("x"), 100)), "three")
	hugeLen := le.AppendUint32(le.AppendUint32(nil, frameMagic(fuzzSalt)), 0xFFFFFFFF)
	hugeLen = append(hugeLen, make([]byte, 8)...)
	f.Add([]byte{})
	f.Add(valid)
	f.Add(valid[segHeaderSize:])
	f.Add(hugeLen)
	f.Add(append(appendSegHeader(nil, 1, fuzzSalt), hugeLen...))
	f.Add(append(bytes.Clone(valid), "garbage after valid frames"...))
	f.Add(segmentWith(fuzzSalt, "first", []byte("8 bytes!garbage!"), "after the garbage"))
	f.Add(valid[:len(valid)-3])
	f.Add(bytes.Repeat(le.AppendUint32(nil, frameMagic(fuzzSalt)), 64))
	// Truncations among batches, torn, and the verified frames of types
	// and truncation bodies this release refuses.
	mixed := segmentWith(fuzzSalt, "one", truncTo(0), "two", truncTo(1<<40), "three")
	f.Add(mixed)
	f.Add(mixed[segHeaderSize:])
	f.Add(mixed[:len(mixed)-30])
	f.Add(segmentWith(fuzzSalt, truncTo(7), []byte("8 bytes!"), truncTo(8)))
	f.Add(segmentWith(fuzzSalt, "a", rawEntry{entryTypeTrunc, []byte("CHRTRUNC\x00\x00\x00\x00\x00\x00\x00\x05")}))
	f.Add(segmentWith(fuzzSalt, "a", rawEntry{entryTypeTrunc, appendTruncBody(nil, -1)}))
	f.Add(segmentWith(fuzzSalt, "a", rawEntry{entryTypeTrunc, nil}))
	f.Add(segmentWith(fuzzSalt, "a", rawEntry{3, []byte("a type from the future")}))
	f.Add(segmentWith(fuzzSalt, rawEntry{0, nil}))

	f.Fuzz(func(t *testing.T, data []byte) {
		// As a whole segment file, and as frames behind a valid header (so
		// the fuzzer reaches the frame decoder without forging a header).
		checkDecode(t, data)
		checkDecode(t, append(appendSegHeader(nil, 1, fuzzSalt), data...))
	})
}

// checkDecode scans file and checks every claim the scanner makes against
// the bytes, with a checksum computed independently of format.go.
func checkDecode(t *testing.T, file []byte) {
	size := int64(len(file))
	next := int64(segHeaderSize)
	table := crc32.MakeTable(crc32.Castagnoli)
	res, err := scanSegment(bytes.NewReader(file), size, 1, func(e Entry) error {
		tp, pos := e.TP, e.Pos
		frameOff, end := pos.Offset-batchOffset, pos.Offset+int64(pos.Len)
		if frameOff < next || frameOff%frameAlign != 0 || pos.Len < 0 || end > size || pos.Segment != 1 {
			t.Fatalf("entry at %+v out of order or bounds (next %d, size %d)", pos, next, size)
		}
		frame := file[frameOff:end]
		if frame[12] != 1 || frame[13] != byte(e.Type) || frame[14] != 0 || frame[15] != 0 {
			t.Fatalf("entry of type %d at %+v yielded from a frame with version %d type %d flags %#x",
				e.Type, pos, frame[12], frame[13], frame[14:16])
		}
		switch body := frame[batchOffset:]; e.Type {
		case EntryBatch:
			if !bytes.Equal(e.Batch, body) || e.Offset != 0 {
				t.Fatalf("batch at %+v is not the file's bytes", pos)
			}
		case EntryTruncation:
			if len(body) != 8 || e.Offset < 0 || uint64(e.Offset) != binary.LittleEndian.Uint64(body) || e.Batch != nil {
				t.Fatalf("truncation at %+v to %d, body %x", pos, e.Offset, body)
			}
		default:
			t.Fatalf("entry of unknown type %d at %+v yielded", e.Type, pos)
		}
		salt := le.Uint64(file[24:])
		if le.Uint32(frame) != uint32(salt)^0x1F57A6C3 || le.Uint32(frame[4:]) != uint32(entryPrefixSize+pos.Len) {
			t.Fatalf("entry at %+v has a bad magic or length", pos)
		}
		seeded := le.AppendUint64(le.AppendUint64(nil, salt), uint64(frameOff))
		seeded = append(append(seeded, frame[:8]...), frame[12:]...)
		if crc32.Checksum(seeded, table) != le.Uint32(frame[8:]) {
			t.Fatalf("entry at %+v yielded with a bad checksum", pos)
		}
		if !bytes.Equal(tp.TopicID[:], frame[16:32]) || tp.Partition != int32(le.Uint32(frame[32:])) {
			t.Fatalf("topic partition at %+v is not the file's", pos)
		}
		next = alignUp(end)
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("scan: %v", err)
		}
		return
	}
	if res.headerReason != "" {
		if next != segHeaderSize {
			t.Fatal("entries yielded from a segment with a bad header")
		}
		return
	}
	if res.validEnd != next || res.validEnd > alignUp(size) {
		t.Fatalf("validEnd %d, want %d (size %d)", res.validEnd, next, size)
	}
	prev := int64(segHeaderSize)
	for _, c := range res.corrupt {
		if c.off < prev || c.end <= c.off || c.end > size || c.reason == "" {
			t.Fatalf("bad corrupt range %+v after %d (size %d)", c, prev, size)
		}
		prev = c.end
	}
	if res.validEnd < size && res.tailReason == "" {
		t.Fatal("trailing bytes without a reason")
	}
}

func TestDecodeSeeds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      []byte
		entries   int
		corrupt   int
		tornTail  bool
		badHeader bool
	}{
		{name: "empty", file: nil, badHeader: true},
		{name: "valid", file: segmentWith(fuzzSalt, "a", "bb", "ccc"), entries: 3},
		{name: "valid then garbage", file: append(segmentWith(fuzzSalt, "a", "bb"), "junk"...), entries: 2, tornTail: true},
		{name: "garbage between", file: segmentWith(fuzzSalt, "a", []byte("12345678abcdefgh"), "b"), entries: 2, corrupt: 1},
		{name: "wrong salt", file: append(appendSegHeader(nil, 1, 1), segmentWith(2, "a")[segHeaderSize:]...), tornTail: true},
		{name: "truncations", file: segmentWith(fuzzSalt, truncTo(0), "a", truncTo(5), truncTo(1<<62)), entries: 4},
		{name: "truncation after garbage", file: segmentWith(fuzzSalt, "a", []byte("12345678"), truncTo(3)), entries: 2, corrupt: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			res, err := scanSegment(bytes.NewReader(tc.file), int64(len(tc.file)), 1, func(Entry) error {
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if (res.headerReason != "") != tc.badHeader || n != tc.entries || len(res.corrupt) != tc.corrupt ||
				(res.validEnd < int64(len(tc.file))) != tc.tornTail {
				t.Fatalf("entries %d, result %+v", n, res)
			}
			checkDecode(t, tc.file)
		})
	}
}

type countingReader struct {
	r    *bytes.Reader
	read int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.read += int64(n)
	return n, err
}

// TestResyncIsLinearInPlantedHeaders: a torn tail full of frame-header
// images with huge lengths (what a producer could put in a record) must not
// make recovery read each candidate's claimed length.
func TestResyncIsLinearInPlantedHeaders(t *testing.T) {
	planted := make([]byte, 4) // batch bytes start 4 bytes off the 8-byte grid
	for len(planted) < 2<<20 {
		// The fixed part of the magic, and the magic of a guessed salt.
		for _, magic := range []uint32{frameMagicBase, frameMagic(0)} {
			planted = le.AppendUint32(planted, magic)
			planted = le.AppendUint32(planted, 64<<10)
		}
	}
	file := segmentWith(fuzzSalt, "good", string(planted))
	file = file[:len(file)-100] // tear the frame holding the planted bytes
	cr := &countingReader{r: bytes.NewReader(file)}
	n := 0
	res, err := scanSegment(cr, int64(len(file)), 1, func(Entry) error { n++; return nil })
	if err != nil || n != 1 || res.tailReason == "" {
		t.Fatalf("scan: %d entries, %+v, %v", n, res, err)
	}
	if cr.read > 2*int64(len(file)) || res.checksummed > 2*int64(len(file)) {
		t.Fatalf("scanning a %d-byte segment read %d bytes and checksummed %d", len(file), cr.read, res.checksummed)
	}
}
