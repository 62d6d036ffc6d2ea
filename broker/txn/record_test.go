package txn

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The records are Kafka's TransactionLogKey v0 and TransactionLogValue v0,
// byte for byte.
func TestRecordIsKafkasFormat(t *testing.T) {
	tr := transit{to: stateOngoing, producerID: 5, prevProducerID: 5, epoch: 1, timeoutMs: 60000,
		parts: []TopicPartition{tp("t", 0), tp("t", 1)}, startMs: 9, lastUpdateMs: 10}
	rec := encodeRecord("tx", tr)
	hexOf := func(s string) []byte {
		b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wantKey := hexOf("0000 0002 7478")
	wantValue := hexOf(`0000 0000000000000005 0001 0000ea60 01
		00000001 0001 74 00000002 00000000 00000001
		000000000000000a 0000000000000009`)
	if !bytes.Equal(rec.Key, wantKey) {
		t.Errorf("key %x, want %x", rec.Key, wantKey)
	}
	if !bytes.Equal(rec.Value, wantValue) {
		t.Errorf("value %x, want %x", rec.Value, wantValue)
	}

	// Empty: a null partition array, as Kafka writes it.
	empty := encodeRecord("tx", transit{to: stateEmpty, producerID: 5, prevProducerID: 5, epoch: 2, timeoutMs: 60000, startMs: -1, lastUpdateMs: 10})
	if got := empty.Value[2+8+2+4+1:][:4]; !bytes.Equal(got, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("Empty's partitions %x, want a null array", got)
	}
	if tomb := encodeRecord("tx", transit{to: stateDead}); tomb.Value != nil || !bytes.Equal(tomb.Key, wantKey) {
		t.Errorf("tombstone %x/%x", tomb.Key, tomb.Value)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tr := range []transit{
		{to: stateEmpty, producerID: 7, prevProducerID: 7, epoch: 0, lastEpoch: -1, timeoutMs: 1, startMs: -1, lastUpdateMs: 3},
		{to: statePrepareCommit, producerID: 7, prevProducerID: 7, epoch: 3, lastEpoch: -1, timeoutMs: 900000,
			parts: []TopicPartition{tp("__consumer_offsets", 12), tp("a", 0), tp("b", 1), tp("b", 2)}, startMs: 2, lastUpdateMs: 3},
		// A rotated producer ID: v1, with the previous one.
		{to: stateEmpty, producerID: 8, prevProducerID: 7, epoch: 0, lastEpoch: -1, timeoutMs: 10, startMs: -1, lastUpdateMs: 4},
		{to: stateCompleteAbort, producerID: 8, prevProducerID: 7, epoch: 1, lastEpoch: -1, timeoutMs: 10, parts: []TopicPartition{}, startMs: 5, lastUpdateMs: 6},
	} {
		rec := encodeRecord("some-id", tr)
		id, got, skip, err := decodeRecord(rec.Key, rec.Value)
		if err != nil || skip || id != "some-id" || got == nil {
			t.Fatalf("decode %v: %q %v %v %v", tr.to, id, got, skip, err)
		}
		if tr.prevProducerID == tr.producerID {
			tr.prevProducerID = -1 // not written in v0
		}
		if diff := cmp.Diff(tr, *got, cmp.AllowUnexported(transit{}), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip of %v (-want +got):\n%s", tr.to, diff)
		}
	}
	if _, _, skip, _ := decodeRecord([]byte{0, 1, 0, 0}, nil); !skip {
		t.Error("a key of version 1 is not skipped")
	}
	if _, _, _, err := decodeRecord(encodeRecord("x", transit{to: stateOngoing}).Key, []byte{0, 0, 1}); err == nil {
		t.Error("a truncated value decodes")
	}
}

// decodeRecord never panics, whatever the log holds.
func FuzzDecodeRecord(f *testing.F) {
	valid := encodeRecord("tx", transit{to: stateOngoing, producerID: 1, epoch: 1, timeoutMs: 1, parts: []TopicPartition{tp("t", 0)}})
	f.Add([]byte{}, []byte{})
	f.Add(valid.Key, valid.Value)
	f.Add(valid.Key, append(valid.Value[:20:20], 0x7f, 0xff, 0xff, 0xff))     // a huge array length
	f.Add(valid.Key, append(append([]byte{}, valid.Value...), 1, 2, 3, 4, 5)) // valid, then garbage
	f.Add([]byte{0, 0, 0x7f, 0xff}, []byte{0, 1})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		decodeRecord(key, value)
	})
}
