package tier2

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/chronik-go/chronik/internal/vfs"
)

// A producers checkpoint written by a release that kept no transactions
// (the windows and nothing after them) still reads, as no transactions;
// one written now round-trips its open and aborted transactions.
func TestProducersCheckpointFormats(t *testing.T) {
	fs := vfs.Default
	dir := t.TempDir()
	// The earlier payload: sealed end, count, then one producer with one
	// batch.
	p := binary.LittleEndian.AppendUint64(nil, 42)
	p = binary.LittleEndian.AppendUint32(p, 1)
	p = binary.LittleEndian.AppendUint64(p, 7)
	p = binary.LittleEndian.AppendUint16(p, 3)
	p = append(p, 1)
	p = binary.LittleEndian.AppendUint32(p, 0)
	p = binary.LittleEndian.AppendUint32(p, 4)
	p = binary.LittleEndian.AppendUint64(p, 30)
	if err := writeFileAtomic(fs, filepath.Join(dir, "producers"), appendCheckpoint(nil, kindProducers, p), true); err != nil {
		t.Fatal(err)
	}
	end, ps, txns, ok, err := ReadProducers(fs, dir)
	if err != nil || !ok || end != 42 || len(ps) != 1 || ps[0].ID != 7 || len(ps[0].Batches) != 1 {
		t.Fatalf("old checkpoint: end %d producers %+v ok %v err %v", end, ps, ok, err)
	}
	if len(txns.Open)+len(txns.Aborted) != 0 {
		t.Fatalf("old checkpoint read with transactions %+v", txns)
	}

	want := Txns{Open: []TxnRange{{Producer: 9, First: 40, Last: -1}}, Aborted: []TxnRange{{Producer: 7, First: 10, Last: 20}}}
	if err := WriteProducers(fs, dir, 50, ps, want); err != nil {
		t.Fatal(err)
	}
	_, _, got, ok, err := ReadProducers(fs, dir)
	if err != nil || !ok || len(got.Open) != 1 || got.Open[0] != want.Open[0] || len(got.Aborted) != 1 || got.Aborted[0] != want.Aborted[0] {
		t.Fatalf("round trip: %+v ok %v err %v, want %+v", got, ok, err, want)
	}

	// A trailer cut short is corrupt, not silently empty.
	b := appendCheckpoint(nil, kindProducers, append(p, 1, 0, 0, 0, 9))
	if err := writeFileAtomic(fs, filepath.Join(dir, "producers"), b, true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, _, err := ReadProducers(fs, dir); err == nil {
		t.Fatal("a truncated transactions trailer was read without error")
	}
}
