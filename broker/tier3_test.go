package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// flakyStore fails every call while down is set, Puts of keys with
// failPut as a substring, and reads of keys with failGet as one: an object
// store that is unreachable, an uploader that dies between writes, an
// object that cannot be read.
type flakyStore struct {
	tier3.Store
	down    atomic.Bool
	failPut atomic.Value // string
	failGet atomic.Value // string
	puts    atomic.Int64
}

func (f *flakyStore) checkGet(key string) error {
	if s, _ := f.failGet.Load().(string); s != "" && strings.Contains(key, s) {
		return errStoreDown
	}
	return f.check()
}

var errStoreDown = errors.New("test: object store down")

func (f *flakyStore) check() error {
	if f.down.Load() {
		return errStoreDown
	}
	return nil
}

func (f *flakyStore) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) (tier3.ObjectInfo, error) {
	if err := f.check(); err != nil {
		return tier3.ObjectInfo{}, err
	}
	if s, _ := f.failPut.Load().(string); s != "" && strings.Contains(key, s) {
		return tier3.ObjectInfo{}, errStoreDown
	}
	f.puts.Add(1)
	return f.Store.Put(ctx, key, body, size)
}

func (f *flakyStore) Get(ctx context.Context, key string) (io.ReadCloser, tier3.ObjectInfo, error) {
	if err := f.checkGet(key); err != nil {
		return nil, tier3.ObjectInfo{}, err
	}
	return f.Store.Get(ctx, key)
}

func (f *flakyStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := f.checkGet(key); err != nil {
		return nil, err
	}
	return f.Store.GetRange(ctx, key, off, n)
}

func (f *flakyStore) Head(ctx context.Context, key string) (tier3.ObjectInfo, error) {
	if err := f.check(); err != nil {
		return tier3.ObjectInfo{}, err
	}
	return f.Store.Head(ctx, key)
}

func (f *flakyStore) List(ctx context.Context, prefix string) ([]tier3.ObjectInfo, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.Store.List(ctx, prefix)
}

func (f *flakyStore) Delete(ctx context.Context, key string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func tier3Config(store tier3.Store) func(*Config) {
	return func(c *Config) {
		tier2Config(c)
		c.Tier3 = store
		c.Tier3ChunkBytes = 4 << 10 // many chunks per segment
		c.Tier3ReadAheadBytes = 16 << 10
		c.Tier3RetryMin = 5 * time.Millisecond
		c.Tier3RetryMax = 50 * time.Millisecond
		c.Tier3CacheBytes = 1 << 20
	}
}

// fillTiered writes n batches of 3 records with increasing timestamps
// from ts0 and waits until every sealed segment is archived.
func fillTiered(t *testing.T, b *Broker, p *partition, batches int, ts0 int64) int {
	t.Helper()
	n := 0
	for i := 0; i < batches; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, ts0+int64(n))))
		n += 3
	}
	waitArchived(t, p)
	return n
}

// waitArchived waits until at least one segment is sealed and every
// sealed segment still local is archived (the cleaner, kicked after
// uploads, may already have deleted local copies).
func waitArchived(t *testing.T, p *partition) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs)+len(p.archSegs) == 0 || p.activeBytes >= int64(p.topic.segmentBytes.Load()) {
			return fmt.Errorf("not sealed yet")
		}
		for _, s := range p.segs {
			if !s.Archived() {
				return fmt.Errorf("segment %d not archived", s.Base)
			}
		}
		return nil
	})
}

