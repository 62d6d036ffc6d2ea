package broker

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// Tier 3 across the paths operators take: replicas that sealed at other
// offsets than the leader that archived, a manifest lost from the store,
// a stale leader's writes.

// copyDataDir copies a stopped broker's data directory: a second replica
// holding the same log.
func copyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// manifestOf reads the partition's manifest from the store.
func manifestOf(t *testing.T, store tier3.Store, p *partition) *tier3.Manifest {
	t.Helper()
	m, err := tier3.LoadManifest(context.Background(), store, p.topic.id, p.index)
	if err != nil {
		t.Fatalf("load manifest: %v", err)
	}
	return m
}

// waitArchLoaded waits until the partition's uploader has published a
// manifest for reads.
func waitArchLoaded(t *testing.T, p *partition) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if !p.archLoaded {
			return fmt.Errorf("manifest not loaded")
		}
		return nil
	})
}

// checkContiguous fails unless m's segments follow one another exactly
// from first to end.
func checkContiguous(t *testing.T, m *tier3.Manifest, first, end int64) {
	t.Helper()
	next := first
	for _, e := range m.Segments {
		if e.Base != next {
			t.Fatalf("manifest segments %v: one starts at %d, want %d", segRanges(m), e.Base, next)
		}
		next = e.Next
	}
	if next != end {
		t.Fatalf("manifest segments %v end at %d, want %d", segRanges(m), next, end)
	}
}

func segRanges(m *tier3.Manifest) []string {
	var out []string
	for _, e := range m.Segments {
		out = append(out, fmt.Sprintf("[%d,%d)", e.Base, e.Next))
	}
	return out
}

// Two replicas of one log seal at different offsets. The first archives
// [0, 60); the second then seals [0, 180) as one segment and must archive
// only [60, 180): the archive stays one log of contiguous segments that
// every reader (and LoadManifest) accepts, and every record reads back
// from it once the local copies are gone. Before, the second uploaded its
// whole segment over the first and the manifest held overlapping segments,
// which stopped every later upload and every read of the archive.
func TestTier3ReplicaSealedAtOtherOffsets(t *testing.T) {
	store := tier3.NewMemStore()
	dirP := t.TempDir()
	noSeal := map[string]string{"segment.bytes": "10000000", "segment.ms": "3600000", "retention.ms": "-1"}
	b := testBroker(t, dirP, tier3Config(store))
	p := testPartition(t, b, "s", noSeal)
	for i := 0; i < 20; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(3*i, 3, 1000)))
	}
	b.Close()
	dirQ := copyDataDir(t, dirP)

	// Replica P seals everything it holds, [0, 60), and archives it.
	b = testBroker(t, dirP, tier3Config(store))
	setTopicConfig(t, b, "s", "segment.ms", "1")
	p = b.lookupTopic("s").partitions[0]
	waitArchived(t, p)
	checkContiguous(t, manifestOf(t, store, p), 0, 60)
	b.Close()

	// Replica Q holds the same 60 records, unsealed, gets 120 more and
	// seals the 180 as one segment.
	q := testBroker(t, dirQ, tier3Config(store))
	pq := q.lookupTopic("s").partitions[0]
	for i := 20; i < 60; i++ {
		appendDurable(t, q, pq, makeRecordBatch(seqRecords(3*i, 3, 1000)))
	}
	setTopicConfig(t, q, "s", "segment.ms", "1")
	waitFor(t, 10*time.Second, func() error {
		if end := manifestOf(t, store, pq).End(); end != 180 {
			return fmt.Errorf("archive ends at %d", end)
		}
		pq.mu.RLock()
		defer pq.mu.RUnlock()
		if len(pq.segs) != 1 || !pq.segs[0].Archived() {
			return fmt.Errorf("the sealed segment is not marked archived yet")
		}
		return nil
	})
	m := manifestOf(t, store, pq)
	checkContiguous(t, m, 0, 180)
	if len(m.Segments) != 2 {
		t.Fatalf("manifest segments %v; want [0,60) and the tail [60,180)", segRanges(m))
	}
	setTopicConfig(t, q, "s", "local.retention.bytes", "0")
	q.clean(time.Now())
	if n := segCount(pq); n != 0 {
		t.Fatalf("%d local segments left with local.retention.bytes=0", n)
	}
	checkRecords(t, readAllTiered(t, q, pq, 500), 180)
}

// A manifest lost from the store (a lifecycle rule, a hand's delete) is
// not "nothing archived": the log start stays, archived offsets stay
// readable, and the leader writes the manifest back from its copy once it
// finds every object the copy names. Before, a restart read the missing
// manifest as an empty archive and moved the log start up to the local
// log, making everything archived unreadable for good.
func TestTier3LostManifestRestored(t *testing.T) {
	store := tier3.NewMemStore()
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "lost", map[string]string{"segment.bytes": "2000", "retention.ms": "-1", "local.retention.bytes": "0"})
	n := fillTiered(t, b, p, 100, 1000)
	b.clean(time.Now())
	before := manifestOf(t, store, p)
	b.Close()
	key := tier3.PartitionPrefix(p.topic.id, 0) + "manifest.json"
	if err := store.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}

	b = testBroker(t, dir, tier3Config(store))
	p = b.lookupTopic("lost").partitions[0]
	waitArchLoaded(t, p)
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d after a restart with the manifest gone; want 0", ls)
	}
	waitFor(t, 10*time.Second, func() error {
		m := manifestOf(t, store, p)
		if !m.Exists || len(m.Segments) != len(before.Segments) {
			return fmt.Errorf("manifest in the store: exists %v, %d segments; had %d", m.Exists, len(m.Segments), len(before.Segments))
		}
		return nil
	})
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d after the manifest was restored; want 0", ls)
	}
	checkRecords(t, readAllTiered(t, b, p, 1<<20), n)
}

