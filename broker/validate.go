package broker

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/internal/inflate"
)

// Record validation, Kafka's LogValidator rules. parseProduceBatch and
// parseReplicaBatch check a batch's frame (length, magic, CRC); this file
// checks what the frame holds: every record is decoded (a compressed
// batch's records are inflated into a scratch copy, under the topic's
// inflate bound) and held to the header. The batch itself is stored as
// sent: never recompressed, at most its max timestamp corrected.
//
// Error codes, as Kafka answers them: a batch whose compressed records do
// not decode is CORRUPT_MESSAGE (the frame is damaged); a record that does
// not parse, or records that disagree with the header (count, offset
// deltas), are INVALID_RECORD, as Kafka's record reader reports them;
// records that inflate past the bound are MESSAGE_TOO_LARGE (on which the
// Java producer splits the batch and retries); a timestamp out of bounds
// is INVALID_TIMESTAMP.

// batchRules are what a batch's records are held to.
type batchRules struct {
	// inflateLimit bounds a compressed batch's records once inflated
	// (inflate.Limit of the topic's max.message.bytes).
	inflateLimit int
	// client: a producer's batch. Its offset deltas must be exactly
	// 0..NumRecords-1 and its timestamps within the bounds below. A batch
	// fetched from the leader may instead have lost records to compaction,
	// which keeps the survivors' offset deltas and the last offset delta.
	client bool
	// logAppendTime: the topic stamps batches with the broker's clock, so
	// producer timestamps are neither checked nor kept.
	logAppendTime bool
	// KIP-937 bounds on a client CreateTime record's timestamp: within
	// [now-beforeMax, now+afterMax].
	now, beforeMax, afterMax int64
}

// minRecordBytes is the smallest encoded record: a length and six one-byte
// fields (attributes, timestamp delta, offset delta, null key, null value,
// no headers).
const minRecordBytes = 7

// inflateBufs holds scratch buffers for inflated records. Buffers larger
// than maxPooledInflate are dropped rather than kept for the next batch.
var inflateBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledInflate = 8 << 20

// validateRecords decodes b's records and checks them against h (read from
// b by parseProduceBatch or parseReplicaBatch). For a client CreateTime
// batch whose header max timestamp is not its largest record timestamp,
// the header is corrected in place (and the CRC recomputed), as Kafka does;
// h.MaxTimestamp follows. Anything else wrong is an error carrying the
// Kafka error code it is answered with.
func validateRecords(b []byte, h *batchHeader, r *batchRules) error {
	if h.LastOffsetDelta < 0 || h.NumRecords <= 0 || h.NumRecords-1 > h.LastOffsetDelta {
		return batchErr(kerr.InvalidRecord, "record count %d does not fit last offset delta %d", h.NumRecords, h.LastOffsetDelta)
	}
	if int64(h.LastOffsetDelta) >= int64(r.inflateLimit/minRecordBytes) {
		// More offsets than records of minRecordBytes fit in the bound: no
		// batch the leader accepted ever spanned them.
		return batchErr(kerr.InvalidRecord, "last offset delta %d spans more records than a batch of at most %d bytes holds", h.LastOffsetDelta, r.inflateLimit)
	}
	if h.Attributes&attrControl != 0 && h.NumRecords != 1 {
		return batchErr(kerr.InvalidRecord, "control batch holds %d records; it holds one", h.NumRecords)
	}
	if r.client && h.Attributes&attrTimestampType != 0 {
		return batchErr(kerr.InvalidTimestamp, "producers may not set the LogAppendTime timestamp type")
	}
	raw := b[batchHeaderLen:]
	if codec := int(h.Attributes & attrCompressionMask); codec != inflate.None {
		bp := inflateBufs.Get().(*[]byte)
		defer func() {
			if cap(*bp) <= maxPooledInflate {
				inflateBufs.Put(bp)
			}
		}()
		var err error
		raw, err = inflate.Records(*bp, codec, raw, r.inflateLimit)
		switch {
		case errors.Is(err, inflate.ErrTooLarge):
			return batchErr(kerr.MessageTooLarge, "records inflate past %d bytes (%d times max.message.bytes)", r.inflateLimit, inflate.Factor)
		case err != nil:
			return batchErr(kerr.CorruptMessage, "compressed records do not decode: %v", err)
		}
		if cap(raw) > 0 {
			*bp = raw[:0]
		}
	}
	maxTs, err := walkRecords(raw, h, r)
	if err != nil {
		return err
	}
	if h.Attributes&attrTimestampType != 0 || r.logAppendTime || maxTs == h.MaxTimestamp {
		return nil
	}
	if !r.client {
		return batchErr(kerr.InvalidRecord, "max timestamp %d is not the largest record timestamp %d", h.MaxTimestamp, maxTs)
	}
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(maxTs))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	h.MaxTimestamp = maxTs
	return nil
}

