package tier2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
)

// Compaction (cleanup.policy=compact) rewrites sealed segments so that only
// the latest record for each key survives, in Kafka's way:
//
//   - A pass maps key hash (128-bit FNV-1a) -> latest offset over a range of
//     records starting where the previous pass stopped, until the map holds
//     its budget of keys (MemoryBytes / keyEntryBytes) or the sealed log
//     ends; the range always ends on a batch boundary.
//   - Every segment that starts before the end of that range is then
//     rewritten: a keyed record in the range, or before it, is dropped when
//     the map holds a later offset for its key. Records without a key are
//     kept. A tombstone (null value) that is the latest for its key is
//     dropped once its timestamp is older than TombstoneBefore.
//   - A batch whose records all survive is copied byte for byte; one that
//     loses some is decoded, and the survivors are re-encoded with the same
//     codec, keeping the base offset, last offset delta, first timestamp,
//     offset and timestamp deltas, producer fields and attributes; its max
//     timestamp is recomputed and a new CRC written. A batch that loses
//     every record is dropped. A segment keeps its base and Next even when
//     it ends up empty.
//   - The rewritten segment is written and renamed over the old one (see
//     doc.go, Writing a segment); readers holding the old one finish on its
//     open file.
//
// Memory is bounded by the key map and one batch at a time. The active
// segment (the WAL) is never touched.

// keyEntryBytes approximates one key map entry's memory.
const keyEntryBytes = 64

// CompactOptions configures Compact.
type CompactOptions struct {
	MemoryBytes     int64 // key map budget per pass
	TombstoneBefore int64 // unix millis: older latest tombstones are dropped
	// InflateLimit bounds a compressed batch's records once inflated (the
	// topic's inflate.Limit); a batch past it fails the compaction. 0
	// means the bound under Kafka's default max.message.bytes.
	InflateLimit int
}

// CompactResult says what Compact did.
type CompactResult struct {
	Segments         []*Segment // the new list, same bases, in order
	Passes           int
	Rewritten        int
	DroppedRecords   int64
	TombstonesKept   int // latest tombstones too young to drop
	RecordsProcessed int64
}

type keyHash [16]byte

func hashKey(k []byte) keyHash {
	h := fnv.New128a()
	h.Write(k)
	var out keyHash
	h.Sum(out[:0])
	return out
}

// Compact compacts segs (a partition's sealed segments in offset order).
// The caller publishes res.Segments and then calls Retire on the old
// segments that were replaced (those not in res.Segments).
func Compact(segs []*Segment, opt CompactOptions) (CompactResult, error) {
	res := CompactResult{Segments: append([]*Segment(nil), segs...)}
	maxKeys := max(opt.MemoryBytes/keyEntryBytes, 1)
	if opt.InflateLimit <= 0 {
		opt.InflateLimit = inflate.Limit(inflate.DefaultMaxMessageBytes)
	}
	if len(segs) == 0 {
		return res, nil
	}
	for _, s := range segs {
		// Rewriting a damaged segment would hide the damage (and drop what
		// lies past it); it is repaired first.
		if d := s.Damage(); d != nil {
			return res, d
		}
	}
	end := segs[len(segs)-1].Next
	for start := segs[0].Base; start < end; {
		res.Passes++
		m := make(map[keyHash]int64)
		mapEnd := end
		full := errors.New("full")
		err := forEachBatch(res.Segments, start, func(batch []byte, h batchInfo) error {
			if binary.BigEndian.Uint16(batch[bOffAttributes:])&attrTransactional != 0 {
				// Transactional records shadow nothing: an aborted
				// one must never replace what was committed before
				// it, and the cleaner does not know which are.
				// Their markers (control batches) are kept as well.
				return nil
			}
			err := eachRecord(batch, opt.InflateLimit, func(r *kmsg.Record, off, ts int64) {
				if r.Key != nil && off >= start {
					m[hashKey(r.Key)] = off
				}
			})
			if err != nil {
				return err
			}
			if int64(len(m)) >= maxKeys {
				mapEnd = h.last() + 1
				return full
			}
			return nil
		})
		if err != nil && err != full {
			return res, err
		}
		for i, s := range res.Segments {
			if s.Base >= mapEnd {
				break
			}
			ns, dropped, kept, err := rewrite(s, m, mapEnd, opt)
			if err != nil {
				return res, err
			}
			res.DroppedRecords += dropped
			res.TombstonesKept += kept
			if ns != nil {
				res.Segments[i] = ns
				res.Rewritten++
			}
		}
		start = mapEnd
	}
	return res, nil
}

