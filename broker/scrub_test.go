package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// scrubConfig is tier3Config with the scrubber's startup pass only and
// quick repair retries; reg, when set, gets the broker's metrics.
func scrubConfig(store tier3.Store, reg prometheus.Registerer) func(*Config) {
	return func(c *Config) {
		tier3Config(store)(c)
		c.ScrubInterval = time.Hour
		c.ScrubRepairRetry = 10 * time.Millisecond
		c.Metrics = reg
	}
}

// fileBatch is one batch of a segment file.
type fileBatch struct {
	pos, size, base, last int64
}

func fileBatches(t *testing.T, data []byte) []fileBatch {
	t.Helper()
	var out []fileBatch
	for pos := 0; pos < len(data); {
		n := int(int32(binary.BigEndian.Uint32(data[pos+offBatchLength:]))) + 12
		h := readBatchHeader(data[pos:])
		base := batchBaseOffset(data[pos:])
		out = append(out, fileBatch{pos: int64(pos), size: int64(n), base: base, last: base + int64(h.LastOffsetDelta)})
		pos += n
	}
	return out
}

// fetchAt sends one consumer Fetch of p at offset.
func fetchAt(t *testing.T, cl *kgo.Client, p *partition, offset int64) (int16, []byte) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = 0
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = p.topic.name, p.topic.id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes = offset, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch response %+v", resp)
	}
	sp := resp.Topics[0].Partitions[0]
	return sp.ErrorCode, sp.RecordBatches
}

