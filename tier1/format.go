package tier1

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Layout constants; doc.go is the specification.
const (
	segHeaderSize   = 32
	segMagic        = "CHRNKWAL"
	segVersion      = 1
	frameHeaderSize = 16
	frameMagicBase  = 0x1F57A6C3
	frameVersion    = 1
	entryTypeBatch  = 1
	entryTypeTrunc  = 2
	entryPrefixSize = 20                                // topic ID + partition
	batchOffset     = frameHeaderSize + entryPrefixSize // from frame start to the body (a batch's bytes)
	truncBodySize   = 8                                 // a truncation's body: the offset, i64
	frameAlign      = 8
	maxPayload      = 1 << 30
	segSuffix       = ".wal"
	segNameDigits   = 20
)

// MaxBatchBytes is the largest batch Append accepts.
const MaxBatchBytes = maxPayload - entryPrefixSize

var (
	le         = binary.LittleEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

func segmentName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, seq, segSuffix)
}

// parseSegmentName accepts exactly the names segmentName produces.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != segNameDigits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

func alignUp(n int64) int64 { return (n + frameAlign - 1) &^ (frameAlign - 1) }

// frameSize is the space an entry with a body of n bytes takes in a
// segment, padding included.
func frameSize(n int) int64 { return alignUp(int64(batchOffset + n)) }

func appendSegHeader(b []byte, seq, salt uint64) []byte {
	start := len(b)
	b = append(b, segMagic...)
	b = le.AppendUint16(b, segVersion)
	b = le.AppendUint16(b, 0) // flags
	b = le.AppendUint32(b, 0) // crc, filled below
	b = le.AppendUint64(b, seq)
	b = le.AppendUint64(b, salt)
	h := b[start:]
	le.PutUint32(h[12:], segHeaderCRC(h))
	return b
}

func segHeaderCRC(h []byte) uint32 {
	return crc32.Update(crc32.Checksum(h[:12], castagnoli), castagnoli, h[16:segHeaderSize])
}

// decodeSegHeader returns the segment's salt, or why the header cannot be
// trusted (reason), or ErrUnsupported for a verified header of an unknown
// version.
func decodeSegHeader(h []byte, seq uint64) (salt uint64, reason string, err error) {
	switch {
	case len(h) < segHeaderSize:
		return 0, fmt.Sprintf("short segment header (%d bytes)", len(h)), nil
	case string(h[:8]) != segMagic:
		return 0, "bad segment magic", nil
	case le.Uint32(h[12:]) != segHeaderCRC(h):
		return 0, "segment header checksum mismatch", nil
	case le.Uint16(h[8:]) != segVersion || le.Uint16(h[10:]) != 0:
		return 0, "", fmt.Errorf("%w: segment %d has version %d flags %#x",
			ErrUnsupported, seq, le.Uint16(h[8:]), le.Uint16(h[10:]))
	case le.Uint64(h[16:]) != seq:
		return 0, fmt.Sprintf("segment header says sequence %d", le.Uint64(h[16:])), nil
	}
	return le.Uint64(h[24:]), "", nil
}

// frameMagic is the magic of every frame in the segment with this salt.
func frameMagic(salt uint64) uint32 { return uint32(salt) ^ frameMagicBase }

// appendFrame encodes one entry of type typ whose frame starts at segment
// offset off, padding included. body is copied exactly once, into b.
func appendFrame(b []byte, salt uint64, off int64, typ byte, tp TopicPartition, body []byte) []byte {
	start := len(b)
	b = le.AppendUint32(b, frameMagic(salt))
	b = le.AppendUint32(b, uint32(entryPrefixSize+len(body)))
	b = le.AppendUint32(b, 0) // crc, filled below
	b = append(b, frameVersion, typ, 0, 0)
	b = append(b, tp.TopicID[:]...)
	b = le.AppendUint32(b, uint32(tp.Partition))
	b = append(b, body...)
	f := b[start:]
	le.PutUint32(f[8:], frameCRC(salt, off, f))
	for pad := alignUp(int64(len(f))) - int64(len(f)); pad > 0; pad-- {
		b = append(b, 0)
	}
	return b
}

// frameCRC checksums an unpadded frame (header and payload) that starts at
// segment offset off; the crc field itself is skipped.
func frameCRC(salt uint64, off int64, frame []byte) uint32 {
	c := crcUint64(crcUint64(0, salt), uint64(off))
	c = crc32.Update(c, castagnoli, frame[:8])
	return crc32.Update(c, castagnoli, frame[12:])
}

// crcUint64 is crc32.Update over v's 8 little-endian bytes, without the
// heap allocation a slice of a local array costs through crc32.Update.
func crcUint64(crc uint32, v uint64) uint32 {
	crc = ^crc
	for range 8 {
		crc = castagnoli[byte(crc)^byte(v)] ^ crc>>8
		v >>= 8
	}
	return ^crc
}

// frameLen validates the parts of a frame header that can be checked
// before reading the payload: magic and a length that fits in avail bytes
// (counted from the frame start). It returns the unpadded frame length.
func frameLen(h []byte, salt uint64, avail int64) (int64, string) {
	if le.Uint32(h) != frameMagic(salt) {
		return 0, "bad frame magic"
	}
	n := int64(le.Uint32(h[4:]))
	if n < entryPrefixSize || n > maxPayload || n > avail-frameHeaderSize {
		return 0, "bad frame length"
	}
	return frameHeaderSize + n, ""
}

// appendTruncBody appends a truncation's body: offset, little-endian.
func appendTruncBody(b []byte, offset int64) []byte { return le.AppendUint64(b, uint64(offset)) }

// checkFrame verifies a complete unpadded frame read from offset off. A
// frame whose checksum fails yields a reason; a verified frame this release
// cannot interpret (unknown version, flags or type, or a truncation that
// breaks doc.go's rules) yields ErrUnsupported.
func checkFrame(salt uint64, off int64, f []byte) (reason string, err error) {
	if le.Uint32(f[8:]) != frameCRC(salt, off, f) {
		return "frame checksum mismatch", nil
	}
	if f[12] != frameVersion || f[14] != 0 || f[15] != 0 {
		return "", fmt.Errorf("%w: frame version %d type %d flags %#x at offset %d",
			ErrUnsupported, f[12], f[13], le.Uint16(f[14:]), off)
	}
	switch f[13] {
	case entryTypeBatch:
	case entryTypeTrunc:
		if body := f[batchOffset:]; len(body) != truncBodySize {
			return "", fmt.Errorf("%w: truncation entry with a %d-byte body at offset %d",
				ErrUnsupported, len(body), off)
		} else if o := int64(le.Uint64(body)); o < 0 {
			return "", fmt.Errorf("%w: truncation to negative offset %d at offset %d",
				ErrUnsupported, o, off)
		}
	default:
		return "", fmt.Errorf("%w: entry type %d at offset %d", ErrUnsupported, f[13], off)
	}
	return "", nil
}

// decodeEntry decodes a frame that checkFrame verified at offset off of
// segment seq. A batch's bytes alias f.
func decodeEntry(f []byte, seq uint64, off int64) Entry {
	body := f[batchOffset:]
	e := Entry{Type: EntryType(f[13])}
	copy(e.TP.TopicID[:], f[frameHeaderSize:])
	e.TP.Partition = int32(le.Uint32(f[frameHeaderSize+16:]))
	e.Pos = Position{Segment: seq, Offset: off + batchOffset, Len: int32(len(body))}
	if e.Type == EntryTruncation {
		e.Offset = int64(le.Uint64(body))
	} else {
		e.Batch = body
	}
	return e
}
