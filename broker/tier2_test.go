package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/inflate"
	"github.com/chronik-go/chronik/tier2"
)

// tier2Config makes maintenance run often enough for tests.
func tier2Config(c *Config) {
	c.SegmentCheckInterval = 5 * time.Millisecond
	c.RetentionCheckInterval = time.Hour // tests call clean directly
}

// waitFor polls fn until it returns nil or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type testRecord struct {
	offset int64
	ts     int64
	key    string
	value  string // "" with null set for tombstones
	null   bool
}

// makeRecords builds one uncompressed batch of the given records (offsets
// are assigned by the broker; timestamps are absolute).
func makeRecordBatch(recs []testRecord) []byte {
	first, maxTs := recs[0].ts, recs[0].ts
	for _, r := range recs {
		first, maxTs = min(first, r.ts), max(maxTs, r.ts)
	}
	var records []byte
	for i, tr := range recs {
		r := kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: tr.ts - first, Key: []byte(tr.key)}
		if tr.key == "" {
			r.Key = nil
		}
		if !tr.null {
			r.Value = []byte(tr.value)
		}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		records = r.AppendTo(records)
	}
	rb := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(len(recs) - 1),
		FirstTimestamp: first, MaxTimestamp: maxTs, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs)), Records: records}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

// appendDurable appends batch to p and waits until it is durable.
func appendDurable(t testing.TB, b *Broker, p *partition, batch []byte) int64 {
	t.Helper()
	out, _ := p.append(context.Background(), b.wal, batch, readBatchHeader(batch), false)
	if out.err != nil {
		t.Fatalf("append: %v", out.err)
	}
	<-out.wait.done
	if out.wait.err != nil {
		t.Fatalf("append: %v", out.wait.err)
	}
	return out.baseOffset
}

// readAllRecords reads p from offset 0 through readFrom in small steps.
func readAllRecords(t testing.TB, b *Broker, p *partition, maxBytes int) []testRecord {
	t.Helper()
	_, hw := p.offsets()
	logStart, _ := p.offsets()
	var out []testRecord
	for next := logStart; next < hw; {
		buf, err := p.readFrom(b.wal, next, maxBytes, nil)
		if err != nil {
			t.Fatalf("readFrom(%d): %v", next, err)
		}
		if len(buf) == 0 {
			t.Fatalf("readFrom(%d) returned nothing below hw %d", next, hw)
		}
		recs, last := decodeRecords(t, buf)
		for _, r := range recs {
			if r.offset >= next {
				out = append(out, r)
			}
		}
		next = last + 1
	}
	return out
}

// decodeRecords decodes concatenated batches, checking that their offsets
// increase, and returns the records and the last batch's last offset.
func decodeRecords(t testing.TB, buf []byte) ([]testRecord, int64) {
	t.Helper()
	var out []testRecord
	last := int64(-1)
	for rest := buf; len(rest) > 0; {
		if len(rest) < batchHeaderLen {
			t.Fatalf("%d trailing bytes", len(rest))
		}
		n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
		batch := rest[:n]
		rest = rest[n:]
		if crc := binary.BigEndian.Uint32(batch[offCRC:]); crc != crc32.Checksum(batch[offAttributes:], crc32c) {
			t.Fatalf("batch crc mismatch")
		}
		h := readBatchHeader(batch)
		base := batchBaseOffset(batch)
		if base <= last {
			t.Fatalf("batch at %d after %d", base, last)
		}
		err := eachBatchRecordTs(batch, func(off, ts int64, key, value []byte) {
			out = append(out, testRecord{offset: off, ts: ts, key: string(key), value: string(value), null: value == nil})
		})
		if err != nil {
			t.Fatal(err)
		}
		last = base + int64(h.LastOffsetDelta)
	}
	return out, last
}

