package broker

import (
	"encoding/binary"
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
)

// eachStoredRecord decodes a stored batch's records, inflating a copy of
// compressed ones under limit (the topic's inflateLimit; the stored bytes
// are untouched), and calls fn with each record, its offset and its
// timestamp until fn returns false. The record passed to fn is reused. It
// is for cold paths such as ListOffsets by timestamp and the offsets
// replay, never for produce or fetch.
func eachStoredRecord(batch []byte, limit int, fn func(r *kmsg.Record, offset, timestamp int64) bool) error {
	if len(batch) < batchHeaderLen {
		return errors.New("broker: short record batch")
	}
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	raw, err := inflate.Records(nil, int(h.Attributes&attrCompressionMask), batch[batchHeaderLen:], limit)
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
		ts := h.FirstTimestamp + rec.TimestampDelta64
		if h.Attributes&attrTimestampType != 0 {
			ts = h.MaxTimestamp // LogAppendTime: every record carries the batch's
		}
		if !fn(&rec, base+int64(rec.OffsetDelta), ts) {
			return nil
		}
	}
	return nil
}

// forEachRecord calls fn with each record's offset and timestamp until fn
// returns false (eachStoredRecord).
func forEachRecord(batch []byte, limit int, fn func(offset, timestamp int64) bool) error {
	return eachStoredRecord(batch, limit, func(_ *kmsg.Record, off, ts int64) bool { return fn(off, ts) })
}