// readAllTiered reads p from its log start to its high watermark the way
// Fetch does, in maxBytes steps.
func readAllTiered(t *testing.T, b *Broker, p *partition, maxBytes int) []testRecord {
	t.Helper()
	logStart, hw := p.offsets()
	var out []testRecord
	for next := logStart; next < hw; {
		buf, err := b.readPartition(p, next, maxBytes, nil)
		if err != nil {
			t.Fatalf("readPartition(%d): %v", next, err)
		}
		if len(buf) == 0 {
			t.Fatalf("readPartition(%d) returned nothing below hw %d", next, hw)
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

// Sealed segments are archived, local.retention deletes the local copies
// only once archived, and every record reads back across the archive /
// local boundary, before and after a restart (the new broker resumes from
// the manifest); ListOffsets finds timestamps in both tiers.
func TestTier3ArchiveAndReadBack(t *testing.T) {
	store := tier3.NewMemStore()
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "arch", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	const ts0 = 1_700_000_000_000
	n := fillTiered(t, b, p, 200, ts0)
	sealed := segCount(p)
	b.clean(time.Now())
	if got := segCount(p); got != 0 {
		t.Fatalf("%d of %d archived local segments kept with local.retention.bytes=0", got, sealed)
	}
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d after local retention; want 0 (the archive holds the data)", ls)
	}
	for _, maxBytes := range []int{1, 700, 1 << 20} {
		checkRecords(t, readAllTiered(t, b, p, maxBytes), n)
	}
	local := p.localStart()
	if local == 0 {
		t.Fatal("local log start 0: nothing was read from the archive")
	}
	for _, c := range []struct{ ts, want int64 }{
		{ts0 - 5, 0}, {ts0 + 10, 10}, {ts0 + local - 1, local - 1}, {ts0 + local + 2, local + 2}, {ts0 + int64(n) + 1, -1},
	} {
		if off, _, code := b.listOffset(p, c.ts, false); code != 0 || off != c.want {
			t.Errorf("ListOffsets(%d) = %d (code %d), want %d", c.ts-ts0, off, code, c.want)
		}
	}
	if off, _, _ := b.listOffset(p, listEarliestLoc, false); off != local {
		t.Errorf("earliest local = %d, want %d", off, local)
	}
	if off, _, _ := b.listOffset(p, listEarliest, false); off != 0 {
		t.Errorf("earliest = %d, want 0", off)
	}
	if off, _, _ := b.listOffset(p, listLatestTiered, false); off != local-1 {
		t.Errorf("latest tiered = %d, want %d", off, local-1)
	}

	b.Close()
	b = testBroker(t, dir, tier3Config(store))
	p = b.lookupTopic("arch").partitions[0]
	waitArchLoaded(t, p)
	if got := p.localStart(); got != local {
		// The WAL still holds the archived batches: replaying them would
		// resurrect them locally.
		t.Fatalf("local log start %d after restart, want %d", got, local)
	}
	checkRecords(t, readAllTiered(t, b, p, 1000), n)
	if off, _, code := b.listOffset(p, ts0+7, false); code != 0 || off != 7 {
		t.Errorf("after restart ListOffsets = %d (code %d), want 7", off, code)
	}
}

// While the store is down nothing local is deleted and produce goes on;
// when it returns the uploads catch up and local retention proceeds.
func TestTier3StoreDownKeepsLocal(t *testing.T) {
	store := &flakyStore{Store: tier3.NewMemStore()}
	b := testBroker(t, t.TempDir(), tier3Config(store))
	p := testPartition(t, b, "down", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	store.down.Store(true)
	n := 0
	for i := 0; i < 100; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, 1)))
		n += 3
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 5 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // several failed upload attempts
	b.clean(time.Now())
	p.mu.RLock()
	for _, s := range p.segs {
		if s.Archived() {
			t.Errorf("segment %d marked archived while the store is down", s.Base)
		}
	}
	kept := len(p.segs)
	p.mu.RUnlock()
	if kept < 5 {
		t.Fatalf("%d segments left; local retention deleted unarchived data", kept)
	}
	checkRecords(t, readAllTiered(t, b, p, 1<<20), n)
	store.down.Store(false)
	waitArchived(t, p)
	b.clean(time.Now())
	if segCount(p) != 0 {
		t.Fatalf("%d local segments after catching up", segCount(p))
	}
	checkRecords(t, readAllTiered(t, b, p, 1<<20), n)
}