func eachBatchRecordTs(batch []byte, fn func(off, ts int64, key, value []byte)) error {
	h := readBatchHeader(batch)
	base := batchBaseOffset(batch)
	raw, err := inflate.Records(nil, int(h.Attributes&attrCompressionMask), batch[batchHeaderLen:], inflate.Limit(inflate.DefaultMaxMessageBytes))
	if err != nil {
		return err
	}
	var rec kmsg.Record
	for i := int32(0); i < h.NumRecords; i++ {
		l, n := binary.Varint(raw)
		if n <= 0 || int64(len(raw)-n) < l {
			return fmt.Errorf("malformed record")
		}
		if err := rec.ReadFrom(raw[:n+int(l)]); err != nil {
			return err
		}
		raw = raw[n+int(l):]
		ts := h.FirstTimestamp + rec.TimestampDelta64
		if h.Attributes&attrTimestampType != 0 {
			ts = h.MaxTimestamp
		}
		fn(base+int64(rec.OffsetDelta), ts, rec.Key, rec.Value)
	}
	return nil
}

func segCount(p *partition) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.segs)
}

func testPartition(t testing.TB, b *Broker, topic string, configs map[string]string) *partition {
	t.Helper()
	set := map[string]*string{}
	for k, v := range configs {
		set[k] = &v
	}
	tp, err := b.createTopic(topic, 1, -1, set, false)
	if err != nil {
		t.Fatal(err)
	}
	return tp.partitions[0]
}

func seqRecords(from, n int, ts int64) []testRecord {
	out := make([]testRecord, n)
	for i := range out {
		out[i] = testRecord{ts: ts + int64(i), key: fmt.Sprintf("k%d", (from+i)%13), value: fmt.Sprintf("v%08d", from+i)}
	}
	return out
}

func checkRecords(t testing.TB, got []testRecord, wantN int) {
	t.Helper()
	if len(got) != wantN {
		t.Fatalf("read %d records, want %d", len(got), wantN)
	}
	for i, r := range got {
		if r.offset != int64(i) || r.value != fmt.Sprintf("v%08d", i) {
			t.Fatalf("record %d: offset %d value %q", i, r.offset, r.value)
		}
	}
}

// Segments roll at segment.bytes: every sealed segment is at most
// segment.bytes (or one batch), offsets are contiguous across them, and a
// reader crossing every boundary sees each record once.
func TestSegmentRollBySize(t *testing.T) {
	b := testBroker(t, t.TempDir(), tier2Config)
	p := testPartition(t, b, "roll-size", map[string]string{"segment.bytes": "4096"})
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 300; i++ {
		k := 1 + i%7
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, k, now)))
		n += k
	}
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if p.activeBytes >= 4096 {
			return fmt.Errorf("%d active bytes", p.activeBytes)
		}
		return nil
	})
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	if len(segs) < 5 {
		t.Fatalf("%d segments sealed, want several", len(segs))
	}
	for i, s := range segs {
		if s.Size > 4096 {
			t.Errorf("segment %d is %d bytes, above segment.bytes", i, s.Size)
		}
		if i > 0 && s.Base != segs[i-1].Next {
			t.Errorf("segment %d starts at %d, previous ends at %d", i, s.Base, segs[i-1].Next)
		}
	}
	for _, max := range []int{1, 100, 3000, 1 << 20} {
		checkRecords(t, readAllRecords(t, b, p, max), n)
	}
	// And through a real client.
	recs := consumeAll(t, b.Addr().String(), "roll-size", n)
	for i, r := range recs {
		if r.Offset != int64(i) || string(r.Value) != fmt.Sprintf("v%08d", i) {
			t.Fatalf("consumed record %d: offset %d value %q", i, r.Offset, r.Value)
		}
	}
}

// Segments roll at segment.ms even when small.
func TestSegmentRollByTime(t *testing.T) {
	b := testBroker(t, t.TempDir(), tier2Config)
	p := testPartition(t, b, "roll-time", map[string]string{"segment.ms": "50"})
	now := time.Now().UnixMilli()
	appendDurable(t, b, p, makeRecordBatch(seqRecords(0, 3, now)))
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) != 1 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	appendDurable(t, b, p, makeRecordBatch(seqRecords(3, 2, now)))
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) != 2 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	checkRecords(t, readAllRecords(t, b, p, 1<<20), 5)
}

