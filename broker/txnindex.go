package broker

import (
	"encoding/binary"
	"hash/crc32"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// A partition's transactions, as Kafka's producer state manager keeps
// them: every transactional batch opens its producer's transaction on the
// partition (if not open yet), and the producer's marker (a control batch
// the transaction coordinator has the leader write) closes it. The last
// stable offset (LSO) is the first offset of the oldest open transaction,
// or the high watermark: read_committed consumers read below it, and are
// told the aborted transactions of what they read, so they drop those
// records.
//
// The index is kept wherever batches are: appended by the leader, fetched
// by a follower, replayed from the WAL, and at every seal checkpointed
// with the producer windows (tier2.WriteProducers), so a restart rebuilds
// it from the checkpoint and the batches after it.

// Control record types (the key's second int16).
const (
	controlAbort  = 0
	controlCommit = 1
)

// txnIndex is the transactions of one partition.
type txnIndex struct {
	open map[int64]int64 // producer ID → first offset of its open transaction
	// aborted are the aborted transactions, by marker offset. Entries
	// below the log start are pruned.
	aborted []tier2.TxnRange
	// committed are the committed transactions whose markers are not yet
	// sealed: a truncation below a marker reopens its transaction.
	committed []tier2.TxnRange
}

func newTxnIndex() txnIndex {
	return txnIndex{open: map[int64]int64{}}
}

func (x *txnIndex) clone() txnIndex {
	return txnIndex{open: maps.Clone(x.open), aborted: slices.Clone(x.aborted), committed: slices.Clone(x.committed)}
}

// observe takes in batch at base: a transactional batch opens its
// producer's transaction, a marker closes it.
func (x *txnIndex) observe(h batchHeader, base int64, batch []byte) {
	if h.Attributes&attrTransactional == 0 || h.ProducerID < 0 {
		return
	}
	if x.open == nil {
		x.open = map[int64]int64{}
	}
	if h.Attributes&attrControl == 0 {
		if _, ok := x.open[h.ProducerID]; !ok {
			x.open[h.ProducerID] = base
		}
		return
	}
	typ, ok := controlType(batch)
	if !ok {
		return
	}
	first, open := x.open[h.ProducerID]
	if !open {
		return // a marker for a transaction that wrote nothing here
	}
	delete(x.open, h.ProducerID)
	r := tier2.TxnRange{Producer: h.ProducerID, First: first, Last: base}
	if typ == controlAbort {
		x.aborted = append(x.aborted, r)
	} else {
		x.committed = append(x.committed, r)
	}
}

// truncate undoes everything at or above offset: transactions that began
// there are forgotten, those whose markers were there are open again.
func (x *txnIndex) truncate(offset int64) {
	for id, first := range x.open {
		if first >= offset {
			delete(x.open, id)
		}
	}
	reopen := func(list []tier2.TxnRange) []tier2.TxnRange {
		i := sort.Search(len(list), func(i int) bool { return list[i].Last >= offset })
		for _, r := range list[i:] {
			if r.First < offset {
				x.open[r.Producer] = r.First
			}
		}
		return list[:i:i]
	}
	x.aborted = reopen(x.aborted)
	x.committed = reopen(x.committed)
}

// sealed forgets the committed transactions whose markers are below end:
// they can no longer be truncated.
func (x *txnIndex) sealed(end int64) {
	i := sort.Search(len(x.committed), func(i int) bool { return x.committed[i].Last >= end })
	x.committed = slices.Clone(x.committed[i:])
}

// pruneBelow forgets aborted transactions wholly below the log start.
func (x *txnIndex) pruneBelow(logStart int64) {
	i := sort.Search(len(x.aborted), func(i int) bool { return x.aborted[i].Last >= logStart })
	if i > 0 {
		x.aborted = slices.Clone(x.aborted[i:])
	}
}

// firstOpen is the first offset of the oldest open transaction, or -1.
func (x *txnIndex) firstOpen() int64 {
	first := int64(-1)
	for _, f := range x.open {
		if first < 0 || f < first {
			first = f
		}
	}
	return first
}

// abortedIn returns the aborted transactions that overlap [from, to), as
// a fetch response lists them.
func (x *txnIndex) abortedIn(from, to int64) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	out := []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
	i := sort.Search(len(x.aborted), func(i int) bool { return x.aborted[i].Last >= from })
	for _, r := range x.aborted[i:] {
		if r.First < to {
			a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
			a.ProducerID, a.FirstOffset = r.Producer, r.First
			out = append(out, a)
		}
	}
	return out
}