// An upload that dies after its segment objects but before the manifest
// leaves nothing a manifest names; the next uploader deletes the orphans
// and uploads again.
func TestTier3KilledMidUpload(t *testing.T) {
	mem := tier3.NewMemStore()
	store := &flakyStore{Store: mem}
	store.failPut.Store("manifest.json")
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "mid", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	for i := 0; i < 30; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(i*3, 3, 1)))
	}
	waitFor(t, 5*time.Second, func() error {
		objs, _ := mem.List(context.Background(), "topics/")
		if len(objs) < 3 {
			return fmt.Errorf("%d objects", len(objs))
		}
		return nil
	})
	b.Close()
	if m, err := tier3.LoadManifest(context.Background(), mem, p.topic.id, 0); err != nil || len(m.Segments) != 0 {
		t.Fatalf("manifest after failed writes: %+v, %v", m, err)
	}
	store.failPut.Store("")
	b = testBroker(t, dir, tier3Config(store))
	p = b.lookupTopic("mid").partitions[0]
	waitArchived(t, p)
	m, err := tier3.LoadManifest(context.Background(), mem, p.topic.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, e := range m.Segments {
		for _, k := range []string{e.Log, e.Index, e.TimeIndex} {
			named[tier3.PartitionPrefix(p.topic.id, 0)+k] = true
			if _, err := mem.Head(context.Background(), tier3.PartitionPrefix(p.topic.id, 0)+k); err != nil {
				t.Errorf("manifest names %s: %v", k, err)
			}
		}
	}
	objs, _ := mem.List(context.Background(), tier3.PartitionPrefix(p.topic.id, 0))
	for _, o := range objs {
		if !named[o.Key] && !strings.HasSuffix(o.Key, "manifest.json") {
			t.Errorf("orphan object %s left", o.Key)
		}
	}
	b.clean(time.Now())
	checkRecords(t, readAllTiered(t, b, p, 1<<20), 90)
}

// A damaged archived chunk fails its CRC check and is never served.
func TestTier3CorruptObjectNotServed(t *testing.T) {
	mem := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(mem))
	p := testPartition(t, b, "rot", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	fillTiered(t, b, p, 60, 1)
	b.clean(time.Now())
	p.mu.RLock()
	e := p.archSegs[0]
	p.mu.RUnlock()
	if err := mem.Corrupt(tier3.PartitionPrefix(p.topic.id, 0)+e.Log, e.Size/2); err != nil {
		t.Fatal(err)
	}
	var bad error
	for next := int64(0); next < e.Next; {
		buf, err := b.readPartition(p, next, 100, nil)
		if err != nil {
			bad = err
			break
		}
		_, last := decodeRecords(t, buf) // a served batch always passes its CRC
		next = last + 1
	}
	if !errors.Is(bad, tier3.ErrChecksum) {
		t.Fatalf("reading a damaged segment: %v, want a checksum error", bad)
	}
}

// retention.ms applies to the archive: archived segments past it leave
// the manifest and the bucket, and the log start moves past them.
func TestTier3ArchiveRetention(t *testing.T) {
	mem := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(mem))
	p := testPartition(t, b, "old", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	old := time.Now().Add(-48 * time.Hour).UnixMilli()
	n := fillTiered(t, b, p, 100, old)
	b.clean(time.Now())
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d", ls)
	}
	setTopicConfig(t, b, "old", "retention.ms", fmt.Sprint(24*time.Hour/time.Millisecond))
	b.clean(time.Now())
	ls, _ := p.offsets()
	p.mu.RLock()
	arch := p.archSegs
	p.mu.RUnlock()
	if ls == 0 || len(arch) != 0 {
		t.Fatalf("after retention.ms: log start %d, %d archived segments left", ls, len(arch))
	}
	objs, _ := mem.List(context.Background(), tier3.PartitionPrefix(p.topic.id, 0))
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, "manifest.json") {
			t.Errorf("object %s left after archive retention", o.Key)
		}
	}
	if got := readAllTiered(t, b, p, 1<<20); len(got) != n-int(ls) {
		t.Fatalf("%d records readable, want %d", len(got), n-int(ls))
	}
}

