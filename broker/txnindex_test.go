package broker

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier2"
)

// txnBatch is a transactional data batch of producer id with n records.
func txnBatch(id int64, n int) (batchHeader, []byte) {
	var recs []kmsg.Record
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte("v")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = append(recs, r)
	}
	var body []byte
	for _, r := range recs {
		body = r.AppendTo(body)
	}
	rb := kmsg.RecordBatch{Magic: 2, Attributes: attrTransactional, LastOffsetDelta: int32(n - 1), ProducerID: id, NumRecords: int32(n), Records: body}
	b := rb.AppendTo(nil)
	return readBatchHeader(b), b
}

func marker(id int64, commit bool) (batchHeader, []byte) {
	b := encodeMarker(id, 0, commit, 0)
	return readBatchHeader(b), b
}

// The index follows transactions through markers, truncation and a
// checkpoint round trip.
func TestTxnIndex(t *testing.T) {
	x := newTxnIndex()
	obs := func(h batchHeader, b []byte, base int64) { x.observe(h, base, b) }
	h, b := txnBatch(7, 3)
	obs(h, b, 10) // 10-12
	h, b = txnBatch(8, 2)
	obs(h, b, 13) // 13-14
	h, b = txnBatch(7, 1)
	obs(h, b, 15) // still producer 7's transaction
	if got := x.firstOpen(); got != 10 {
		t.Fatalf("first open %d, want 10", got)
	}
	h, b = marker(7, false)
	obs(h, b, 16)
	if got := x.firstOpen(); got != 13 {
		t.Fatalf("after 7 aborted: first open %d, want 13", got)
	}
	h, b = marker(8, true)
	obs(h, b, 17)
	if got := x.firstOpen(); got != -1 {
		t.Fatalf("after both ended: first open %d, want none", got)
	}
	ab := x.abortedIn(0, 100)
	if len(ab) != 1 || ab[0].ProducerID != 7 || ab[0].FirstOffset != 10 {
		t.Fatalf("aborted %+v, want producer 7 from 10", ab)
	}
	if got := x.abortedIn(17, 100); len(got) != 0 {
		t.Fatalf("aborted past its marker: %+v", got)
	}
	if got := x.abortedIn(0, 10); len(got) != 0 {
		t.Fatalf("aborted before its first offset: %+v", got)
	}

	// A truncation below both markers reopens both transactions; one
	// below producer 8's first record forgets it.
	y := x.clone()
	y.truncate(16)
	if y.firstOpen() != 10 || len(y.aborted) != 0 || y.open[8] != 13 {
		t.Fatalf("truncated at 16: open %v aborted %v", y.open, y.aborted)
	}
	y.truncate(13)
	if _, ok := y.open[8]; ok || y.open[7] != 10 {
		t.Fatalf("truncated at 13: open %v", y.open)
	}

	// Checkpoint round trip, through the producers file.
	fs := vfs.Default
	dir := t.TempDir()
	x.sealed(18)
	h, b = txnBatch(9, 1)
	x.observe(h, 20, b)
	if err := tier2.WriteProducers(fs, dir, 21, nil, x.snapshot()); err != nil {
		t.Fatal(err)
	}
	end, _, txns, ok, err := tier2.ReadProducers(fs, dir)
	if err != nil || !ok || end != 21 {
		t.Fatalf("read back: end %d ok %v err %v", end, ok, err)
	}
	z := txnIndexFromSnapshot(txns)
	if z.firstOpen() != 20 || !slices.Equal(z.aborted, x.aborted) {
		t.Fatalf("round trip: open %v aborted %v, want open at 20 and %v", z.open, z.aborted, x.aborted)
	}
	z.pruneBelow(17)
	if len(z.aborted) != 0 {
		t.Fatalf("aborted below the log start kept: %v", z.aborted)
	}
}

// A producers checkpoint written with no transactions reads as none
// (tier2's TestProducersCheckpointFormats reads one of an earlier
// release).
func TestProducersCheckpointWithoutTxns(t *testing.T) {
	fs := vfs.Default
	dir := t.TempDir()
	if err := tier2.WriteProducers(fs, dir, 5, []tier2.ProducerState{{ID: 1, Epoch: 2}}, tier2.Txns{}); err != nil {
		t.Fatal(err)
	}
	_, ps, txns, ok, err := tier2.ReadProducers(fs, dir)
	if err != nil || !ok || len(ps) != 1 || len(txns.Open)+len(txns.Aborted) != 0 {
		t.Fatalf("got %v %+v %v %v", ps, txns, ok, err)
	}
}