// A standalone broker archives its segments; one local copy then gets a
// flipped bit in the middle, where startup's cheap checks do not look.
// The scrubber's startup pass finds it; while the archive is unreachable,
// fetches of the damaged range get KAFKA_STORAGE_ERROR and never its
// bytes, while the batches before the damage are served; once the archive
// is back, the segment is rebuilt from it byte for byte, and a consumer
// reads exactly the records produced.
func TestScrubRepairsFromArchive(t *testing.T) {
	store := &flakyStore{Store: tier3.NewMemStore()}
	dir := t.TempDir()
	b := testBroker(t, dir, scrubConfig(store, nil))
	p := testPartition(t, b, "scrub", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	const ts0 = 1_700_000_000_000
	n := fillTiered(t, b, p, 100, ts0)
	want := readAllTiered(t, b, p, 1<<20)
	checkRecords(t, want, n)
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	if len(segs) < 5 {
		t.Fatalf("%d sealed segments; want several", len(segs))
	}
	// A segment with batches before and after the one damaged: segments
	// seal by size, but one may hold a single batch.
	var (
		s    *tier2.Segment
		orig []byte
		fbs  []fileBatch
	)
	for _, c := range segs[1 : len(segs)-1] {
		data, err := os.ReadFile(c.Path())
		if err != nil {
			t.Fatal(err)
		}
		if cb := fileBatches(t, data); len(cb) >= 3 {
			s, orig, fbs = c, data, cb
			break
		}
	}
	if s == nil {
		t.Fatal("no sealed segment holds three batches")
	}
	b.Close()

	bad := fbs[len(fbs)/2]
	damaged := bytes.Clone(orig)
	damaged[bad.pos+bad.size-3] ^= 0x40 // a value byte: CRC-covered
	if err := os.WriteFile(s.Path(), damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	reg := prometheus.NewRegistry()
	b = testBroker(t, dir, scrubConfig(store, reg))
	p = b.lookupTopic("scrub").partitions[0]
	waitFor(t, 10*time.Second, func() error {
		if !p.damaged() {
			return errors.New("the startup scrub pass has not found the damage")
		}
		return nil
	})
	if from, _ := p.damagedFrom(); from != bad.base {
		t.Fatalf("damaged from offset %d; the flipped batch starts at %d", from, bad.base)
	}
	if v := mustGather(t, reg, "chronik_damaged_segments"); v != 1 {
		t.Fatalf("chronik_damaged_segments = %v; want 1", v)
	}

	cl := testClient(t, b)
	for _, off := range []int64{bad.base, bad.last, fbs[len(fbs)-1].last} {
		if code, recs := fetchAt(t, cl, p, off); code != kerr.KafkaStorageError.Code || len(recs) != 0 {
			t.Fatalf("fetch at %d in the damaged range: code %d, %d bytes; want KAFKA_STORAGE_ERROR and no bytes", off, code, len(recs))
		}
	}
	code, recs := fetchAt(t, cl, p, s.Base)
	if code != 0 || len(recs) == 0 {
		t.Fatalf("fetch at %d before the damage: code %d, %d bytes", s.Base, code, len(recs))
	}
	got, last := decodeRecords(t, recs) // checks every CRC
	if last >= bad.base || !bytes.Equal(recs, orig[:bad.pos]) {
		t.Fatalf("fetch before the damage returned offsets up to %d (%d bytes); want exactly the batches before offset %d", last, len(recs), bad.base)
	}
	for _, r := range got {
		if r != want[r.offset] {
			t.Fatalf("fetch before the damage: record %+v; want %+v", r, want[r.offset])
		}
	}
	if v := mustGather(t, reg, "chronik_segment_repairs_total"); v != 0 {
		t.Fatalf("%v repairs while the archive is unreachable", v)
	}

	store.down.Store(false)
	waitFor(t, 10*time.Second, func() error {
		if p.damaged() {
			return errors.New("not repaired yet")
		}
		return nil
	})
	if v := mustGather(t, reg, "chronik_segment_repairs_total"); v != 1 {
		t.Fatalf("chronik_segment_repairs_total = %v; want 1", v)
	}
	if v := mustGather(t, reg, "chronik_damaged_segments"); v != 0 {
		t.Fatalf("chronik_damaged_segments = %v after the repair", v)
	}
	if v := mustGather(t, reg, "chronik_scrub_bytes_total"); v < float64(len(orig)) {
		t.Fatalf("chronik_scrub_bytes_total = %v; the pass read at least %d", v, len(orig))
	}
	if data, err := os.ReadFile(s.Path()); err != nil || !bytes.Equal(data, orig) {
		t.Fatalf("repaired log differs from the original (%d bytes, was %d): %v", len(data), len(orig), err)
	}
	p.mu.RLock()
	for _, rs := range p.segs {
		if rs.Base == s.Base && (rs.Next != s.Next || !rs.Archived()) {
			t.Errorf("repaired segment [%d, %d) archived %v; want [%d, %d) and still archived", rs.Base, rs.Next, rs.Archived(), s.Base, s.Next)
		}
	}
	p.mu.RUnlock()
	consumed := consumeAll(t, b.Addr().String(), "scrub", n)
	if len(consumed) != n {
		t.Fatalf("consumed %d records; want %d", len(consumed), n)
	}
	for i, r := range consumed {
		got := testRecord{offset: r.Offset, ts: r.Timestamp.UnixMilli(), key: string(r.Key), value: string(r.Value), null: r.Value == nil}
		if got != want[i] {
			t.Fatalf("record %d consumed as %+v; produced %+v", i, got, want[i])
		}
	}
}

// A segment that lost its tail before it was archived (logs only ever
// lose bytes by damage) claims offsets it does not hold. The uploader must
// not archive it: the archive would vouch for the hole and healthy
// replicas would delete their copies. It archives the segments before it
// and stops there; the segment, with no good copy anywhere, stays damaged
// and the offsets it lacks are never served.
func TestUploaderSkipsDamagedSegment(t *testing.T) {
	store := &flakyStore{Store: tier3.NewMemStore()}
	store.down.Store(true)
	dir := t.TempDir()
	b := testBroker(t, dir, scrubConfig(store, nil))
	p := testPartition(t, b, "hole", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	for i := 0; i < 150; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(i*3, 3, 1)))
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 5 { // two to archive, the damaged one, and two after it
			return fmt.Errorf("%d segments sealed", segCount(p))
		}
		return nil
	})
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	for _, s := range segs {
		if s.Archived() {
			t.Fatalf("segment %d archived while the store is down", s.Base)
		}
	}
	// A segment of several batches with at least two before it and one
	// after it (a seal may cut a segment of one batch).
	k := 2
	var orig []byte
	var fbs []fileBatch
	for ; k < len(segs)-1; k++ {
		data, err := os.ReadFile(segs[k].Path())
		if err != nil {
			t.Fatal(err)
		}
		if orig, fbs = data, fileBatches(t, data); len(fbs) >= 3 {
			break
		}
	}
	if k == len(segs)-1 {
		t.Fatalf("no segment of several batches among %d", len(segs))
	}
	s := segs[k]
	b.Close()
	lost := fbs[len(fbs)-2] // the tail from here on is gone, at a batch boundary
	if err := os.WriteFile(s.Path(), orig[:lost.pos], 0o644); err != nil {
		t.Fatal(err)
	}

	store.down.Store(false)
	b = testBroker(t, dir, scrubConfig(store, nil))
	p = b.lookupTopic("hole").partitions[0]
	if from, ok := p.damagedFrom(); !ok || from != lost.base {
		t.Fatalf("damaged from %d (%v) after loading; want offset %d", from, ok, lost.base)
	}
	ctx := testCtx(t)
	// Every upload pass (the tier loop's, and these) stops at the damage.
	waitFor(t, 10*time.Second, func() error {
		m, err := tier3.LoadManifest(ctx, store, p.topic.id, 0)
		if err != nil || m.End() != s.Base {
			return fmt.Errorf("archive ends at %d (%v); want %d, where the damaged segment starts", m.End(), err, s.Base)
		}
		return nil
	})
	for range 3 {
		if err := b.archivePartition(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	m, err := tier3.LoadManifest(ctx, store, p.topic.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Segments {
		if e.Next > s.Base {
			t.Fatalf("archive holds segment [%d, %d), at or after the damaged one [%d, %d)", e.Base, e.Next, s.Base, s.Next)
		}
	}
	if m.End() != s.Base || len(m.Segments) != k {
		t.Fatalf("archive holds %d segments ending at %d; want the %d before offset %d", len(m.Segments), m.End(), k, s.Base)
	}
	// No copy holds it: it stays damaged, and what it lacks is never served.
	if !p.damaged() {
		t.Fatal("the damaged segment was 'repaired' with no good copy anywhere")
	}
	if _, err := b.readPartition(p, lost.base, 1<<20, nil); !errors.Is(err, tier2.ErrCorrupt) {
		t.Fatalf("read of the lost tail: %v; want ErrCorrupt", err)
	}
	buf, err := b.readPartition(p, s.Base, 1<<20, nil)
	if err != nil || !bytes.Equal(buf, orig[:lost.pos]) {
		t.Fatalf("read before the damage: %d bytes, %v; want the %d bytes before it", len(buf), err, lost.pos)
	}
	if data, _ := os.ReadFile(s.Path()); !bytes.Equal(data, orig[:lost.pos]) {
		t.Fatalf("the damaged log was changed: %d bytes", len(data))
	}
}

// repairCheck takes exactly the batches of [base, next) from another copy
// and refuses a copy that would not rebuild the range.
func TestRepairCheck(t *testing.T) {
	type batch struct{ first, last int64 }
	for _, tc := range []struct {
		name        string
		base, next  int64
		need        int64
		dense       bool
		batches     []batch
		kept        int
		errTake     bool
		errFinished bool
	}{
		{"whole", 10, 20, 10, true, []batch{{10, 14}, {15, 19}, {20, 25}}, 2, false, false},
		{"from the log start, mid-batch", 10, 20, 12, true, []batch{{10, 14}, {15, 19}}, 2, false, false},
		{"batch straddling base", 10, 20, 10, true, []batch{{8, 11}, {12, 19}}, 1, false, false},
		{"starts late", 10, 20, 10, true, []batch{{12, 19}}, 0, true, false},
		{"gap", 10, 20, 10, true, []batch{{10, 12}, {14, 19}}, 1, true, false},
		{"ends early", 10, 20, 10, true, []batch{{10, 15}}, 1, false, true},
		{"crosses the end", 10, 20, 10, true, []batch{{10, 14}, {15, 22}}, 1, true, false},
		{"nothing", 10, 20, 10, true, nil, 0, false, true},
		{"compacted gaps", 10, 20, 10, false, []batch{{11, 12}, {16, 16}, {30, 31}}, 2, false, false},
		{"compacted out of order", 10, 20, 10, false, []batch{{14, 15}, {12, 13}}, 1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := repairCheck{base: tc.base, next: tc.next, need: tc.need, dense: tc.dense, last: tc.base - 1, expect: -1}
			kept := 0
			var err error
			for _, b := range tc.batches {
				var keep bool
				if keep, err = c.take(b.first, b.last); err != nil || c.done {
					if keep {
						kept++
					}
					break
				}
				if keep {
					kept++
				}
			}
			if (err != nil) != tc.errTake || kept != tc.kept {
				t.Fatalf("kept %d batches, err %v; want %d, error %v", kept, err, tc.kept, tc.errTake)
			}
			if !tc.errTake {
				if err := c.finish(); (err != nil) != tc.errFinished {
					t.Fatalf("finish: %v; want error %v", err, tc.errFinished)
				}
			}
		})
	}
}

// A damaged segment that lost both index headers does not know its end;
// the broker gives it the next segment's base, or for the last segment
// the producers checkpoint's sealed end. So the partition keeps its log
// end and hands out no offset twice.
func TestLoadResolvesDamagedEnd(t *testing.T) {
	dir := t.TempDir()
	noScrub := func(c *Config) {
		tier2Config(c)
		c.ScrubInterval = 0 // only what loading finds
	}
	b := testBroker(t, dir, noScrub)
	p := testPartition(t, b, "ends", map[string]string{"segment.bytes": "2000", "segment.ms": "50", "retention.ms": "-1"})
	for i := 0; i < 60; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(i*3, 3, 1)))
	}
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) < 4 || len(p.batches) > 0 {
			return fmt.Errorf("%d segments, %d active batches", len(p.segs), len(p.batches))
		}
		return nil
	})
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	_, end := p.offsets()
	b.Close()
	for _, s := range []*tier2.Segment{segs[1], segs[len(segs)-1]} {
		data, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		fbs := fileBatches(t, data)
		bad := fbs[len(fbs)/2]
		data[bad.pos+bad.size-3] ^= 0x40
		if err := os.WriteFile(s.Path(), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, suf := range []string{".index", ".timeindex"} {
			if err := os.Remove(strings.TrimSuffix(s.Path(), ".log") + suf); err != nil {
				t.Fatal(err)
			}
		}
	}

	b = testBroker(t, dir, noScrub)
	p = b.lookupTopic("ends").partitions[0]
	p.mu.RLock()
	loaded := p.segs
	p.mu.RUnlock()
	if len(loaded) != len(segs) {
		t.Fatalf("%d segments after restart; want %d", len(loaded), len(segs))
	}
	for _, i := range []int{1, len(segs) - 1} {
		s, d := loaded[i], loaded[i].Damage()
		if d == nil || !d.HeaderLost || s.Next != segs[i].Next || d.Next != segs[i].Next {
			t.Errorf("segment %d: next %d, damage %+v; want damaged with its end resolved to %d", segs[i].Base, s.Next, d, segs[i].Next)
		}
	}
	if _, got := p.offsets(); got != end {
		t.Fatalf("log end %d after restart; want %d", got, end)
	}
	if off := appendDurable(t, b, p, makeRecordBatch(seqRecords(0, 1, 1))); off != end {
		t.Fatalf("next produce got offset %d; want %d (offsets below belong to the damaged segments)", off, end)
	}
}

