package tier3_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// uploadTail archives segment s from offset from on, as a new leader does
// when the archive already holds the offsets before it.
func uploadTail(t *testing.T, a *tier3.Archive, s *tier2.Segment, from int64) tier3.SegmentEntry {
	t.Helper()
	tail, err := s.TailFrom(from)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Release()
	e, err := a.Upload(context.Background(), "p/", tier3.SegmentSource{Base: tail.Base, Next: tail.Next, Size: tail.Size,
		MaxTs: tail.MaxTs, MaxTsPos: tail.MaxTsPos, Log: tail.Log, Index: tail.Index, TimeIndex: tail.TimeIndex})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A manifest an earlier release wrote after a failover holds overlapping
// segments: one replica's [0, 150), another's [100, 200) and a third
// wholly inside the first. It loads (the covered one dropped), says it
// overlaps, and every offset reads back once, in order, across the
// overlap; a tail cut at the first's end reads the same.
func TestOverlappingManifestOfEarlierRelease(t *testing.T) {
	u := newUploaded(t, 30, tier3.ArchiveConfig{ChunkSize: 1 << 10}) // [0, 150)
	whole, log := testSegment(t, 40)                                 // the same log, to 200
	over := uploadTail(t, u.a, whole, 100)                           // [100, 200)
	inner := u.e                                                     // a stale entry wholly inside [0, 150)
	inner.Base, inner.Next = 50, 100
	raw, err := json.Marshal(tier3.Manifest{Version: 1, Generation: 3, Segments: []tier3.SegmentEntry{u.e, inner, over}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tier3.ParseManifest(raw)
	if err != nil {
		t.Fatalf("an earlier release's overlapping manifest: %v", err)
	}
	if len(m.Segments) != 2 || m.Segments[1].Base != 100 || !m.Overlaps() {
		t.Fatalf("loaded segments %+v, overlaps %v; want [0,150) and [100,200), overlapping", m.Segments, m.Overlaps())
	}
	got, err := readReleasing(context.Background(), u.a, m.Segments, 200, 700)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, log) {
		t.Fatalf("read %d bytes across the overlap; want the %d of the log, equal", len(got), len(log))
	}

	tail := uploadTail(t, u.a, whole, 150) // what this release uploads instead
	if tail.Base != 150 || tail.Next != 200 {
		t.Fatalf("tail entry [%d, %d)", tail.Base, tail.Next)
	}
	got, err = readReleasing(context.Background(), u.a, []tier3.SegmentEntry{u.e, tail}, 200, 700)
	if err != nil || !bytes.Equal(got, log) {
		t.Fatalf("read of [0,150)+[150,200): %d bytes, %v; want the log", len(got), err)
	}
}

// Sweep deletes what no manifest names at or above the start of what the
// manifest governs (a killed or deposed upload), never below it: those
// objects may be history whose manifest was lost and written anew.
func TestSweepKeepsObjectsBelowTheManifest(t *testing.T) {
	u := newUploaded(t, 30, tier3.ArchiveConfig{ChunkSize: 1 << 10}) // [0, 150), the old history
	whole, _ := testSegment(t, 60)
	named := uploadTail(t, u.a, whole, 150)  // [150, 300), in the manifest
	orphan := uploadTail(t, u.a, whole, 200) // [200, 300), an upload that lost
	m := &tier3.Manifest{Version: 1, Generation: 1, Exists: true, Segments: []tier3.SegmentEntry{named}}
	n, err := u.a.Sweep(context.Background(), "p/", m)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("swept %d objects; want the 3 of the orphan", n)
	}
	for _, e := range []tier3.SegmentEntry{u.e, named} {
		if _, err := u.store.Head(context.Background(), "p/"+e.Log); err != nil {
			t.Fatalf("%s swept: %v", e.Log, err)
		}
	}
	if _, err := u.store.Head(context.Background(), "p/"+orphan.Log); err == nil {
		t.Fatal("the orphan above the manifest's start was kept")
	}
}