// walkRecords walks raw, the records of a batch with header h, in place:
// no allocation, no copy. It returns the largest record timestamp.
func walkRecords(raw []byte, h *batchHeader, r *batchRules) (int64, error) {
	maxTs := int64(math.MinInt64)
	prevDelta := int64(-1)
	checkTs := r.client && !r.logAppendTime
	lo, hi := satAdd(r.now, -r.beforeMax), satAdd(r.now, r.afterMax)
	var tsErr error
	var i int32
	for ; len(raw) > 0; i++ {
		if i == h.NumRecords {
			return 0, batchErr(kerr.InvalidRecord, "records continue past the %d the header counts", h.NumRecords)
		}
		length, n := varint(raw, 0)
		if n <= 0 || length < minRecordBytes-1 || length > int64(len(raw)-n) {
			return 0, batchErr(kerr.InvalidRecord, "record %d: length %d does not fit the %d bytes left", i, length, len(raw))
		}
		rec := raw[n : n+int(length)]
		raw = raw[n+int(length):]
		tsDelta, offDelta, err := checkRecord(rec)
		if err != nil {
			return 0, batchErr(kerr.InvalidRecord, "record %d: %s", i, err)
		}
		if r.client && offDelta != int64(i) {
			return 0, batchErr(kerr.InvalidRecord, "record %d has offset delta %d; a producer's records are numbered from 0", i, offDelta)
		}
		if offDelta <= prevDelta || offDelta > int64(h.LastOffsetDelta) {
			return 0, batchErr(kerr.InvalidRecord, "record %d has offset delta %d after %d, with last offset delta %d", i, offDelta, prevDelta, h.LastOffsetDelta)
		}
		prevDelta = offDelta
		ts := h.FirstTimestamp + tsDelta
		maxTs = max(maxTs, ts)
		if checkTs && tsErr == nil && ts != -1 && (ts < lo || ts > hi) {
			// Kafka reports a bad timestamp only when the records are
			// otherwise sound, so keep walking.
			tsErr = batchErr(kerr.InvalidTimestamp, "record %d has timestamp %d, outside [%d, %d] (message.timestamp.before.max.ms, message.timestamp.after.max.ms)",
				i, ts, lo, hi)
		}
	}
	if i != h.NumRecords {
		return 0, batchErr(kerr.InvalidRecord, "the header counts %d records; the batch holds %d", h.NumRecords, i)
	}
	if r.client && prevDelta != int64(h.LastOffsetDelta) {
		return 0, batchErr(kerr.InvalidRecord, "last offset delta %d; the last record's is %d", h.LastOffsetDelta, prevDelta)
	}
	return maxTs, tsErr
}

// satAdd adds without wrapping (the bounds default to math.MaxInt64).
func satAdd(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// recordErr is a record's structural fault; the caller adds the code.
type recordErr string

func (e recordErr) Error() string { return string(e) }

// checkRecord parses one record body (after its length): attributes,
// timestamp delta, offset delta, key, value and headers must use exactly
// its bytes.
func checkRecord(rec []byte) (tsDelta, offDelta int64, err error) {
	p := 1 // attributes: unused in v2 records
	var n int
	if tsDelta, n = varint(rec, p); n <= 0 {
		return 0, 0, recordErr("malformed timestamp delta")
	}
	p += n
	if offDelta, n = varint(rec, p); n <= 0 || offDelta != int64(int32(offDelta)) {
		return 0, 0, recordErr("malformed offset delta")
	}
	p += n
	// Key, then value: a length (-1 for null) and the bytes.
	for i := range 2 {
		l, n := varint(rec, p)
		if n <= 0 || l < -1 || l > int64(len(rec)-p-n) {
			return 0, 0, recordErr([2]string{"malformed key length", "malformed value length"}[i])
		}
		p += n + int(max(l, 0))
	}
	count, n := varint(rec, p)
	// Every header takes at least two bytes.
	if n <= 0 || count < 0 || count > int64(len(rec)-p-n)/2 {
		return 0, 0, recordErr("malformed header count")
	}
	p += n
	for range count {
		kl, n := varint(rec, p)
		if n <= 0 || kl < 0 || kl > int64(len(rec)-p-n) {
			return 0, 0, recordErr("malformed header key length")
		}
		p += n + int(kl)
		vl, n := varint(rec, p)
		if n <= 0 || vl < -1 || vl > int64(len(rec)-p-n) {
			return 0, 0, recordErr("malformed header value length")
		}
		p += n + int(max(vl, 0))
	}
	if p != len(rec) {
		return 0, 0, recordErr("bytes left after the headers")
	}
	return tsDelta, offDelta, nil
}

// varint decodes the zigzag varint at b[p:] as binary.Varint(b[p:]) does
// (n == 0: too short; n < 0: overflow), reading in place: the record walk
// calls it for every field of every record.
func varint(b []byte, p int) (int64, int) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if p+i >= len(b) {
			return 0, 0
		}
		c := b[p+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1)
			}
			x |= uint64(c) << s
			return int64(x>>1) ^ -int64(x&1), i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	if p+binary.MaxVarintLen64 >= len(b) {
		return 0, 0
	}
	return 0, -(binary.MaxVarintLen64 + 1)
}
