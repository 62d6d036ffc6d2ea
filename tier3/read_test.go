package tier3_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// testSegment writes a sealed segment of batches of 5 records and returns
// it with its .log bytes.
func testSegment(t *testing.T, batches int) (*tier2.Segment, []byte) {
	t.Helper()
	mem := vfs.NewMemFS()
	w, err := tier2.Create(mem, "/p", tier2.NewFileCache(2), 0)
	if err != nil {
		t.Fatal(err)
	}
	var log []byte
	for i := range batches {
		var recs []byte
		for j := range 5 {
			r := kmsg.Record{OffsetDelta: int32(j), Value: []byte(fmt.Sprintf("value %d-%d %s", i, j, bytes.Repeat([]byte("x"), 60)))}
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			recs = r.AppendTo(recs)
		}
		rb := kmsg.RecordBatch{FirstOffset: int64(5 * i), PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: 4,
			FirstTimestamp: 1000, MaxTimestamp: 1000, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
			NumRecords: 5, Records: recs}
		b := rb.AppendTo(nil)
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
		if err := w.Append(b); err != nil {
			t.Fatal(err)
		}
		log = append(log, b...)
	}
	s, err := w.Finish(int64(5 * batches))
	if err != nil {
		t.Fatal(err)
	}
	return s, log
}

func upload(t *testing.T, a *tier3.Archive, s *tier2.Segment, log []byte) (tier3.SegmentEntry, error) {
	t.Helper()
	ib, tb, err := s.IndexBytes()
	if err != nil {
		t.Fatal(err)
	}
	return a.Upload(context.Background(), "p/", tier3.SegmentSource{Base: s.Base, Next: s.Next, Size: s.Size,
		MaxTs: s.MaxTs, Log: bytes.NewReader(log), Index: ib, TimeIndex: tb})
}

// uploaded is an archive over a memory store and a fresh disk cache
// holding one uploaded segment of the given batches.
type uploaded struct {
	a     *tier3.Archive
	store *tier3.MemStore
	s     *tier2.Segment
	log   []byte
	e     tier3.SegmentEntry
}