// Random fetches across segment boundaries and into the active segment
// match an oracle: the first batch holds (or follows) the fetch offset,
// the limit is honoured except for a first batch, and records are exact.
func TestFetchAcrossSegmentBoundaries(t *testing.T) {
	b := testBroker(t, t.TempDir(), tier2Config)
	p := testPartition(t, b, "boundaries", map[string]string{"segment.bytes": "2000"})
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 200; i++ {
		k := 1 + i%5
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, k, now)))
		n += k
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 10 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	// Some data stays in the active segment.
	for i := 0; i < 5; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 2, now)))
		n += 2
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		off := rng.Int64N(int64(n))
		limit := 1 + rng.IntN(3000)
		buf, err := p.readFrom(b.wal, off, limit, nil)
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := decodeRecords(t, buf)
		if len(recs) == 0 || recs[0].offset > off {
			t.Fatalf("fetch %d: first record %v", off, recs)
		}
		first := int(int32(binary.BigEndian.Uint32(buf[offBatchLength:]))) + 12
		if len(buf) > limit && len(buf) != first {
			t.Fatalf("fetch %d limit %d returned %d bytes beyond its first batch of %d", off, limit, len(buf), first)
		}
		for _, r := range recs {
			if r.value != fmt.Sprintf("v%08d", r.offset) {
				t.Fatalf("fetch %d: record %+v", off, r)
			}
		}
		if want := recs[len(recs)-1].offset - recs[0].offset + 1; int64(len(recs)) != want {
			t.Fatalf("fetch %d: %d records over %d offsets", off, len(recs), want)
		}
	}
}

// A restart loads sealed segments and replays only the rest of the WAL,
// which has been trimmed below the oldest unsealed batch; idempotent
// producer windows survive both.
func TestRestartWithSealedSegmentsAndTrimmedWAL(t *testing.T) {
	dir := t.TempDir()
	mod := func(c *Config) {
		tier2Config(c)
		c.WALSegmentBytes = 4 << 10
	}
	b := testBroker(t, dir, mod)
	p := testPartition(t, b, "restart", map[string]string{"segment.bytes": "3000", "segment.ms": "300"})
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 150; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, now)))
		n += 3
	}
	const pid = 77
	idem := makeBatch(2, pid, 0, 0, now)
	idemOff := appendDurable(t, b, p, idem)
	n += 2
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.batches) > 0 && p.batches[0].base <= idemOff {
			return fmt.Errorf("idempotent batch not sealed yet")
		}
		return nil
	})
	for i := 0; i < 3; i++ { // active data
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 1, now)))
		n++
	}
	b.sealDue(time.Now())
	walFiles := func() int {
		ents, err := os.ReadDir(filepath.Join(dir, "wal"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	if b.wal.Stats().BytesWritten < 20<<10 || walFiles() > 3 {
		t.Fatalf("wal wrote %d bytes and keeps %d segments; want it trimmed", b.wal.Stats().BytesWritten, walFiles())
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, mod)
	p2 := b2.lookupTopic("restart").partitions[0]
	got := readAllRecords(t, b2, p2, 1<<20)
	if len(got) != n {
		t.Fatalf("read %d records after restart, want %d", len(got), n)
	}
	out, _ := p2.append(context.Background(), b2.wal, makeBatch(2, pid, 0, 0, now), readBatchHeader(idem), false)
	if out.err != nil || out.baseOffset != idemOff {
		t.Fatalf("duplicate after restart: offset %d err %v, want the original offset %d", out.baseOffset, out.err, idemOff)
	}
	if off := appendDurable(t, b2, p2, makeRecordBatch(seqRecords(n, 1, now))); off != int64(n) {
		t.Fatalf("append after restart at %d, want %d", off, n)
	}
}

// A deleted or corrupted index (either kind) is rebuilt at startup, and a
// log damaged in the middle is truncated at its last valid batch.
func TestIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	p := testPartition(t, b, "rebuild", map[string]string{"segment.bytes": "3000"})
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 150; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 4, now+int64(n))))
		n += 4
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 6 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	strip := func(s *tier2.Segment, suf string) string { return strings.TrimSuffix(s.Path(), ".log") + suf }
	os.Remove(strip(segs[0], ".index"))
	os.Remove(strip(segs[1], ".timeindex"))
	corrupt := func(path string, at int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{0xde, 0xad}, at)
		f.Close()
	}
	corrupt(strip(segs[2], ".index"), 20)     // header
	corrupt(strip(segs[3], ".timeindex"), 85) // entries
	corrupt(strip(segs[4], ".index"), 90)     // entries
	b2 := testBroker(t, dir, tier2Config)
	p2 := b2.lookupTopic("rebuild").partitions[0]
	checkRecords(t, readAllRecords(t, b2, p2, 500), n)
	for _, s := range segs[:5] {
		for _, suf := range []string{".index", ".timeindex"} {
			if _, err := os.Stat(strip(s, suf)); err != nil {
				t.Errorf("index not rebuilt: %v", err)
			}
		}
	}
	// Every record is found by timestamp through the rebuilt time indexes.
	for off := int64(0); off < int64(n); off += 7 {
		got, _, code := b2.listOffset(p2, now+off, false)
		if code != 0 || got != off {
			t.Fatalf("ListOffsets(ts of %d) = %d (%v)", off, got, kerr.ErrorForCode(code))
		}
	}
}

