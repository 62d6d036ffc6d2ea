// Package inflate decompresses the records of a Kafka record batch under a
// hard bound on the inflated size. It is the only place Chronik inflates
// records: produce and replica validation, ListOffsets by timestamp,
// compaction, the group coordinator's replay and search reads all come
// through Records, so one bound (Limit) holds on every path.
//
// A codec that declares its output size (a snappy block, a zstd frame's
// content size, an lz4 frame's content size) is refused before anything is
// allocated when the claim exceeds the bound; a stream that declares
// nothing (gzip, lz4 and zstd frames without a size) is read through a
// buffer that never grows past the bound.
package inflate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codecs, as numbered in the low three bits of a batch's attributes.
const (
	None   = 0
	Gzip   = 1
	Snappy = 2
	Lz4    = 3
	Zstd   = 4
)

// Factor is how much larger than max.message.bytes a batch's records may be
// once inflated.
//
// Why 32: franz-go and librdkafka fill a batch up to max.message.bytes of
// uncompressed records, so theirs inflate to about 1× the limit. The Java
// producer fills batch.size by its estimate of the compressed size, so a
// batch of highly compressible records (JSON or text logs under zstd or
// gzip reach 10-20×) inflates to a multiple of what was sent. 32 leaves
// room for that while bounding what one batch can make a broker allocate
// at 32 MiB under the default 1 MiB limit; a batch past it is answered
// MESSAGE_TOO_LARGE, on which the Java producer splits the batch and
// retries. Kafka itself sets no bound; it streams records instead.
const Factor = 32

// DefaultMaxMessageBytes is Kafka's default max.message.bytes (1 MiB), the
// base of the bound where no topic config is known.
const DefaultMaxMessageBytes = 1 << 20

// Limit is the most one batch's records may inflate to in a topic whose
// max.message.bytes is maxMessageBytes: Factor times that, at least one
// byte, at most math.MaxInt32.
func Limit(maxMessageBytes int64) int {
	return int(min(max(maxMessageBytes, 1)*Factor, math.MaxInt32))
}

var (
	// ErrTooLarge means the records inflate (or declare that they inflate)
	// past the bound.
	ErrTooLarge = errors.New("inflate: records inflate past the limit")
	// ErrCorrupt means the compressed data does not decode.
	ErrCorrupt = errors.New("inflate: compressed records do not decode")
	// ErrCodec means the attributes name no codec Kafka defines.
	ErrCodec = errors.New("inflate: unknown compression codec")
)

// Records inflates src, the records section of a batch compressed with
// codec, appending to dst[:0] (dst may be nil; its capacity is reused). The
// result is at most limit bytes, or the error wraps ErrTooLarge. For None
// it returns src itself, after the same length check.
func Records(dst []byte, codec int, src []byte, limit int) ([]byte, error) {
	dst = dst[:0]
	var out []byte
	var err error
	switch codec {
	case None:
		out = src
		if len(src) > limit {
			err = ErrTooLarge
		}
	case Gzip:
		out, err = inflateGzip(dst, src, limit)
	case Snappy:
		out, err = inflateSnappy(dst, src, limit)
	case Lz4:
		out, err = inflateLz4(dst, src, limit)
	case Zstd:
		out, err = inflateZstd(dst, src, limit)
	default:
		return nil, fmt.Errorf("%w %d", ErrCodec, codec)
	}
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, ErrTooLarge):
		return nil, fmt.Errorf("%w of %d bytes", ErrTooLarge, limit)
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrCodec):
		return nil, err
	default:
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
}

// readBounded appends what r yields to dst until EOF, failing with
// ErrTooLarge as soon as it holds more than limit bytes. The buffer grows
// by doubling from hint and never past limit+1 bytes.
func readBounded(dst []byte, r io.Reader, limit, hint int) ([]byte, error) {
	if cap(dst) == 0 {
		dst = make([]byte, 0, min(max(hint, 4<<10), limit+1))
	}
	for idle := 0; ; {
		if len(dst) == cap(dst) {
			if len(dst) > limit {
				return nil, ErrTooLarge
			}
			dst = slices.Grow(dst, min(max(cap(dst), 4<<10), limit+1-len(dst)))
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return nil, ErrTooLarge
		}
		switch {
		case err == io.EOF:
			return dst, nil
		case err != nil:
			return nil, err
		case n > 0:
			idle = 0
		case idle >= 100:
			// io.Reader allows (0, nil); a codec that kept answering so
			// would spin here forever.
			return nil, io.ErrNoProgress
		default:
			idle++
		}
	}
}

// hint guesses the inflated size of n compressed bytes for the first
// allocation: most record data compresses 2-5×.
func hint(n int) int { return 4 * n }

type gzipReader struct {
	src bytes.Reader
	r   gzip.Reader
}

var gzipPool = sync.Pool{New: func() any { return new(gzipReader) }}

func inflateGzip(dst, src []byte, limit int) ([]byte, error) {
	g := gzipPool.Get().(*gzipReader)
	defer gzipPool.Put(g)
	g.src.Reset(src)
	if err := g.r.Reset(&g.src); err != nil {
		return nil, err
	}
	return readBounded(dst, &g.r, limit, hint(len(src)))
}

