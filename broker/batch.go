package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Record batch v2 header layout (Kafka's DefaultRecordBatch). Offsets are
// byte positions in the batch.
const (
	offBaseOffset      = 0  // int64, assigned by the broker
	offBatchLength     = 8  // int32, bytes after this field
	offLeaderEpoch     = 12 // int32, set by the broker, not covered by the CRC
	offMagic           = 16 // int8
	offCRC             = 17 // uint32 CRC32C of attributes..end
	offAttributes      = 21 // int16
	offLastOffsetDelta = 23 // int32
	offFirstTimestamp  = 27 // int64
	offMaxTimestamp    = 35 // int64
	offProducerID      = 43 // int64
	offProducerEpoch   = 51 // int16
	offBaseSequence    = 53 // int32
	offNumRecords      = 57 // int32
	batchHeaderLen     = 61

	attrCompressionMask = 0x07
	attrTimestampType   = 0x08 // 1 = LogAppendTime
	attrTransactional   = 0x10
	attrControl         = 0x20
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// batchHeader is the part of a record batch the broker reads. It never
// decompresses records: batches are stored and served exactly as sent.
type batchHeader struct {
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
	Attributes      int16
}

func (h *batchHeader) lastSequence() int32 {
	if h.BaseSequence < 0 {
		return -1
	}
	// Sequences wrap at MaxInt32 (KIP-98).
	return int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (1 << 31))
}

// errBatch carries the Kafka error a malformed batch is answered with.
type errBatch struct {
	code *kerr.Error
	msg  string
}

func (e *errBatch) Error() string { return e.code.Message + ": " + e.msg }

func batchErr(code *kerr.Error, format string, args ...any) error {
	return &errBatch{code: code, msg: fmt.Sprintf(format, args...)}
}

// kafkaErr maps an error to its Kafka error code.
func kafkaErr(err error) *kerr.Error {
	var be *errBatch
	if errors.As(err, &be) {
		return be.code
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke
	}
	return kerr.KafkaStorageError
}

// parseProduceBatch validates the records of one partition in a produce
// request: exactly one v2 batch, consistent lengths, a valid CRC, a size
// within maxBytes. It returns the header; the caller assigns the offset.
func parseProduceBatch(b []byte, maxBytes int32) (batchHeader, error) {
	var h batchHeader
	if len(b) < batchHeaderLen {
		return h, batchErr(kerr.CorruptMessage, "record batch of %d bytes is shorter than its %d-byte header", len(b), batchHeaderLen)
	}
	if m := int8(b[offMagic]); m != 2 {
		return h, batchErr(kerr.UnsupportedForMessageFormat, "record batch magic %d; only magic 2 (Kafka 0.11+) is supported", m)
	}
	length := int64(int32(binary.BigEndian.Uint32(b[offBatchLength:])))
	if length+12 != int64(len(b)) {
		if length+12 < int64(len(b)) && length+12 >= batchHeaderLen {
			return h, batchErr(kerr.InvalidRecord, "produce request holds more than one record batch for a partition")
		}
		return h, batchErr(kerr.CorruptMessage, "record batch length %d does not match the %d bytes sent", length, len(b)-12)
	}
	if int64(len(b)) > int64(maxBytes) {
		return h, batchErr(kerr.MessageTooLarge, "record batch of %d bytes exceeds max.message.bytes %d", len(b), maxBytes)
	}
	if crc := binary.BigEndian.Uint32(b[offCRC:]); crc != crc32.Checksum(b[offAttributes:], crc32c) {
		return h, batchErr(kerr.CorruptMessage, "record batch CRC mismatch")
	}
	h = readBatchHeader(b)
	switch {
	case h.Attributes&attrControl != 0:
		return h, batchErr(kerr.InvalidRecord, "clients may not produce control batches")
	case h.Attributes&attrTransactional != 0 && h.ProducerID < 0:
		return h, batchErr(kerr.InvalidRecord, "transactional batch has no producer ID")
	case h.Attributes&attrCompressionMask > 4:
		return h, batchErr(kerr.CorruptMessage, "unknown compression codec %d", h.Attributes&attrCompressionMask)
	case h.NumRecords <= 0 || h.LastOffsetDelta != h.NumRecords-1:
		return h, batchErr(kerr.InvalidRecord, "record count %d does not match last offset delta %d", h.NumRecords, h.LastOffsetDelta)
	case h.ProducerID >= 0 && h.BaseSequence < 0:
		return h, batchErr(kerr.InvalidRecord, "idempotent batch from producer %d has no base sequence", h.ProducerID)
	}
	return h, nil
}

// readBatchHeader reads the fixed header fields of a batch at least
// batchHeaderLen long.
func readBatchHeader(b []byte) batchHeader {
	return batchHeader{
		Attributes:      int16(binary.BigEndian.Uint16(b[offAttributes:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
		FirstTimestamp:  int64(binary.BigEndian.Uint64(b[offFirstTimestamp:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
		ProducerID:      int64(binary.BigEndian.Uint64(b[offProducerID:])),
		ProducerEpoch:   int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
		BaseSequence:    int32(binary.BigEndian.Uint32(b[offBaseSequence:])),
		NumRecords:      int32(binary.BigEndian.Uint32(b[offNumRecords:])),
	}
}

func batchBaseOffset(b []byte) int64 { return int64(binary.BigEndian.Uint64(b[offBaseOffset:])) }

// setBaseOffset writes the broker-assigned offset; the CRC does not cover it.
func setBaseOffset(b []byte, off int64) { binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off)) }

// setLogAppendTime stamps the batch with the broker's clock, as Kafka does
// for message.timestamp.type=LogAppendTime, and recomputes the CRC.
func setLogAppendTime(b []byte, nowMillis int64) {
	attrs := binary.BigEndian.Uint16(b[offAttributes:]) | attrTimestampType
	binary.BigEndian.PutUint16(b[offAttributes:], attrs)
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(nowMillis))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
}