func newUploaded(t *testing.T, batches int, cfg tier3.ArchiveConfig) *uploaded {
	t.Helper()
	u := &uploaded{store: tier3.NewMemStore()}
	u.s, u.log = testSegment(t, batches)
	var err error
	if cfg.Cache, err = tier3.NewCache(t.TempDir(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if u.a, err = tier3.NewArchive(u.store, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.a.Close() })
	if u.e, err = upload(t, u.a, u.s, u.log); err != nil {
		t.Fatal(err)
	}
	return u
}

// A segment whose bytes fail a batch CRC on the way up is not archived:
// the chunk CRCs computed from it would vouch for the damage.
func TestUploadRefusesDamagedBatch(t *testing.T) {
	s, log := testSegment(t, 50)
	store := tier3.NewMemStore()
	cache, err := tier3.NewCache(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tier3.NewArchive(store, tier3.ArchiveConfig{Cache: cache, ChunkSize: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	bad := bytes.Clone(log)
	bad[len(bad)/2] ^= 1
	if _, err := upload(t, a, s, bad); !errors.Is(err, tier2.ErrCorrupt) {
		t.Fatalf("upload of a damaged segment: %v, want a corruption error", err)
	}
	if objs, _ := store.List(context.Background(), ""); len(objs) != 0 {
		t.Fatalf("%d objects stored from a damaged segment", len(objs))
	}
	e, err := upload(t, a, s, log)
	if err != nil || !e.BatchesChecked {
		t.Fatalf("upload: %v, batches checked %v", err, e.BatchesChecked)
	}
}

// Archived reads return views that join into the segment's bytes and stay
// valid after their chunks leave memory. A log read once leaves nothing
// on disk; read again, its chunks are fetched once more and kept on disk,
// and the third read finds them there.
func TestReadVecAndCacheAdmission(t *testing.T) {
	s, log := testSegment(t, 400)
	store := tier3.NewMemStore()
	cache, err := tier3.NewCache(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	a, err := tier3.NewArchive(store, tier3.ArchiveConfig{Cache: cache, ChunkSize: 4 << 10, ReadAhead: -1, HotBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	e, err := upload(t, a, s, log)
	if err != nil {
		t.Fatal(err)
	}
	segs := []tier3.SegmentEntry{e}
	ctx := context.Background()
	readAll := func(step int) []byte {
		var views [][]byte
		for next := int64(0); next < s.Next; {
			var n int
			before := len(views)
			views, n, err = a.ReadVec(ctx, "p/", segs, next, step, views, nil)
			if err != nil || n == 0 {
				t.Fatalf("ReadVec(%d): %d bytes, %v", next, n, err)
			}
			got := bytes.Join(views[before:], nil)
			for len(got) > 0 { // offset after the last batch
				l := int(binary.BigEndian.Uint32(got[8:])) + 12
				next = int64(binary.BigEndian.Uint64(got)) + int64(binary.BigEndian.Uint32(got[23:])) + 1
				got = got[l:]
			}
		}
		return bytes.Join(views, nil) // every view kept until now
	}
	if got := readAll(3000); !bytes.Equal(got, log) {
		t.Fatalf("first read: %d bytes differ from the %d-byte segment", len(got), len(log))
	}
	st := a.ReadStats()
	if st.GETs == 0 || st.GETBytes != int64(len(log)) || st.DiskWrites != 0 || st.DiskHits != 0 {
		t.Fatalf("after one read: %+v; want every byte by GET once and nothing written to disk", st)
	}
	if got := readAll(5000); !bytes.Equal(got, log) {
		t.Fatal("second read differs")
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.ReadStats().DiskWrites == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st2 := a.ReadStats()
	if st2.GETs <= st.GETs || st2.DiskWrites == 0 {
		t.Fatalf("after a second read: %+v; want chunks fetched again and kept on disk", st2)
	}
	if got := readAll(100000); !bytes.Equal(got, log) {
		t.Fatal("third read differs")
	}
	if st3 := a.ReadStats(); st3.DiskHits == 0 {
		t.Fatalf("after a third read: %+v; want disk cache hits", st3)
	}

	// A damaged object is never served.
	if err := store.Corrupt("p/"+e.Log, int64(len(log)/2)); err != nil {
		t.Fatal(err)
	}
	cold, err := tier3.NewCache(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tier3.NewArchive(store, tier3.ArchiveConfig{Cache: cold, ChunkSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, _, err := b.ReadVec(ctx, "p/", segs, 0, len(log), nil, nil); !errors.Is(err, tier3.ErrChecksum) {
		t.Fatalf("reading a damaged object: %v, want a checksum error", err)
	}
}

// Reads by offset use only the offset index: a segment whose .timeindex
// is damaged in the store reads in full, and the damage shows at the first
// timestamp lookup, which fails rather than use it.
func TestTimeIndexFetchedForTimestampsOnly(t *testing.T) {
	u := newUploaded(t, 100, tier3.ArchiveConfig{ChunkSize: 4 << 10})
	a, store, log, e := u.a, u.store, u.log, u.e
	if err := store.Corrupt("p/"+e.TimeIndex, 20); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := a.Read(ctx, "p/", []tier3.SegmentEntry{e}, 0, len(log), nil)
	if err != nil {
		t.Fatalf("read with a damaged .timeindex: %v", err)
	}
	if !bytes.Equal(got, log) {
		t.Fatalf("read %d bytes, not the segment's %d", len(got), len(log))
	}
	if _, _, err := a.FindTimestampFrom(ctx, "p/", &e, 1000, 0); !errors.Is(err, tier3.ErrChecksum) {
		t.Fatalf("timestamp lookup with a damaged .timeindex: %v, want a checksum error", err)
	}
}

// Views taken under a Hold stay intact while their chunks leave memory and
// other chunks are fetched; once released, the chunks' buffers are reused.
func TestHoldKeepsViewsUntilRelease(t *testing.T) {
	u := newUploaded(t, 400, tier3.ArchiveConfig{ChunkSize: 4 << 10, ReadAhead: -1, HotBytes: 16 << 10})
	a, s, log, e := u.a, u.s, u.log, u.e
	segs := []tier3.SegmentEntry{e}
	ctx := context.Background()
	// Every read's views are kept, held, until the whole log is read: the
	// log is 10 times the memory bound, so chunks are evicted under them.
	type held struct {
		views [][]byte
		h     *tier3.Hold
	}
	var reads []held
	var got []byte
	for next := int64(0); next < s.Next; {
		h := new(tier3.Hold)
		views, n, err := a.ReadVec(ctx, "p/", segs, next, 3000, nil, h)
		if err != nil || n == 0 {
			t.Fatalf("read at %d: %d bytes, %v", next, n, err)
		}
		reads = append(reads, held{views, h})
		next = afterBatches(slices.Concat(views...), next)
	}
	for _, r := range reads {
		for _, v := range r.views {
			got = append(got, v...)
		}
	}
	if !bytes.Equal(got, log) {
		t.Fatal("views held across evictions do not join into the log")
	}
	if n := a.ReadStats().BufferReuses; n != 0 {
		t.Fatalf("%d buffers reused while every chunk was held", n)
	}
	for _, r := range reads {
		r.h.Release()
	}
	// Read again, releasing each read's hold before the next: evicted
	// chunks' buffers go back to the pool and are received into again.
	got, err := readReleasing(ctx, a, segs, s.Next, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, log) {
		t.Fatal("second read does not return the log")
	}
	if a.ReadStats().BufferReuses == 0 {
		t.Fatal("no chunk buffer reused after the holds were released")
	}
}

// Readers sharing GETs, with memory for a few chunks only, so chunks are
// evicted and their buffers reused while other readers wait for them or
// hold views of them: every read returns the log's bytes.
func TestConcurrentReadersWithReusedBuffers(t *testing.T) {
	u := newUploaded(t, 400, tier3.ArchiveConfig{ChunkSize: 4 << 10, ReadAhead: 16 << 10,
		ReadAheadGET: 8 << 10, HotBytes: 12 << 10})
	a, s, log, e := u.a, u.s, u.log, u.e
	segs := []tier3.SegmentEntry{e}
	errs := make(chan error, 8)
	for r := range 8 {
		go func() {
			got, err := readReleasing(context.Background(), a, segs, s.Next, 2000+100*r)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, log) {
				errs <- fmt.Errorf("reader %d read %d bytes that are not the log", r, len(got))
				return
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if a.ReadStats().BufferReuses == 0 {
		t.Fatal("no chunk buffer reused")
	}
}

// afterBatches returns the offset after the last whole batch in b, or cur
// if b holds none.
func afterBatches(b []byte, cur int64) int64 {
	for len(b) >= 61 {
		cur = int64(binary.BigEndian.Uint64(b)) + int64(binary.BigEndian.Uint32(b[23:])) + 1
		b = b[int(binary.BigEndian.Uint32(b[8:]))+12:]
	}
	return cur
}

// readReleasing reads segs up to end in reads of maxBytes, releasing each
// read's hold before the next, and returns the bytes read.
func readReleasing(ctx context.Context, a *tier3.Archive, segs []tier3.SegmentEntry, end int64, maxBytes int) ([]byte, error) {
	var got []byte
	for next := int64(0); next < end; {
		var h tier3.Hold
		views, _, err := a.ReadVec(ctx, "p/", segs, next, maxBytes, nil, &h)
		if err != nil {
			return nil, err
		}
		start := len(got)
		got = append(got, slices.Concat(views...)...)
		h.Release()
		next = afterBatches(got[start:], next)
	}
	return got, nil
}
