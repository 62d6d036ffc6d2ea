package tier2

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// EachBatchRecord decodes the records of stored batches: b holds whole
// batches back to back, as segment reads return them. Each batch is
// CRC-checked, control batches (transaction markers) are skipped, and fn
// gets every data record with its offset and timestamp (LogAppendTime
// batches give every record the batch's max timestamp). Compressed records
// are inflated into a copy of at most limit bytes (the topic's
// inflate.Limit); a batch past it is an error. The record passed to fn is
// reused: copy what outlives the call. For the indexer and search, never
// for produce or fetch.
func EachBatchRecord(b []byte, limit int, fn func(r *kmsg.Record, offset, timestamp int64)) error {
	for len(b) > 0 {
		_, l, ok := parseBatchPrefix(b)
		if !ok || l > int64(len(b)) {
			return fmt.Errorf("%w: truncated or malformed batch", ErrCorrupt)
		}
		batch := b[:l]
		b = b[l:]
		if l < batchHeaderLen {
			return fmt.Errorf("%w: short batch", ErrCorrupt)
		}
		if _, err := checkBatch(batch); err != nil {
			return err
		}
		if binary.BigEndian.Uint16(batch[bOffAttributes:])&0x20 != 0 {
			continue // control batch
		}
		if err := eachRecord(batch, limit, fn); err != nil {
			return err
		}
	}
	return nil
}
