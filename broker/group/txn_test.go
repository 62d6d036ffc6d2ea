package group

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnReq is a v3 TxnOffsetCommit of one partition by producer pid, with
// no group metadata (generation -1).
func txnReq(group string, pid int64, topic string, partition int32, offset int64) *kmsg.TxnOffsetCommitRequest {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = 3
	req.TransactionalID = fmt.Sprintf("tx-%d", pid)
	req.Group, req.ProducerID, req.ProducerEpoch, req.Generation = group, pid, 0, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = partition, offset, 5
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// txnCommit runs a TxnOffsetCommit to the end and returns its one error.
func txnCommitReq(c *Coordinator, req *kmsg.TxnOffsetCommitRequest) *kerr.Error {
	resp, wait := c.TxnOffsetCommit(req)
	if wait != nil {
		wait()
	}
	return codeErr(resp.Topics[0].Partitions[0].ErrorCode)
}

func txnCommit(c *Coordinator, group string, pid int64, topic string, partition int32, offset int64) *kerr.Error {
	return txnCommitReq(c, txnReq(group, pid, topic, partition, offset))
}

// endTxn ends producer pid's transaction in group's partition as the
// broker does: the marker to the log, then CompleteTxn.
func endTxn(c *Coordinator, l *memLog, group string, pid int64, commit bool) {
	p := Partition(group, l.Partitions())
	c.CompleteTxn(p, pid, commit, l.appendMarker(p, pid, commit))
}

// fetchStable is fetch with RequireStable at version v (7, or 8+): the
// partition's offset and error, and the group's error.
func fetchStable(c *Coordinator, v int16, group, topic string, partition int32) (int64, *kerr.Error, *kerr.Error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version, req.RequireStable = v, true
	if v < 8 {
		req.Group = group
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{partition}
		req.Topics = append(req.Topics, rt)
		resp := c.OffsetFetch(req)
		p := resp.Topics[0].Partitions[0]
		return p.Offset, codeErr(p.ErrorCode), codeErr(resp.ErrorCode)
	}
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	g := c.OffsetFetch(req).Groups[0]
	if g.ErrorCode != 0 {
		return -1, nil, codeErr(g.ErrorCode)
	}
	p := g.Topics[0].Partitions[0]
	return p.Offset, codeErr(p.ErrorCode), nil
}

// memPending returns every group's pending transactional offsets.
func memPending(c *Coordinator) map[string]map[int64]map[topicPart]int64 {
	out := map[string]map[int64]map[topicPart]int64{}
	for _, g := range c.snapshot() {
		g.mu.Lock()
		for pid, pend := range g.txnOffsets {
			if out[g.name] == nil {
				out[g.name] = map[int64]map[topicPart]int64{}
			}
			m := map[topicPart]int64{}
			for tp, o := range pend {
				m[tp] = o.offset
			}
			out[g.name][pid] = m
		}
		g.mu.Unlock()
	}
	return out
}

// A TxnOffsetCommit is written as one transactional batch of its producer
// and is invisible until its transaction commits; an abort drops it and
// leaves the committed offset as it was.
func TestTxnOffsetsVisibleOnCommit(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	if err := commit(c, "g", "t", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := txnCommit(c, "g", 7, "t", 1, 20); err != nil {
		t.Fatalf("txn commit: %v", err)
	}
	p := Partition("g", 3)
	l.mu.Lock()
	last := l.parts[p][len(l.parts[p])-1]
	l.mu.Unlock()
	if !last.Transactional || last.Control || last.ProducerID != 7 {
		t.Fatalf("txn offsets written as %+v, want a transactional batch of producer 7", last)
	}
	if off, _ := fetch(c, "g", "t", 1); off != 10 {
		t.Fatalf("offset %d before the transaction ended, want 10", off)
	}
	endTxn(c, l, "g", 7, true)
	if off, _ := fetch(c, "g", "t", 1); off != 20 {
		t.Fatalf("offset %d after commit, want 20", off)
	}
	endTxn(c, l, "g", 7, true) // a repeated marker changes nothing
	if off, _ := fetch(c, "g", "t", 1); off != 20 {
		t.Fatalf("offset %d after a repeated marker, want 20", off)
	}

	if err := txnCommit(c, "g", 7, "t", 1, 30); err != nil {
		t.Fatal(err)
	}
	endTxn(c, l, "g", 7, false)
	if off, _ := fetch(c, "g", "t", 1); off != 20 {
		t.Fatalf("offset %d after abort, want 20", off)
	}
	if p := memPending(c); len(p) != 0 {
		t.Fatalf("pending after abort: %v", p)
	}
	c.mu.Lock()
	n := len(c.txns)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d transactions indexed after they all ended", n)
	}
}

// OffsetFetch with RequireStable answers UNSTABLE_OFFSET_COMMIT on a
// partition with offsets pending, at v7 and v8+ alike (where Kafka puts
// it: on the partition), and in an all-partitions fetch; other partitions
// are answered.
func TestRequireStable(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	if err := commit(c, "g", "t", 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := txnCommit(c, "g", 9, "t", 1, 20); err != nil {
		t.Fatal(err)
	}
	for _, v := range []int16{7, 8, 10} {
		off, perr, gerr := fetchStable(c, v, "g", "t", 1)
		if perr != kerr.UnstableOffsetCommit || gerr != nil || off != -1 {
			t.Fatalf("v%d: offset %d, partition %v, group %v; want -1 and UNSTABLE_OFFSET_COMMIT on the partition", v, off, perr, gerr)
		}
		if off, perr, gerr := fetchStable(c, v, "g", "t", 0); perr != nil || gerr != nil || off != 5 {
			t.Fatalf("v%d other partition: offset %d, %v %v", v, off, perr, gerr)
		}
	}
	// Without RequireStable the pending offset is simply not there.
	if off, err := fetch(c, "g", "t", 1); err != nil || off != -1 {
		t.Fatalf("unstable fetch: %d %v", off, err)
	}
	// Every partition: the pending one is listed, unstable.
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version, req.RequireStable = 8, true
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = "g"
	req.Groups = append(req.Groups, rg)
	got := map[int32]int16{}
	for _, rt := range c.OffsetFetch(req).Groups[0].Topics {
		for _, rp := range rt.Partitions {
			got[rp.Partition] = rp.ErrorCode
		}
	}
	if len(got) != 2 || got[0] != 0 || got[1] != kerr.UnstableOffsetCommit.Code {
		t.Fatalf("all partitions: %v", got)
	}

	endTxn(c, l, "g", 9, true)
	if off, perr, gerr := fetchStable(c, 8, "g", "t", 1); perr != nil || gerr != nil || off != 20 {
		t.Fatalf("after commit: offset %d, %v %v", off, perr, gerr)
	}
}

// A coordinator that loads the log (restart, failover) shows exactly the
// offsets of committed transactions; a transaction with no marker yet
// stays pending until its live marker.
func TestTxnOffsetsReload(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	for _, g := range []string{"gc", "ga", "gp"} {
		if err := commit(c, g, "t", 2, 1); err != nil {
			t.Fatal(err)
		}
	}
	for pid, g := range map[int64]string{1: "gc", 2: "ga", 3: "gp"} {
		if err := txnCommit(c, g, pid, "t", 2, 100+pid); err != nil {
			t.Fatal(err)
		}
	}
	endTxn(c, l, "gc", 1, true)
	endTxn(c, l, "ga", 2, false)
	c.Close()

	c2 := newTestCoordinator(t, l, false)
	for g, want := range map[string]int64{"gc": 101, "ga": 1, "gp": 1} {
		if off, _ := fetch(c2, g, "t", 2); off != want {
			t.Fatalf("%s after reload: offset %d, want %d", g, off, want)
		}
	}
	if _, perr, _ := fetchStable(c2, 8, "gp", "t", 2); perr != kerr.UnstableOffsetCommit {
		t.Fatalf("pending transaction after reload: %v, want UNSTABLE_OFFSET_COMMIT", perr)
	}
	endTxn(c2, l, "gp", 3, true)
	if off, perr, _ := fetchStable(c2, 8, "gp", "t", 2); perr != nil || off != 103 {
		t.Fatalf("after the live marker: %d %v, want 103", off, perr)
	}
	c2.Close()
	if off, _ := fetch(newTestCoordinator(t, l, false), "gp", "t", 2); off != 103 {
		t.Fatalf("after a second reload: %d, want 103", off)
	}
}

// The commit written later in the log wins, transactional or not: a plain
// commit after a pending transactional one survives the transaction's
// commit, live and after a reload; a transactional one after a plain one
// replaces it.
func TestTxnLaterCommitWins(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	if err := txnCommit(c, "g", 4, "t", 0, 50); err != nil {
		t.Fatal(err)
	}
	if err := commit(c, "g", "t", 0, 60); err != nil {
		t.Fatal(err)
	}
	endTxn(c, l, "g", 4, true)
	if off, _ := fetch(c, "g", "t", 0); off != 60 {
		t.Fatalf("offset %d, want the later plain commit's 60", off)
	}

	if err := commit(c, "g", "t", 3, 70); err != nil {
		t.Fatal(err)
	}
	if err := txnCommit(c, "g", 4, "t", 3, 80); err != nil {
		t.Fatal(err)
	}
	endTxn(c, l, "g", 4, true)
	if off, _ := fetch(c, "g", "t", 3); off != 80 {
		t.Fatalf("offset %d, want the later transactional commit's 80", off)
	}
	want := memOffsets(c)
	c.Close()
	if got := memOffsets(newTestCoordinator(t, l, false)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after reload %v, before %v", got, want)
	}
}

// A marker that arrives while a write of its transaction is in flight
// decides that write when it lands; a stale marker (before a pending
// offset in the log) leaves it pending.
func TestTxnMarkerBeforeWriteApplied(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	p := Partition("g", 3)
	for _, commit := range []bool{false, true} {
		l.mu.Lock()
		l.hold = true
		l.mu.Unlock()
		resp, wait := c.TxnOffsetCommit(txnReq("g", 5, "t", 0, 40))
		// The client gave up; the transaction ends (marker durable)
		// before the coordinator applies the write.
		c.CompleteTxn(p, 5, commit, l.End(p))
		l.mu.Lock()
		l.hold = false
		l.mu.Unlock()
		l.release(nil)
		wait()
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatal(kerr.ErrorForCode(code))
		}
		if pend := memPending(c); len(pend) != 0 {
			t.Fatalf("commit=%v: pending %v after its transaction ended", commit, pend)
		}
		off, _ := fetch(c, "g", "t", 0)
		if want := map[bool]int64{false: -1, true: 40}[commit]; off != want {
			t.Fatalf("commit=%v: offset %d, want %d", commit, off, want)
		}
	}

	if err := txnCommit(c, "g", 5, "t", 1, 41); err != nil {
		t.Fatal(err)
	}
	c.CompleteTxn(p, 5, false, 0) // an old marker, from before the write
	if pend := memPending(c); len(pend["g"][5]) != 1 {
		t.Fatalf("pending %v after a stale marker", pend)
	}
}

// DeleteGroups deletes a group with offsets pending, as Kafka does: the
// tombstones cover them, so the transaction's commit brings nothing back,
// live or after a reload. Expiry leaves a partition with offsets pending,
// and the group, alone.
func TestTxnDeleteAndExpiry(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	if err := txnCommit(c, "gd", 6, "t", 0, 12); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Groups = []string{"gd"}
	if code := c.DeleteGroups(context.Background(), req).Groups[0].ErrorCode; code != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(code))
	}
	endTxn(c, l, "gd", 6, true)
	if off, _ := fetch(c, "gd", "t", 0); off != -1 {
		t.Fatalf("deleted group's pending offset %d came back", off)
	}
	c.Close()
	c = newTestCoordinator(t, l, false)
	if off, _ := fetch(c, "gd", "t", 0); off != -1 {
		t.Fatalf("after reload the deleted group's pending offset %d came back", off)
	}

	old := time.Now().Add(-2 * c.cfg.OffsetsRetention)
	g, entries, w := startCommit(t, c, "ge", topicPart{"t", 1}, 3, old.UnixMilli())
	finishCommit(c, g, entries, w)
	if err := txnCommit(c, "ge", 8, "t", 1, 4); err != nil {
		t.Fatal(err)
	}
	if err := txnCommit(c, "gx", 8, "t", 2, 4); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(3 * c.cfg.OffsetsRetention)
	c.expireOffsets(later)
	if off, _ := fetch(c, "ge", "t", 1); off != 3 {
		t.Fatalf("offset %d expired while a transaction may commit it", off)
	}
	if c.group("gx", false) == nil {
		t.Fatal("a group with offsets pending only was forgotten")
	}
	endTxn(c, l, "ge", 8, true)
	endTxn(c, l, "gx", 8, true)
	if off, _ := fetch(c, "gx", "t", 2); off != 4 {
		t.Fatalf("gx offset %d, want 4", off)
	}
}