// Retire forgets a segment whose files a compacted replacement now owns.
func (s *Segment) Retire() { s.retire() }

// forEachBatch calls fn for every batch holding offsets >= from, in order.
func forEachBatch(segs []*Segment, from int64, fn func(batch []byte, h batchInfo) error) error {
	var buf []byte
	for _, s := range segs {
		if s.Next <= from || s.Size == 0 {
			continue
		}
		f, err := s.files.acquire(s)
		if err != nil {
			return err
		}
		pos, err := s.locate(f, from)
		if err == nil {
			for pos < s.Size {
				if buf, err = readBatch(f, pos, s.Size, buf[:0]); err != nil {
					break
				}
				h := headerInfo(buf)
				if err = fn(buf, h); err != nil {
					break
				}
				pos += h.length
			}
		}
		s.files.release(s)
		if err != nil {
			return err
		}
	}
	return nil
}

// eachRecord decodes a batch's records, inflating compressed ones into a
// copy of at most limit bytes.
func eachRecord(batch []byte, limit int, fn func(r *kmsg.Record, off, ts int64)) error {
	attrs := binary.BigEndian.Uint16(batch[bOffAttributes:])
	base := int64(binary.BigEndian.Uint64(batch[bOffBase:]))
	first := int64(binary.BigEndian.Uint64(batch[bOffFirstTimestamp:]))
	maxTs := int64(binary.BigEndian.Uint64(batch[bOffMaxTimestamp:]))
	n := int32(binary.BigEndian.Uint32(batch[bOffNumRecords:]))
	raw, err := inflate.Records(nil, int(attrs&0x07), batch[batchHeaderLen:], limit)
	if err != nil {
		return fmt.Errorf("%w: batch at offset %d: %w", ErrCorrupt, base, err)
	}
	var r kmsg.Record
	for i := int32(0); i < n && len(raw) > 0; i++ {
		l, k := binary.Varint(raw)
		if k <= 0 || l < 0 || int64(len(raw)-k) < l {
			return fmt.Errorf("%w: malformed record at offset %d", ErrCorrupt, base)
		}
		if err := r.ReadFrom(raw[:k+int(l)]); err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		raw = raw[k+int(l):]
		ts := first + r.TimestampDelta64
		if attrs&0x08 != 0 {
			ts = maxTs
		}
		fn(&r, base+int64(r.OffsetDelta), ts)
	}
	return nil
}

var compressors sync.Map // kgo.CompressionCodecType -> kgo.Compressor

func compressorFor(codec kgo.CompressionCodecType) (kgo.Compressor, error) {
	if c, ok := compressors.Load(codec); ok {
		return c.(kgo.Compressor), nil
	}
	var cc kgo.CompressionCodec
	switch codec {
	case 1:
		cc = kgo.GzipCompression()
	case 2:
		cc = kgo.SnappyCompression()
	case 3:
		cc = kgo.Lz4Compression()
	case 4:
		cc = kgo.ZstdCompression()
	default:
		return nil, fmt.Errorf("%w: compression codec %d", ErrCorrupt, codec)
	}
	c, err := kgo.DefaultCompressor(cc)
	if err != nil {
		return nil, err
	}
	compressors.Store(codec, c)
	return c, nil
}