// Damage to a segment the archive already holds does not hold up the
// uploader: the segments sealed after it are archived as ever, while the
// damaged one waits for its repair (its archived copy unreadable here).
func TestUploaderPassesArchivedDamage(t *testing.T) {
	store := &flakyStore{Store: tier3.NewMemStore()}
	dir := t.TempDir()
	noRetry := func(c *Config) {
		scrubConfig(store, nil)(c)
		c.ScrubInterval = 0
		c.ScrubRepairRetry = time.Hour // the startup attempt only
	}
	b := testBroker(t, dir, noRetry)
	p := testPartition(t, b, "past", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	n := fillTiered(t, b, p, 60, 1)
	p.mu.RLock()
	s := p.segs[1]
	p.mu.RUnlock()
	orig, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	fbs := fileBatches(t, orig)
	if err := os.WriteFile(s.Path(), orig[:fbs[len(fbs)-1].pos], 0o644); err != nil {
		t.Fatal(err)
	}
	store.failGet.Store(fmt.Sprintf("/%020d-", s.Base)) // the startup repair cannot read the archived copy
	b = testBroker(t, dir, noRetry)
	p = b.lookupTopic("past").partitions[0]
	if !p.damaged() {
		t.Fatal("the lost tail was not found at load")
	}
	before := segCount(p)
	for i := 0; i < 60; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n+i*3, 3, 1)))
	}
	waitFor(t, 10*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) < before+2 {
			return fmt.Errorf("%d segments sealed", len(p.segs))
		}
		for _, seg := range p.segs[2:] {
			if !seg.Archived() {
				return fmt.Errorf("segment %d, after the damaged %d, not archived", seg.Base, s.Base)
			}
		}
		return nil
	})
	if !p.damaged() {
		t.Fatal("repaired though no retry was due: the test proves less than it says")
	}
}