// A manifest lost together with the objects it named cannot be restored:
// the partition is not archived any more (the failure shows in the upload
// error count) rather than archived anew over the hole, and the log start
// does not move.
func TestTier3LostManifestAndObjectsNotOverwritten(t *testing.T) {
	store := tier3.NewMemStore()
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "gone", map[string]string{"segment.bytes": "2000", "retention.ms": "-1", "local.retention.bytes": "0"})
	fillTiered(t, b, p, 60, 1000)
	b.clean(time.Now())
	b.Close()
	objs, err := store.List(context.Background(), tier3.PartitionPrefix(p.topic.id, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := store.Delete(context.Background(), o.Key); err != nil {
			t.Fatal(err)
		}
	}

	b = testBroker(t, dir, tier3Config(store))
	p = b.lookupTopic("gone").partitions[0]
	for i := 0; i < 40; i++ { // more segments to upload
		appendDurable(t, b, p, makeRecordBatch(seqRecords(1000+3*i, 3, 5000)))
	}
	waitFor(t, 10*time.Second, func() error {
		if b.tier.uploadErrors.Load() < 2 {
			return fmt.Errorf("%d failed upload passes", b.tier.uploadErrors.Load())
		}
		return nil
	})
	if m := manifestOf(t, store, p); m.Exists {
		t.Fatalf("a new manifest %v was written over the lost archive", segRanges(m))
	}
	if ls, _ := p.offsets(); ls != 0 {
		t.Fatalf("log start %d; want 0", ls)
	}
}

// A manifest written under a later leader epoch means this broker was
// deposed: it neither uploads nor writes, whatever it holds locally.
func TestTier3LaterEpochManifestStopsWriter(t *testing.T) {
	store := tier3.NewMemStore()
	dir := t.TempDir()
	b := testBroker(t, dir, tier3Config(store))
	p := testPartition(t, b, "fenced", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	fillTiered(t, b, p, 30, 1000)
	b.Close()
	m := manifestOf(t, store, p)
	later := *m
	later.Generation++
	later.LeaderEpoch = 7
	if err := tier3.WriteManifest(context.Background(), store, p.topic.id, m, &later); err != nil {
		t.Fatal(err)
	}

	b = testBroker(t, dir, tier3Config(store))
	p = b.lookupTopic("fenced").partitions[0]
	for i := 0; i < 40; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(500+3*i, 3, 5000)))
	}
	waitFor(t, 10*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) < 2 || !p.archLoaded {
			return fmt.Errorf("%d segments sealed", len(p.segs))
		}
		return nil
	})
	b.uploadDue(context.Background())
	got := manifestOf(t, store, p)
	if got.Generation != later.Generation || got.LeaderEpoch != 7 || len(got.Segments) != len(later.Segments) {
		t.Fatalf("a writer at epoch 0 changed the epoch-7 manifest: generation %d epoch %d, %d segments", got.Generation, got.LeaderEpoch, len(got.Segments))
	}
}

// A leader deposed while it runs (paused, cut off) has the manifest of its
// epoch in hand when its successor fences the store. Its next manifest
// write is conditional on the version it read, so it fails; it reads the
// manifest again, finds a later epoch and stops. Before, its late write
// replaced the successor's manifest with its own stale one.
func TestTier3DeposedWritersLateWriteFails(t *testing.T) {
	store := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(store))
	p := testPartition(t, b, "late", map[string]string{"segment.bytes": "2000", "retention.ms": "-1"})
	fillTiered(t, b, p, 30, 1000)
	m := manifestOf(t, store, p)

	// The successor fences the manifest at a later epoch while this
	// broker still holds the old version.
	later := *m
	later.Generation++
	later.LeaderEpoch = 5
	if err := tier3.WriteManifest(context.Background(), store, p.topic.id, m, &later); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // more segments for this broker to upload
		appendDurable(t, b, p, makeRecordBatch(seqRecords(500+3*i, 3, 5000)))
	}
	waitFor(t, 10*time.Second, func() error {
		if b.tier.uploadErrors.Load()+b.tier.uploaded.Load() == 0 {
			return fmt.Errorf("no upload pass yet")
		}
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) < 3 {
			return fmt.Errorf("%d segments sealed", len(p.segs))
		}
		return nil
	})
	b.uploadDue(context.Background())
	b.uploadDue(context.Background())
	got := manifestOf(t, store, p)
	if got.ETag != later.ETag || got.LeaderEpoch != 5 {
		t.Fatalf("the deposed writer replaced the epoch-5 manifest: now generation %d epoch %d, %d segments", got.Generation, got.LeaderEpoch, len(got.Segments))
	}
}