// rewrite filters one segment against the key map of a pass. It returns
// the replacement, or nil when nothing changed.
func rewrite(s *Segment, m map[keyHash]int64, mapEnd int64, opt CompactOptions) (*Segment, int64, int, error) {
	var w *Writer
	var dropped int64
	tombstonesKept := 0
	var kept []kmsg.Record
	var out []byte
	var body []byte
	err := forEachBatch([]*Segment{s}, s.Base, func(batch []byte, h batchInfo) error {
		if binary.BigEndian.Uint16(batch[bOffAttributes:])&attrControl != 0 {
			// Transaction markers are kept: read_committed readers
			// and the transaction index need them.
			if w != nil {
				return w.Append(batch)
			}
			return nil
		}
		kept = kept[:0]
		n := 0
		maxTs := int64(-1 << 63)
		err := eachRecord(batch, opt.InflateLimit, func(r *kmsg.Record, off, ts int64) {
			n++
			keep := true
			if r.Key != nil && off < mapEnd {
				if latest, ok := m[hashKey(r.Key)]; ok {
					switch {
					case latest > off:
						keep = false
					case latest == off && r.Value == nil && ts < opt.TombstoneBefore:
						keep = false
					case latest == off && r.Value == nil:
						tombstonesKept++
					}
				}
			}
			if keep {
				c := *r
				c.Key = append([]byte(nil), r.Key...)
				c.Value = cloneNil(r.Value)
				c.Headers = make([]kmsg.Header, len(r.Headers))
				for j, hd := range r.Headers {
					c.Headers[j] = kmsg.Header{Key: hd.Key, Value: cloneNil(hd.Value)}
				}
				kept = append(kept, c)
				maxTs = max(maxTs, ts)
			}
		})
		if err != nil {
			return err
		}
		dropped += int64(n - len(kept))
		if w == nil {
			if len(kept) == n {
				return nil // unchanged so far: start writing at the first change
			}
			var err error
			if w, err = Create(s.fs, s.dir, s.files, s.Base); err != nil {
				return err
			}
			// Copy the unchanged batches before this one.
			if err := copyBefore(s, h.base, w); err != nil {
				return err
			}
		}
		if len(kept) == 0 {
			return nil
		}
		if len(kept) == n {
			return w.Append(batch)
		}
		body = body[:0]
		for i := range kept {
			r := &kept[i]
			r.Length = 0
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			body = r.AppendTo(body)
		}
		attrs := binary.BigEndian.Uint16(batch[bOffAttributes:])
		records := body
		if codec := kgo.CompressionCodecType(attrs & 0x07); codec != 0 {
			c, err := compressorFor(codec)
			if err != nil {
				return err
			}
			var got kgo.CompressionCodecType
			records, got = c.Compress(new(bytes.Buffer), body)
			if got != codec {
				return fmt.Errorf("tier2: recompressing with codec %d failed", codec)
			}
		}
		if attrs&0x08 != 0 {
			maxTs = int64(binary.BigEndian.Uint64(batch[bOffMaxTimestamp:]))
		}
		out = append(out[:0], batch[:batchHeaderLen]...)
		binary.BigEndian.PutUint64(out[bOffMaxTimestamp:], uint64(maxTs))
		binary.BigEndian.PutUint32(out[bOffNumRecords:], uint32(len(kept)))
		out = append(out, records...)
		binary.BigEndian.PutUint32(out[bOffLength:], uint32(len(out)-batchPrefix))
		binary.BigEndian.PutUint32(out[bOffCRC:], crc32Sum(out[bOffAttributes:]))
		return w.Append(out)
	})
	if err != nil {
		if w != nil {
			w.Abort()
		}
		return nil, 0, 0, err
	}
	if w == nil {
		return nil, 0, tombstonesKept, nil
	}
	// The rewritten segment is not the copy Tier 3 holds.
	if err := s.fs.Remove(s.path(archivedSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.Abort()
		return nil, 0, 0, err
	}
	ns, err := w.Finish(s.Next)
	if err != nil {
		return nil, 0, 0, err
	}
	return ns, dropped, tombstonesKept, nil
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// copyBefore appends s's batches with base offsets below off to w unchanged.
func copyBefore(s *Segment, off int64, w *Writer) error {
	stop := errors.New("stop")
	err := forEachBatch([]*Segment{s}, s.Base, func(batch []byte, h batchInfo) error {
		if h.base >= off {
			return stop
		}
		return w.Append(batch)
	})
	if err == stop {
		return nil
	}
	return err
}
