package tier2

import (
	"io"
	"net"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
	"github.com/chronik-go/chronik/internal/vfs"
)

// BenchmarkSealedFetch compares ways to serve 1 MiB fetch ranges of a
// sealed segment of 16 KiB batches (franz-go's typical batch of 100-byte
// records) from the page cache:
//
//   - pread: what Fetch does: one pread of the range into a reused buffer
//     (the response's record bytes), no decoding.
//   - per-batch-verify: one read per batch with its CRC checked, as the
//     WAL path serves active batches.
//   - decode: pread plus decoding every record, what the fetch path avoids.
//   - socket/pread+write and socket/sendfile: the same range to a loopback
//     TCP connection, copied through user space or with sendfile(2) (what
//     a hand-framed response could do; see the broker's Fetch header).
func BenchmarkSealedFetch(b *testing.B) {
	dir := b.TempDir()
	files := NewFileCache(16)
	s := writeSegment(b, vfs.Default, dir, files, 0, 150, 100, 64<<20)
	const chunk = 1 << 20
	next := func(off *int64) {
		*off += 10_000
		if *off >= s.Next {
			*off = 0
		}
	}
	b.Run("pread", func(b *testing.B) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		var buf []byte
		off := int64(0)
		for i := 0; i < b.N; i++ {
			var err error
			if buf, _, err = s.ReadFrom(off, chunk, buf[:0], true); err != nil {
				b.Fatal(err)
			}
			next(&off)
		}
	})
	b.Run("per-batch-verify", func(b *testing.B) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = buf[:0]
			pos := int64(0)
			for len(buf) < chunk {
				var err error
				n := len(buf)
				if buf, err = s.BatchAt(pos, buf); err != nil {
					b.Fatal(err)
				}
				pos += int64(len(buf) - n)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(chunk)
		b.ReportAllocs()
		var buf []byte
		off := int64(0)
		for i := 0; i < b.N; i++ {
			var err error
			if buf, _, err = s.ReadFrom(off, chunk, buf[:0], true); err != nil {
				b.Fatal(err)
			}
			for rest := buf; len(rest) > 0; {
				h := headerInfo(rest)
				if err := eachRecord(rest[:h.length], inflate.Limit(inflate.DefaultMaxMessageBytes), func(_ *kmsg.Record, _, _ int64) {}); err != nil {
					b.Fatal(err)
				}
				rest = rest[h.length:]
			}
			next(&off)
		}
	})
	socket := func(b *testing.B, send func(c *net.TCPConn, f *os.File, buf []byte, pos int64) []byte) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		f, err := os.Open(s.Path())
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(chunk)
		b.ReportAllocs()
		b.ResetTimer()
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = send(nc.(*net.TCPConn), f, buf, int64(i%32)*chunk)
		}
	}
	b.Run("socket/pread+write", func(b *testing.B) {
		socket(b, func(c *net.TCPConn, f *os.File, buf []byte, pos int64) []byte {
			if cap(buf) < chunk {
				buf = make([]byte, chunk)
			}
			buf = buf[:chunk]
			if _, err := f.ReadAt(buf, pos); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			return buf
		})
	})
	b.Run("socket/sendfile", func(b *testing.B) {
		socket(b, func(c *net.TCPConn, f *os.File, buf []byte, pos int64) []byte {
			if _, err := f.Seek(pos, io.SeekStart); err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyN(c, f, chunk); err != nil {
				b.Fatal(err)
			}
			return buf
		})
	})
}