// A transactional write in flight when its group is deleted is covered by
// the deletion's tombstones: it is not applied to a group created later
// under the name, and its commit brings nothing back.
func TestTxnWriteInflightAcrossDelete(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	p := Partition("gi", 3)
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	_, wait := c.TxnOffsetCommit(txnReq("gi", 6, "t", 0, 12))
	deleted := make(chan int16)
	go func() {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{"gi"}
		deleted <- c.DeleteGroups(context.Background(), req).Groups[0].ErrorCode
	}()
	waitRecords(t, l, p, 2)
	l.mu.Lock()
	l.hold = false
	l.mu.Unlock()
	l.release(nil)
	wait()
	if code := <-deleted; code != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(code))
	}
	if err := commit(c, "gi", "t", 1, 1); err != nil { // the name in use again
		t.Fatal(err)
	}
	endTxn(c, l, "gi", 6, true)
	if off, _ := fetch(c, "gi", "t", 0); off != -1 {
		t.Fatalf("offset %d written before the deletion came back", off)
	}
	c.Close()
	if off, _ := fetch(newTestCoordinator(t, l, false), "gi", "t", 0); off != -1 {
		t.Fatalf("after reload: offset %d written before the deletion came back", off)
	}
}

// v3+ carry the group's member: checked as Kafka checks a TxnOffsetCommit
// (member, instance, generation); generation -1 with no member is not
// checked; a commit of a generation to a group that does not exist is
// ILLEGAL_GENERATION; unknown partitions and oversized metadata are
// refused per partition.
func TestTxnOffsetCommitValidation(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	member, gen := joinAndSync(t, c, "gm", []byte("a"))
	inst := "i1"
	with := func(m string, g int32, instance *string) *kmsg.TxnOffsetCommitRequest {
		r := txnReq("gm", 11, "t", 0, 9)
		r.MemberID, r.Generation, r.InstanceID = m, g, instance
		return r
	}
	for _, tc := range []struct {
		name string
		req  *kmsg.TxnOffsetCommitRequest
		want *kerr.Error
	}{
		{"member", with(member, gen, nil), nil},
		{"unknown member", with("nobody", gen, nil), kerr.UnknownMemberID},
		{"old generation", with(member, gen-1, nil), kerr.IllegalGeneration},
		{"unknown instance", with(member, gen, &inst), kerr.FencedInstanceID},
		{"no group metadata", with("", -1, nil), nil},
		{"member, generation -1", with(member, -1, nil), kerr.IllegalGeneration},
	} {
		if err := txnCommitReq(c, tc.req); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	r := txnReq("nogroup", 11, "t", 0, 9)
	r.Generation, r.MemberID = 3, "m"
	if err := txnCommitReq(c, r); err != kerr.IllegalGeneration {
		t.Errorf("generation to a missing group: %v", err)
	}
	if err := txnCommit(c, "gm", 11, "t", 4, 1); err != kerr.UnknownTopicOrPartition {
		t.Errorf("unknown partition: %v", err)
	}
	if err := txnCommit(c, "gm", 11, "nope", 0, 1); err != kerr.UnknownTopicOrPartition {
		t.Errorf("unknown topic: %v", err)
	}
	r = txnReq("gm", 11, "t", 0, 9)
	big := string(make([]byte, maxOffsetMetadata+1))
	r.Topics[0].Partitions[0].Metadata = &big
	if err := txnCommitReq(c, r); err != kerr.OffsetMetadataTooLarge {
		t.Errorf("metadata: %v", err)
	}
	if err := txnCommitReq(c, txnReq("gm", -1, "t", 0, 9)); err != kerr.InvalidProducerIDMapping {
		t.Errorf("no producer: %v", err)
	}

	// Bounded: no more than maxGroupTxns producers pending in a group.
	g := c.group("gm", false)
	g.mu.Lock()
	for pid := int64(1000); len(g.txnOffsets) < maxGroupTxns; pid++ {
		g.txnOffsets[pid] = map[topicPart]committedOffset{{"t", 0}: {}}
	}
	g.mu.Unlock()
	if err := txnCommit(c, "gm", 99, "t", 0, 1); err != kerr.GroupMaxSizeReached {
		t.Errorf("past the bound: %v", err)
	}
	if err := txnCommit(c, "gm", 11, "t", 1, 1); err != nil {
		t.Errorf("a producer already pending: %v", err)
	}
}

// In a cluster, a marker completed while the partition loads is applied
// once loaded, even if the load read the log before it.
func TestTxnMarkerWhileLoading(t *testing.T) {
	l := newMemLog(2)
	c, name := leaderOf(t, l, 1, "gl")
	if err := txnCommit(c, name, 21, "t", 0, 33); err != nil {
		t.Fatal(err)
	}
	c.SetLeadership(nil)
	gate := make(chan struct{})
	l.mu.Lock()
	l.gate = gate
	l.mu.Unlock()
	c.SetLeadership(map[int32]int32{1: 2})
	// Not in the log yet as far as the load is concerned: the broker's
	// marker lands after the read.
	c.CompleteTxn(1, 21, true, l.End(1))
	close(gate)
	waitServed(t, c, name)
	if off, _ := fetch(c, name, "t", 0); off != 33 {
		t.Fatalf("offset %d, want 33 from the marker completed while loading", off)
	}
}

// Concurrent plain and transactional commits, markers, OffsetDelete,
// DeleteGroups and expiry: what memory holds, committed and pending, is
// what a reload of the log rebuilds.
func TestTxnOffsetsMemoryMatchesLog(t *testing.T) {
	l := newMemLog(5)
	c := newTestCoordinator(t, l, false)
	groups := []string{"r0", "r1", "r2"}
	var wg sync.WaitGroup
	worker := func(seed int64, fn func(r *rand.Rand, group string)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for range 300 {
				fn(r, groups[r.Intn(len(groups))])
			}
		}()
	}
	worker(0, func(r *rand.Rand, group string) {
		commit(c, group, "t", int32(r.Intn(2)), int64(r.Intn(1000)))
	})
	for pid := int64(1); pid <= 3; pid++ {
		touched := map[string]bool{}
		worker(pid, func(r *rand.Rand, group string) {
			if r.Intn(4) == 0 {
				for g := range touched {
					endTxn(c, l, g, pid, r.Intn(3) > 0)
				}
				clear(touched)
				return
			}
			if txnCommit(c, group, pid, "t", int32(r.Intn(2)), int64(r.Intn(1000))) == nil {
				touched[group] = true
			}
		})
	}
	worker(10, func(r *rand.Rand, group string) {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{group}
		c.DeleteGroups(context.Background(), req)
	})
	worker(11, func(r *rand.Rand, group string) {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = "t"
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rp.Partition = int32(r.Intn(2))
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		if _, wait := c.OffsetDelete(req); wait != nil {
			wait()
		}
	})
	worker(12, func(r *rand.Rand, group string) {
		c.expireOffsets(time.Now().Add(2 * c.cfg.OffsetsRetention))
	})
	wg.Wait()
	want, wantPending := memOffsets(c), memPending(c)
	c.Close()
	c2 := newTestCoordinator(t, l, false)
	if got := memOffsets(c2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart offsets %v, memory had %v", got, want)
	}
	if got := memPending(c2); fmt.Sprint(got) != fmt.Sprint(wantPending) {
		t.Fatalf("after restart pending %v, memory had %v", got, wantPending)
	}
}
