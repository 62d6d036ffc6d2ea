package broker

import (
	"encoding/binary"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var decompressor = kgo.DefaultDecompressor()

// forEachRecord decodes a stored batch's records (decompressing a copy; the
// stored bytes are untouched) and calls fn with each record's offset and
// timestamp until fn returns false. It is for cold paths such as
// ListOffsets by timestamp, never for produce or fetch.
func forEachRecord(batch []byte, fn func(offset, timestamp int64) bool) error {
	if len(batch) < batchHeaderLen {
		return errors.New("broker: short record batch")
	}
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	if h.Attributes&attrTimestampType != 0 {
		// LogAppendTime: every record carries the batch's max timestamp.
		for i := int32(0); i < h.NumRecords; i++ {
			if !fn(base+int64(i), h.MaxTimestamp) {
				return nil
			}
		}
		return nil
	}
	raw, err := decompressor.Decompress(batch[batchHeaderLen:], kgo.CompressionCodecType(h.Attributes&attrCompressionMask))
	if err != nil {
		return err
	}
	var rec kmsg.Record
	for i := int32(0); i < h.NumRecords && len(raw) > 0; i++ {
		l, n := binary.Varint(raw)
		if n <= 0 || l < 0 || int64(len(raw)-n) < l {
			return errors.New("broker: malformed record in batch")
		}
		if err := rec.ReadFrom(raw[:n+int(l)]); err != nil {
			return err
		}
		raw = raw[n+int(l):]
		if !fn(base+int64(rec.OffsetDelta), h.FirstTimestamp+rec.TimestampDelta64) {
			return nil
		}
	}
	return nil
}
