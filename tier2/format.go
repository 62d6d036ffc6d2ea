package tier2

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"
)

// Errors returned by the package.
var (
	// ErrCorrupt marks a segment, index or checkpoint that failed a check.
	ErrCorrupt = errors.New("tier2: corrupt")
	// ErrUnsupported marks a verified file with a version this release does
	// not know.
	ErrUnsupported = errors.New("tier2: unsupported format")
	// ErrRemoved is returned by reads of a segment that has been deleted.
	ErrRemoved = errors.New("tier2: segment removed")
)

// IndexInterval is the log bytes between sparse index entries.
const IndexInterval = 4 << 10

const (
	idxMagic       = "CHRNKIDX"
	ckpMagic       = "CHRNKCKP"
	formatVersion  = 1
	kindOffset     = 1
	kindTime       = 2
	idxHeaderSize  = 80
	offEntrySize   = 8
	timeEntrySize  = 16
	ckpHeaderSize  = 20
	kindLogStart   = 1
	kindProducers  = 2
	kindEpochs     = 3
	maxCkpPayload  = 64 << 20
	nameDigits     = 20
	logSuffix      = ".log"
	indexSuffix    = ".index"
	timeSuffix     = ".timeindex"
	archivedSuffix = ".archived"
	tmpSuffix      = ".tmp"
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Kafka record batch v2 header fields used here (big-endian).
const (
	bOffBase            = 0
	bOffLength          = 8
	bOffCRC             = 17
	bOffAttributes      = 21
	attrTransactional   = 0x10 // batch attributes: a transaction's records
	attrControl         = 0x20 // batch attributes: a transaction marker
	bOffLastOffsetDelta = 23
	bOffFirstTimestamp  = 27
	bOffMaxTimestamp    = 35
	bOffProducerID      = 43
	bOffNumRecords      = 57
	batchHeaderLen      = 61
	// batchPrefix is what a header walk needs: base offset and length.
	batchPrefix = 12
	// maxBatchLen bounds a batch length read from disk before allocating.
	maxBatchLen = 1 << 30
)

func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

func parseSegmentName(name, suffix string) (int64, bool) {
	s, ok := strings.CutSuffix(name, suffix)
	if !ok || len(s) != nameDigits {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// indexHeader is the common header of .index and .timeindex.
type indexHeader struct {
	kind     uint16
	base     int64
	next     int64
	logSize  int64
	maxTs    int64
	maxTsPos int64
	lastPos  int64
	count    uint32
	ecrc     uint32
}

func (h *indexHeader) append(dst []byte) []byte {
	b := make([]byte, idxHeaderSize)
	copy(b, idxMagic)
	binary.LittleEndian.PutUint16(b[8:], formatVersion)
	binary.LittleEndian.PutUint16(b[10:], h.kind)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.base))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.next))
	binary.LittleEndian.PutUint64(b[32:], uint64(h.logSize))
	binary.LittleEndian.PutUint64(b[40:], uint64(h.maxTs))
	binary.LittleEndian.PutUint64(b[48:], uint64(h.maxTsPos))
	binary.LittleEndian.PutUint64(b[56:], uint64(h.lastPos))
	binary.LittleEndian.PutUint32(b[72:], h.count)
	binary.LittleEndian.PutUint32(b[76:], h.ecrc)
	binary.LittleEndian.PutUint32(b[12:], headerCRC(b))
	return append(dst, b...)
}

func headerCRC(b []byte) uint32 {
	c := crc32.Update(0, crc32c, b[:12])
	return crc32.Update(c, crc32c, b[16:idxHeaderSize])
}

func parseIndexHeader(b []byte) (indexHeader, error) {
	var h indexHeader
	if len(b) < idxHeaderSize {
		return h, fmt.Errorf("%w: index header is %d bytes", ErrCorrupt, len(b))
	}
	if string(b[:8]) != idxMagic {
		return h, fmt.Errorf("%w: bad index magic", ErrCorrupt)
	}
	if binary.LittleEndian.Uint32(b[12:]) != headerCRC(b) {
		return h, fmt.Errorf("%w: index header crc mismatch", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return h, fmt.Errorf("%w: index version %d", ErrUnsupported, v)
	}
	h = indexHeader{
		kind:     binary.LittleEndian.Uint16(b[10:]),
		base:     int64(binary.LittleEndian.Uint64(b[16:])),
		next:     int64(binary.LittleEndian.Uint64(b[24:])),
		logSize:  int64(binary.LittleEndian.Uint64(b[32:])),
		maxTs:    int64(binary.LittleEndian.Uint64(b[40:])),
		maxTsPos: int64(binary.LittleEndian.Uint64(b[48:])),
		lastPos:  int64(binary.LittleEndian.Uint64(b[56:])),
		count:    binary.LittleEndian.Uint32(b[72:]),
		ecrc:     binary.LittleEndian.Uint32(b[76:]),
	}
	if h.next < h.base || h.logSize < 0 || h.lastPos >= h.logSize || h.maxTsPos > h.lastPos {
		return h, fmt.Errorf("%w: inconsistent index header", ErrCorrupt)
	}
	return h, nil
}

type offEntry struct {
	rel uint32 // batch base offset - segment base
	pos uint32
}

type timeEntry struct {
	ts  int64
	rel uint32
	pos uint32
}

func appendOffEntries(dst []byte, es []offEntry) []byte {
	for _, e := range es {
		dst = binary.LittleEndian.AppendUint32(dst, e.rel)
		dst = binary.LittleEndian.AppendUint32(dst, e.pos)
	}
	return dst
}

func appendTimeEntries(dst []byte, es []timeEntry) []byte {
	for _, e := range es {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.ts))
		dst = binary.LittleEndian.AppendUint32(dst, e.rel)
		dst = binary.LittleEndian.AppendUint32(dst, e.pos)
	}
	return dst
}

