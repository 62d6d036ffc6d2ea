package broker

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/inflate"
)

// BenchmarkValidateRecords measures what validation adds to a produce: the
// frame checks (parseProduceBatch: length, CRC32C) alone, then with every
// record walked (validateRecords), for a batch of 100-byte records as
// franz-go builds them (1 MB, linger-filled), uncompressed and with each
// codec (compressed records are inflated into a pooled buffer first).
func BenchmarkValidateRecords(b *testing.B) {
	now := time.Now().UnixMilli()
	value := bytes.Repeat([]byte("0123456789abcdef{\"k\":12}"), 5)[:100]
	recs := encodeRecords(valueRecords(1_000_000/110, value)...)
	n := int32(1_000_000 / 110)
	codecs := []struct {
		name string
		cc   kgo.CompressionCodec
		id   int16
	}{{"none", kgo.NoCompression(), 0}, {"gzip", kgo.GzipCompression(), 1}, {"snappy", kgo.SnappyCompression(), 2}, {"lz4", kgo.Lz4Compression(), 3}, {"zstd", kgo.ZstdCompression(), 4}}
	for _, c := range codecs {
		body := recs
		if c.id != 0 {
			comp, err := kgo.DefaultCompressor(c.cc)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := comp.Compress(new(bytes.Buffer), recs)
			body = bytes.Clone(out)
		}
		batch := craftBatch(body, c.id, n, n-1, now, now+int64(n-1))
		rules := batchRules{inflateLimit: inflate.Limit(1 << 20), client: true, now: now, beforeMax: math.MaxInt64, afterMax: 3600000}
		b.Run(c.name+"/frame", func(b *testing.B) {
			b.SetBytes(int64(len(recs)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseProduceBatch(batch, 2<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/frame+records", func(b *testing.B) {
			b.SetBytes(int64(len(recs)))
			b.ReportAllocs()
			for b.Loop() {
				h, err := parseProduceBatch(batch, 2<<20)
				if err == nil {
					err = validateRecords(batch, &h, &rules)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