// Readers never see an error or a wrong record while sealing, WAL
// trimming, DeleteRecords and retention run under them: a segment being
// deleted keeps its open file until the last reader lets go, and a read
// that loses the race looks again.
func TestReadsDuringMaintenance(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) {
		tier2Config(c)
		c.WALSegmentBytes = 8 << 10
	})
	p := testPartition(t, b, "busy", map[string]string{"segment.bytes": "1500"})
	now := time.Now().UnixMilli()
	stop := make(chan struct{})
	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				logStart, hw := p.offsets()
				for next := logStart; next < hw; {
					buf, err := p.readFrom(b.wal, next, 700, nil)
					if err != nil {
						report(fmt.Errorf("readFrom(%d): %w", next, err))
						return
					}
					if len(buf) == 0 {
						break
					}
					last := int64(-1)
					for rest := buf; len(rest) > 0; {
						n := int(int32(binary.BigEndian.Uint32(rest[offBatchLength:]))) + 12
						eachBatchRecordTs(rest[:n], func(off, _ int64, _, value []byte) {
							if string(value) != fmt.Sprintf("v%08d", off) {
								report(fmt.Errorf("offset %d reads %q", off, value))
							}
							last = off
						})
						rest = rest[n:]
					}
					next = last + 1
				}
			}
		}()
	}
	n := 0
	for i := 0; i < 400; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, now)))
		n += 3
		if i%40 == 39 {
			if _, err := b.deleteRecords(p, int64(n/2)); err != nil {
				t.Fatal(err)
			}
			b.clean(time.Now())
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// A quiet partition does not keep the shared WAL growing: once its
// unsealed batches are WALPinSegments segments behind the active one it is
// sealed early (small segment and all), and the WAL is trimmed.
func TestQuietPartitionDoesNotPinWAL(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, func(c *Config) {
		tier2Config(c)
		c.WALSegmentBytes = 4 << 10
		c.WALPinSegments = 3
	})
	quiet := testPartition(t, b, "quiet", nil)
	busy := testPartition(t, b, "busy", nil)
	now := time.Now().UnixMilli()
	appendDurable(t, b, quiet, makeRecordBatch(seqRecords(0, 1, now)))
	n := 0
	for i := 0; i < 400; i++ {
		appendDurable(t, b, busy, makeRecordBatch(seqRecords(n, 2, now)))
		n += 2
	}
	waitFor(t, 5*time.Second, func() error {
		ents, err := os.ReadDir(filepath.Join(dir, "wal"))
		if err != nil {
			return err
		}
		if len(ents) > 5 || segCount(quiet) != 1 {
			return fmt.Errorf("%d wal segments, quiet partition has %d sealed segments", len(ents), segCount(quiet))
		}
		return nil
	})
	checkRecords(t, readAllRecords(t, b, busy, 1<<20), n)
}
