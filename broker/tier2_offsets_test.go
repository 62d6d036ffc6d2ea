package broker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets by timestamp, through the time indexes of many sealed
// segments and the active batches, agrees with a brute-force oracle over
// random, non-monotonic timestamps: the first offset at or after the log
// start whose timestamp is at or after the target. So does -3 (max
// timestamp), before and after a restart (indexes reloaded from disk) and
// after DeleteRecords moves the log start into a batch.
func TestListOffsetsByTimestampOracle(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	p := testPartition(t, b, "times-oracle", map[string]string{"segment.bytes": "6000"})
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Now().UnixMilli() - 1_000_000
	var all []testRecord
	for i := 0; i < 400; i++ {
		n := 1 + rng.IntN(8)
		recs := make([]testRecord, n)
		for j := range recs {
			// Mostly rising, with jitter and the odd record from the past.
			ts := base + int64(len(all)+j)*10 + rng.Int64N(40) - 20
			if rng.IntN(20) == 0 {
				ts -= rng.Int64N(5000)
			}
			recs[j] = testRecord{ts: ts, key: "k", value: fmt.Sprintf("v%08d", len(all)+j)}
		}
		off := appendDurable(t, b, p, makeRecordBatch(recs))
		for j := range recs {
			recs[j].offset = off + int64(j)
		}
		all = append(all, recs...)
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 5 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	oracle := func(ts, logStart int64) int64 {
		for _, r := range all {
			if r.offset >= logStart && r.ts >= ts {
				return r.offset
			}
		}
		return -1
	}
	maxOracle := func() (int64, int64) {
		best := all[0]
		for _, r := range all {
			if r.ts > best.ts {
				best = r
			}
		}
		return best.offset, best.ts
	}
	check := func(b *Broker, p *partition, logStart int64) {
		t.Helper()
		lo, hi := base-6000, base+int64(len(all))*10+100
		for i := 0; i < 600; i++ {
			ts := lo + rng.Int64N(hi-lo)
			got, _, code := b.listOffset(p, ts, false)
			if want := oracle(ts, logStart); code != 0 || got != want {
				t.Fatalf("ListOffsets(%d) with log start %d = %d (%v), oracle says %d", ts, logStart, got, kerr.ErrorForCode(code), want)
			}
		}
		off, ts, code := b.listOffset(p, listMaxTimestamp, false)
		if wantOff, wantTs := maxOracle(); code != 0 || off != wantOff || ts != wantTs {
			t.Fatalf("max timestamp: %d@%d (%d), oracle says %d@%d", off, ts, code, wantOff, wantTs)
		}
	}
	check(b, p, 0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, tier2Config)
	p2 := b2.lookupTopic("times-oracle").partitions[0]
	check(b2, p2, 0)
	// A log start inside a sealed batch.
	mid := all[len(all)/3].offset + 1
	if _, err := b2.deleteRecords(p2, mid); err != nil {
		t.Fatal(err)
	}
	rest := all
	all = nil
	for _, r := range rest {
		if r.offset >= mid {
			all = append(all, r)
		}
	}
	check(b2, p2, mid)
}

// DeleteRecords moves the log start: fetches below it are out of range,
// ListOffsets earliest returns it, whole segments below it are deleted by
// the next retention pass (never the active segment), and it survives a
// restart.
func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	p := testPartition(t, b, "delrec", map[string]string{"segment.bytes": "2000"})
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 120; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, now)))
		n += 3
	}
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if len(p.segs) < 4 || p.activeBytes >= 2000 {
			return fmt.Errorf("%d segments, %d bytes unsealed", len(p.segs), p.activeBytes)
		}
		return nil
	})
	p.mu.RLock()
	segs := p.segs
	p.mu.RUnlock()
	cut := segs[2].Base + 1 // inside the third segment

	adm := kadm.NewClient(testClient(t, b))
	res, err := adm.DeleteRecords(testCtx(t), kadm.Offsets{"delrec": {0: {At: cut}}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := res.Lookup("delrec", 0)
	if r.Err != nil || r.LowWatermark != cut {
		t.Fatalf("DeleteRecords: low watermark %d err %v, want %d", r.LowWatermark, r.Err, cut)
	}
	if over, _ := adm.DeleteRecords(testCtx(t), kadm.Offsets{"delrec": {0: {At: int64(n) + 5}}}); over != nil {
		if r, _ := over.Lookup("delrec", 0); r.Err != kerr.OffsetOutOfRange {
			t.Fatalf("DeleteRecords past the end: %v, want OFFSET_OUT_OF_RANGE", r.Err)
		}
	}
	starts, err := adm.ListStartOffsets(testCtx(t), "delrec")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("delrec", 0); o.Offset != cut {
		t.Fatalf("earliest offset %d, want %d", o.Offset, cut)
	}
	if code := fetchCode(t, b, "delrec", cut-1); code != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch below the log start: %v", kerr.ErrorForCode(code))
	}
	if code := fetchCode(t, b, "delrec", cut); code != 0 {
		t.Fatalf("fetch at the log start: %v", kerr.ErrorForCode(code))
	}
	b.clean(time.Now())
	p.mu.RLock()
	first := p.segs[0]
	p.mu.RUnlock()
	if first != segs[2] {
		t.Fatalf("after retention the first segment starts at %d, want %d", first.Base, segs[2].Base)
	}
	got := readAllRecords(t, b, p, 1<<20)
	if got[0].offset > cut || got[len(got)-1].offset != int64(n-1) {
		t.Fatalf("records %d..%d after DeleteRecords at %d", got[0].offset, got[len(got)-1].offset, cut)
	}
	// Into the active segment, then a restart.
	p.mu.RLock()
	activeFrom := p.batches[0].base
	p.mu.RUnlock()
	if _, err := b.deleteRecords(p, activeFrom+1); err != nil {
		t.Fatal(err)
	}
	b.clean(time.Now())
	if segCount(p) != 0 {
		t.Fatalf("%d segments left below the log start", segCount(p))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, tier2Config)
	p2 := b2.lookupTopic("delrec").partitions[0]
	if ls, hw := p2.offsets(); ls != activeFrom+1 || hw != int64(n) {
		t.Fatalf("after restart log start %d hw %d, want %d and %d", ls, hw, activeFrom+1, n)
	}
	if off := appendDurable(t, b2, p2, makeRecordBatch(seqRecords(n, 1, now))); off != int64(n) {
		t.Fatalf("append after restart at %d, want %d", off, n)
	}
}

// fetchCode fetches one partition at offset and returns its error code.
func fetchCode(t *testing.T, b *Broker, topic string, offset int64) int16 {
	t.Helper()
	c := dialRaw(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = offset, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}