// RestoreTopic rebuilds a topic from its bucket into an empty data
// directory: every archived record reads back and new records continue
// after them.
func TestTier3Restore(t *testing.T) {
	mem := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(mem))
	p := testPartition(t, b, "dr", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	fillTiered(t, b, p, 100, time.Now().UnixMilli())
	p.mu.RLock()
	end := p.archSegs[len(p.archSegs)-1].Next
	p.mu.RUnlock()
	b.Close()

	dir := t.TempDir()
	parts, err := RestoreTopic(context.Background(), dir, mem, "dr")
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].LogStart != 0 || parts[0].End != end {
		t.Fatalf("restored %+v, want [0, %d)", parts, end)
	}
	if _, err := RestoreTopic(context.Background(), dir, mem, "dr"); err == nil {
		t.Fatal("restoring onto an existing topic succeeded")
	}
	b2 := testBroker(t, dir, tier3Config(mem))
	p2 := b2.lookupTopic("dr").partitions[0]
	if p2.topic.id != p.topic.id {
		t.Fatal("restored topic has a new ID")
	}
	waitArchLoaded(t, p2)
	checkRecords(t, readAllTiered(t, b2, p2, 1<<20), int(end))
	if off := appendDurable(t, b2, p2, makeRecordBatch(seqRecords(int(end), 3, time.Now().UnixMilli()))); off != end {
		t.Fatalf("first new record got offset %d, want %d", off, end)
	}
	checkRecords(t, readAllTiered(t, b2, p2, 1<<20), int(end)+3)
}

// A restart after local retention deleted archived segments, with no log
// start checkpoint ever written, keeps the log start at 0: the archive
// holds the offsets below the first local segment.
func TestTier3RestartKeepsArchivedLogStart(t *testing.T) {
	mem := tier3.NewMemStore()
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(mem))
	p := testPartition(t, b, "ls", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	n := fillTiered(t, b, p, 100, time.Now().UnixMilli())
	setTopicConfig(t, b, "ls", "local.retention.bytes", "4000") // keep the newest local segments
	b.clean(time.Now())
	if segCount(p) == 0 || p.localStart() == 0 {
		t.Fatalf("want some local segments, deleted from the start: %d, local start %d", segCount(p), p.localStart())
	}
	b.Close()
	b = testBroker(t, dir, tier3Config(mem))
	p = b.lookupTopic("ls").partitions[0]
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d after restart, want 0", ls)
	}
	waitArchLoaded(t, p)
	checkRecords(t, readAllTiered(t, b, p, 1<<20), n)
}

// Deleting a topic deletes its archived objects too.
func TestTier3DeletedTopicArchiveRemoved(t *testing.T) {
	mem := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(mem))
	p := testPartition(t, b, "gone", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	fillTiered(t, b, p, 50, time.Now().UnixMilli())
	if objs, _ := mem.List(context.Background(), tier3.TopicPrefix(p.topic.id)); len(objs) < 4 {
		t.Fatalf("%d objects archived", len(objs))
	}
	if err := b.deleteTopic(b.lookupTopic("gone")); err != nil {
		t.Fatal(err)
	}
	b.clean(time.Now())
	waitFor(t, 5*time.Second, func() error {
		if objs, _ := mem.List(context.Background(), tier3.TopicPrefix(p.topic.id)); len(objs) > 0 {
			return fmt.Errorf("%d objects left, e.g. %s", len(objs), objs[0].Key)
		}
		return nil
	})
}
