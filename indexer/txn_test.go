package indexer

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier3"
)

// txnLog is a one-partition Log of raw batches with aborted transactions.
type txnLog struct {
	batches [][]byte
	aborted []tier3.AbortedTxn
	end     int64
}

func (l *txnLog) add(producer int64, attrs int16, values ...string) {
	var raw []byte
	for i, v := range values {
		kr := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		kr.Length = int32(len(kr.AppendTo(nil)) - 1)
		raw = kr.AppendTo(raw)
	}
	rb := kmsg.RecordBatch{FirstOffset: l.end, PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrs,
		LastOffsetDelta: int32(len(values) - 1), ProducerID: producer, FirstSequence: -1, NumRecords: int32(len(values)), Records: raw}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32c))
	l.batches = append(l.batches, b)
	l.end += int64(len(values))
}

func (l *txnLog) Topic(context.Context, string) (Topic, error) {
	return Topic{Name: "t", Partitions: 1, SearchEnabled: true}, nil
}

func (l *txnLog) Partition(context.Context, Topic, int32) (Partition, error) {
	return Partition{End: l.end, Archived: []tier3.SegmentEntry{{Base: 0, Next: l.end, Aborted: l.aborted}}}, nil
}

func (l *txnLog) Read(_ context.Context, _ Topic, _ int32, offset int64, _ int) ([]byte, error) {
	var out []byte
	for _, b := range l.batches {
		if base := int64(binary.BigEndian.Uint64(b)); base+int64(int32(binary.BigEndian.Uint32(b[23:]))) >= offset {
			out = append(out, b...)
		}
	}
	return out, nil
}

// Search sees what a read_committed consumer sees: neither transaction
// markers nor the records of aborted transactions.
func TestScanSkipsAbortedAndMarkers(t *testing.T) {
	l := &txnLog{}
	l.add(-1, 0, "plain-0", "plain-1")    // 0-1
	l.add(7, 0x10, "kept-0", "kept-1")    // 2-3, committed below
	l.add(8, 0x10, "dropped-0")           // 4, aborted below
	l.add(7, 0x30, "commit-marker")       // 5
	l.add(8, 0x30, "abort-marker")        // 6
	l.add(8, 0x10, "later-8", "later-8b") // 7-8, a later transaction of 8: kept
	l.add(8, 0x30, "commit-marker-2")     // 9
	l.aborted = []tier3.AbortedTxn{{Producer: 8, First: 4, Last: 6}}
	var got []string
	err := scan(context.Background(), l, Topic{Name: "t", Partitions: 1}, 0, 0, l.end, func(r *Record) error {
		got = append(got, string(r.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"plain-0", "plain-1", "kept-0", "kept-1", "later-8", "later-8b"}
	if len(got) != len(want) {
		t.Fatalf("scanned %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("scanned %q, want %q", got, want)
		}
	}
}