// abortedArchive returns the aborted transactions with records in
// [from, to), as a Tier 3 segment entry lists them.
func (x *txnIndex) abortedArchive(from, to int64) []tier3.AbortedTxn {
	var out []tier3.AbortedTxn
	i := sort.Search(len(x.aborted), func(i int) bool { return x.aborted[i].Last >= from })
	for _, r := range x.aborted[i:] {
		if r.First < to {
			out = append(out, tier3.AbortedTxn{Producer: r.Producer, First: r.First, Last: r.Last})
		}
	}
	return out
}

// abortedIn returns the aborted transactions overlapping [from, to): those
// of the index, and below the local log start those the archive's
// segments list (a broker that did not hold them, such as one restored
// from the archive or a follower that started at the leader's local
// start, knows them only from there).
func (p *partition) abortedIn(from, to int64) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := p.txns.abortedIn(from, to)
	if from >= p.localStartLocked() || len(p.archSegs) == 0 {
		return out
	}
	seen := map[[2]int64]bool{}
	for _, a := range out {
		seen[[2]int64{a.ProducerID, a.FirstOffset}] = true
	}
	first := sort.Search(len(p.archSegs), func(i int) bool { return p.archSegs[i].Next > from })
	for _, s := range p.archSegs[first:] {
		if s.Base >= to {
			break
		}
		for _, r := range s.Aborted {
			if k := [2]int64{r.Producer, r.First}; r.Last >= from && r.First < to && !seen[k] {
				seen[k] = true
				a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
				a.ProducerID, a.FirstOffset = r.Producer, r.First
				out = append(out, a)
			}
		}
	}
	return out
}

// snapshot is the index as the producers checkpoint records it.
func (x *txnIndex) snapshot() tier2.Txns {
	var t tier2.Txns
	for id, first := range x.open {
		t.Open = append(t.Open, tier2.TxnRange{Producer: id, First: first, Last: -1})
	}
	slices.SortFunc(t.Open, func(a, b tier2.TxnRange) int { return int(a.First - b.First) })
	t.Aborted = slices.Clone(x.aborted)
	return t
}

func txnIndexFromSnapshot(t tier2.Txns) txnIndex {
	x := newTxnIndex()
	for _, r := range t.Open {
		x.open[r.Producer] = r.First
	}
	x.aborted = slices.Clone(t.Aborted)
	return x
}

// controlType returns the type of a control batch's record (its key is
// version int16, type int16), read from the stored batch: control batches
// are never compressed.
func controlType(batch []byte) (int16, bool) {
	var typ int16
	found := false
	err := eachStoredRecord(batch, 1<<16, func(r *kmsg.Record, _, _ int64) bool {
		if len(r.Key) >= 4 {
			typ, found = int16(binary.BigEndian.Uint16(r.Key[2:])), true
		}
		return false
	})
	return typ, err == nil && found
}

// encodeMarker builds the control batch of a transaction marker: one
// record whose key is version 0 and the type, and whose value is version
// 0 and the coordinator's epoch.
func encodeMarker(producerID int64, epoch int16, commit bool, coordinatorEpoch int32) []byte {
	typ := uint16(controlAbort)
	if commit {
		typ = controlCommit
	}
	r := kmsg.Record{
		Key:   binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), typ),
		Value: binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), uint32(coordinatorEpoch)),
	}
	r.Length = int32(len(r.AppendTo(nil)) - 1) // AppendTo writes Length as given
	records := r.AppendTo(nil)
	now := time.Now().UnixMilli()
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrTransactional | attrControl,
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           producerID,
		ProducerEpoch:        epoch,
		FirstSequence:        -1,
		NumRecords:           1,
		Records:              records,
	}
	batch := rb.AppendTo(make([]byte, 0, batchHeaderLen+len(records)))
	binary.BigEndian.PutUint32(batch[offBatchLength:], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[offCRC:], crc32.Checksum(batch[offAttributes:], crc32c))
	return batch
}