// xerialMagic opens snappy data framed the way the Java client writes it:
// the magic, a version and a compatible version (4 bytes each), then
// blocks, each a big-endian length and a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderLen = 16

func inflateSnappy(dst, src []byte, limit int) ([]byte, error) {
	if len(src) < xerialHeaderLen || !bytes.HasPrefix(src, xerialMagic) {
		// One raw block, as franz-go and librdkafka write it. Its header
		// declares the inflated length: check it before allocating.
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, err
		}
		if n > limit {
			return nil, ErrTooLarge
		}
		dst = slices.Grow(dst, n)
		return s2.Decode(dst[:n], src)
	}
	blocks := src[xerialHeaderLen:]
	// Sum the declared lengths of every block before allocating anything.
	total := 0
	for rest := blocks; len(rest) > 0; {
		block, next, err := xerialBlock(rest)
		if err != nil {
			return nil, err
		}
		n, err := s2.DecodedLen(block)
		if err != nil {
			return nil, err
		}
		if total += n; total > limit {
			return nil, ErrTooLarge
		}
		rest = next
	}
	dst = slices.Grow(dst, total)
	for rest := blocks; len(rest) > 0; {
		block, next, _ := xerialBlock(rest)
		n, _ := s2.DecodedLen(block)
		if _, err := s2.Decode(dst[len(dst):len(dst)+n], block); err != nil {
			return nil, err
		}
		dst = dst[:len(dst)+n]
		rest = next
	}
	return dst, nil
}

// xerialBlock splits the first framed block off b.
func xerialBlock(b []byte) (block, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated snappy block length", ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: snappy block of %d bytes past the end of the data", ErrCorrupt, n)
	}
	return b[4 : 4+n], b[4+n:], nil
}

type lz4Reader struct {
	src bytes.Reader
	r   *lz4.Reader
}

var lz4Pool = sync.Pool{New: func() any { return &lz4Reader{r: lz4.NewReader(nil)} }}

// lz4 frame header (the LZ4 frame format): a little-endian magic, the FLG
// byte whose bit 3 says a content size follows the BD byte, then the size
// as a little-endian uint64.
const (
	lz4Magic        = 0x184D2204
	lz4FlagSize     = 0x08
	lz4SizeOffset   = 6
	lz4HeaderToSize = lz4SizeOffset + 8
)

func inflateLz4(dst, src []byte, limit int) ([]byte, error) {
	if len(src) >= lz4HeaderToSize && binary.LittleEndian.Uint32(src) == lz4Magic && src[4]&lz4FlagSize != 0 {
		if size := binary.LittleEndian.Uint64(src[lz4SizeOffset:]); size > uint64(limit) {
			return nil, ErrTooLarge
		}
	}
	l := lz4Pool.Get().(*lz4Reader)
	defer lz4Pool.Put(l)
	l.src.Reset(src)
	l.r.Reset(&l.src)
	out, err := readBounded(dst, l.r, limit, hint(len(src)))
	l.r.Reset(nil) // drop the reference to src's reader state
	return out, err
}

// zstdWindow is the largest window (back-reference distance) a zstd frame
// may declare. Java's zstd-jni streams with windows of 2-8 MiB whatever the
// output size, so the window cannot be held to a small topic's bound; it
// is bounded separately, at the most a window over 8 MiB could be.
const zstdWindow = 8 << 20

// zstdDecoder is a pooled synchronous stream decoder and the bound it was
// last set to. As a stream decoder, WithDecoderMaxMemory bounds the window
// it keeps; the output goes through readBounded like every stream's.
type zstdDecoder struct {
	src bytes.Reader
	d   *zstd.Decoder
	max int
}

var zstdPool = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(zstdWindow))
	if err != nil {
		panic(err) // the options are constant and valid
	}
	return &zstdDecoder{d: d, max: zstdWindow}
}}

func inflateZstd(dst, src []byte, limit int) ([]byte, error) {
	// A frame's declared content size is checked before anything is
	// allocated (the first frame's here; a later one's cannot make the
	// output outgrow the bound either, as readBounded stops it).
	var h zstd.Header
	if err := h.Decode(src); err == nil && h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, ErrTooLarge
	}
	z := zstdPool.Get().(*zstdDecoder)
	defer zstdPool.Put(z)
	z.src.Reset(src)
	var err error
	if m := max(limit, zstdWindow); z.max != m {
		err = z.d.ResetWithOptions(&z.src, zstd.WithDecoderMaxMemory(uint64(m)))
		z.max = m
	} else {
		err = z.d.Reset(&z.src)
	}
	if err != nil {
		return nil, err
	}
	n := hint(len(src))
	if h.HasFCS {
		n = int(h.FrameContentSize) + 1 // +1: room to see the end without growing
	}
	out, err := readBounded(dst, z.d, limit, n)
	z.d.Reset(nil) // drop the reference to src
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return nil, ErrTooLarge
	}
	return out, err
}
