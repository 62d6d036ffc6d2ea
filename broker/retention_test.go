package broker

import (
	"fmt"
	"maps"
	"os"
	"testing"
	"time"

	"github.com/chronik-go/chronik/tier2"
)

// retentionFixture writes batches of 3 records: the first old ones with
// timestamps hours in the past, then recent ones, then (in the active
// segment, left unsealed) batches with ancient timestamps that retention
// must never touch.
type retFixture struct {
	b      *Broker
	p      *partition
	segs   []*tier2.Segment // sealed by the fixture
	n      int64            // records written
	active int              // batches left unsealed
	dir    string
}

func retentionFixture(t *testing.T, configs map[string]string) retFixture {
	t.Helper()
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	configs["segment.bytes"] = "1500"
	p := testPartition(t, b, "ret", configs)
	now := time.Now().UnixMilli()
	n := 0
	for i := 0; i < 100; i++ {
		ts := now - int64(100-i)*int64(time.Hour/time.Millisecond) // hour i of the last 100
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, ts)))
		n += 3
	}
	waitFor(t, 5*time.Second, func() error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		if p.activeBytes >= 1500 {
			return fmt.Errorf("%d active bytes", p.activeBytes)
		}
		return nil
	})
	// Stop rolling, so the next batches stay in the active segment.
	setTopicConfig(t, b, "ret", "segment.bytes", "1073741824")
	for i := 0; i < 3; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(n, 3, 1000)))
		n += 3
	}
	p.mu.RLock()
	f := retFixture{b: b, p: p, segs: p.segs, n: int64(n), active: len(p.batches), dir: dir}
	p.mu.RUnlock()
	if len(f.segs) < 8 {
		t.Fatalf("%d segments sealed", len(f.segs))
	}
	return f
}

// segMaxTs is the largest record timestamp in s, read back from the log.
func segMaxTs(t *testing.T, b *Broker, p *partition, s *tier2.Segment) int64 {
	buf, _, err := s.ReadFrom(s.Base, int(s.Size), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := decodeRecords(t, buf)
	m := int64(-1)
	for _, r := range recs {
		m = max(m, r.ts)
	}
	return m
}

func checkRetained(t *testing.T, f retFixture, deleted int) {
	t.Helper()
	b, p, segs, n := f.b, f.p, f.segs, f.n
	p.mu.RLock()
	left, logStart := p.segs, p.logStart
	active := len(p.batches)
	p.mu.RUnlock()
	if len(left) != len(segs)-deleted {
		t.Fatalf("%d segments left of %d, want %d deleted", len(left), len(segs), deleted)
	}
	if active < 3 || active != f.active {
		t.Fatalf("%d active batches, want the unsealed ones untouched", active)
	}
	for i, s := range segs {
		_, err := os.Stat(s.Path())
		if gone := os.IsNotExist(err); gone != (i < deleted) {
			t.Fatalf("segment %d file exists=%v, want deleted=%v", i, !gone, i < deleted)
		}
	}
	want := segs[0].Base
	if deleted > 0 {
		want = segs[deleted-1].Next
	}
	if logStart != want {
		t.Fatalf("log start %d, want %d", logStart, want)
	}
	got := readAllRecords(t, b, p, 1<<20)
	if int64(len(got)) != n-want || got[0].offset != want {
		t.Fatalf("%d records from %d remain, want %d from %d", len(got), got[0].offset, n-want, want)
	}
}

// Time retention deletes exactly the leading sealed segments whose newest
// record is older than retention.ms, never the active segment (whose
// records here are older still), and the log start follows and survives a
// restart.
func TestRetentionByTime(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	f := retentionFixture(t, map[string]string{"retention.ms": fmt.Sprint(50 * hour)})
	b, p, segs, n := f.b, f.p, f.segs, f.n
	now := time.Now()
	want := 0
	for want < len(segs) && segMaxTs(t, b, p, segs[want]) < now.UnixMilli()-50*hour {
		want++
	}
	if want == 0 || want == len(segs) {
		t.Fatalf("fixture: %d of %d segments expire", want, len(segs))
	}
	b.clean(now)
	checkRetained(t, f, want)
	b.clean(now) // idempotent
	checkRetained(t, f, want)
	logStart, _ := p.offsets()
	b.Close()
	b2 := testBroker(t, f.dir, tier2Config)
	if ls, hw := b2.lookupTopic("ret").partitions[0].offsets(); ls != logStart || hw != n {
		t.Fatalf("after restart log start %d hw %d, want %d %d", ls, hw, logStart, n)
	}
}

// Size retention deletes the oldest segments while the partition stays at
// or above retention.bytes without them (Kafka's rule), counting the active
// segment, and never deletes the active segment even at 0.
func TestRetentionBySize(t *testing.T) {
	for _, limit := range []int64{0, 2500, 7000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			f := retentionFixture(t, map[string]string{"retention.bytes": fmt.Sprint(limit)})
			b, p, segs := f.b, f.p, f.segs
			p.mu.RLock()
			total := p.activeBytes
			p.mu.RUnlock()
			for _, s := range segs {
				total += s.Size
			}
			want := 0
			for want < len(segs) && total-segs[want].Size >= limit {
				total -= segs[want].Size
				want++
			}
			b.clean(time.Now())
			checkRetained(t, f, want)
			if limit == 0 && want != len(segs) {
				t.Fatalf("retention.bytes 0 kept %d sealed segments", len(segs)-want)
			}
		})
	}
}

// The Tier 3 seam: once segments are marked archived, local.retention.ms
// deletes them locally even though retention.ms keeps the data; segments
// not archived stay.
func TestLocalRetentionOnlyDeletesArchived(t *testing.T) {
	f := retentionFixture(t, map[string]string{"retention.ms": "-1", "local.retention.ms": "1"})
	f.b.clean(time.Now())
	checkRetained(t, f, 0)
	for _, s := range f.segs[:3] {
		if err := s.MarkArchived(); err != nil {
			t.Fatal(err)
		}
	}
	f.b.clean(time.Now())
	checkRetained(t, f, 3)
}

// Deleting a topic removes its sealed segments and directory, and a topic
// re-created with the same name starts empty.
func TestDeletedTopicSegmentsRemoved(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, tier2Config)
	p := testPartition(t, b, "gone", map[string]string{"segment.bytes": "1000"})
	for i := 0; i < 30; i++ {
		appendDurable(t, b, p, makeRecordBatch(seqRecords(i*3, 3, 1)))
	}
	waitFor(t, 5*time.Second, func() error {
		if segCount(p) < 3 {
			return fmt.Errorf("%d segments", segCount(p))
		}
		return nil
	})
	if err := b.deleteTopic(b.lookupTopic("gone")); err != nil {
		t.Fatal(err)
	}
	b.clean(time.Now())
	waitFor(t, 5*time.Second, func() error { // the kicked cleaner may be sweeping too
		if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
			return fmt.Errorf("partition directory still exists: %v", err)
		}
		return nil
	})
	p2 := testPartition(t, b, "gone", nil)
	if ls, hw := p2.offsets(); ls != 0 || hw != 0 || segCount(p2) != 0 {
		t.Fatalf("re-created topic: log start %d hw %d, %d segments", ls, hw, segCount(p2))
	}
}

// setTopicConfig sets one config of a topic, keeping the others.
func setTopicConfig(t *testing.T, b *Broker, topic, key, value string) {
	t.Helper()
	tp := b.lookupTopic(topic)
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	next := maps.Clone(b.topicConfigs(tp))
	next[key] = value
	if err := b.setTopicConfigsLocked(tp, next); err != nil {
		t.Fatal(err)
	}
}