func parseOffEntries(b []byte) []offEntry {
	es := make([]offEntry, len(b)/offEntrySize)
	for i := range es {
		e := b[i*offEntrySize:]
		es[i] = offEntry{rel: binary.LittleEndian.Uint32(e), pos: binary.LittleEndian.Uint32(e[4:])}
	}
	return es
}

func parseTimeEntries(b []byte) []timeEntry {
	es := make([]timeEntry, len(b)/timeEntrySize)
	for i := range es {
		e := b[i*timeEntrySize:]
		es[i] = timeEntry{ts: int64(binary.LittleEndian.Uint64(e)), rel: binary.LittleEndian.Uint32(e[8:]), pos: binary.LittleEndian.Uint32(e[12:])}
	}
	return es
}

// batchInfo is what the package reads from a batch header.
type batchInfo struct {
	base      int64
	length    int64 // whole batch, 12 + the length field
	lastDelta int32
	maxTs     int64
}

func (b batchInfo) last() int64 { return b.base + int64(b.lastDelta) }

// parseBatchPrefix reads base offset and total length.
func parseBatchPrefix(b []byte) (base, length int64, ok bool) {
	if len(b) < batchPrefix {
		return 0, 0, false
	}
	base = int64(binary.BigEndian.Uint64(b[bOffBase:]))
	l := int64(int32(binary.BigEndian.Uint32(b[bOffLength:])))
	if l < batchHeaderLen-batchPrefix || l > maxBatchLen {
		return 0, 0, false
	}
	return base, l + batchPrefix, true
}

// checkBatch verifies a whole batch (length and CRC) and returns its info.
func checkBatch(b []byte) (batchInfo, error) {
	base, length, ok := parseBatchPrefix(b)
	if !ok || length != int64(len(b)) {
		return batchInfo{}, fmt.Errorf("%w: bad batch length", ErrCorrupt)
	}
	if b[16] != 2 {
		return batchInfo{}, fmt.Errorf("%w: batch magic %d", ErrCorrupt, b[16])
	}
	if binary.BigEndian.Uint32(b[bOffCRC:]) != crc32.Checksum(b[bOffAttributes:], crc32c) {
		return batchInfo{}, fmt.Errorf("%w: batch crc mismatch at offset %d", ErrCorrupt, base)
	}
	return headerInfo(b), nil
}

// headerInfo reads a batch header at least batchHeaderLen long.
func headerInfo(b []byte) batchInfo {
	return batchInfo{
		base:      int64(binary.BigEndian.Uint64(b[bOffBase:])),
		length:    int64(int32(binary.BigEndian.Uint32(b[bOffLength:]))) + batchPrefix,
		lastDelta: int32(binary.BigEndian.Uint32(b[bOffLastOffsetDelta:])),
		maxTs:     int64(binary.BigEndian.Uint64(b[bOffMaxTimestamp:])),
	}
}

// appendCheckpoint frames a small checkpoint payload.
func appendCheckpoint(dst []byte, kind uint16, payload []byte) []byte {
	h := make([]byte, ckpHeaderSize)
	copy(h, ckpMagic)
	binary.LittleEndian.PutUint16(h[8:], formatVersion)
	binary.LittleEndian.PutUint16(h[10:], kind)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(payload, crc32c))
	binary.LittleEndian.PutUint32(h[16:], uint32(len(payload)))
	return append(append(dst, h...), payload...)
}

func parseCheckpoint(b []byte, kind uint16) ([]byte, error) {
	if len(b) < ckpHeaderSize || string(b[:8]) != ckpMagic {
		return nil, fmt.Errorf("%w: bad checkpoint header", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return nil, fmt.Errorf("%w: checkpoint version %d", ErrUnsupported, v)
	}
	if k := binary.LittleEndian.Uint16(b[10:]); k != kind {
		return nil, fmt.Errorf("%w: checkpoint kind %d, want %d", ErrCorrupt, k, kind)
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if int64(n) != int64(len(b)-ckpHeaderSize) {
		return nil, fmt.Errorf("%w: checkpoint length", ErrCorrupt)
	}
	p := b[ckpHeaderSize:]
	if binary.LittleEndian.Uint32(b[12:]) != crc32.Checksum(p, crc32c) {
		return nil, fmt.Errorf("%w: checkpoint crc mismatch", ErrCorrupt)
	}
	return p, nil
}

// PartitionDir is a partition's directory under root (<data>/segments).
func PartitionDir(root string, topicID [16]byte, partition int32) string {
	return filepath.Join(root, fmt.Sprintf("%x-%d", topicID[:], partition))
}

// ParsePartitionDir reverses PartitionDir's last element.
func ParsePartitionDir(name string) (topicID [16]byte, partition int32, ok bool) {
	id, p, found := strings.Cut(name, "-")
	if !found || len(id) != 32 {
		return topicID, 0, false
	}
	if _, err := hex.Decode(topicID[:], []byte(id)); err != nil {
		return topicID, 0, false
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return topicID, int32(n), err == nil && n >= 0
}
