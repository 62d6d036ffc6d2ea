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

// memOffsets returns the in-memory committed offsets of every group.
func memOffsets(c *Coordinator) map[string]map[topicPart]int64 {
	out := map[string]map[topicPart]int64{}
	for _, g := range c.snapshot() {
		g.mu.Lock()
		if len(g.offsets) > 0 {
			m := map[topicPart]int64{}
			for tp, o := range g.offsets {
				m[tp] = o.offset
			}
			out[g.name] = m
		}
		g.mu.Unlock()
	}
	return out
}

func memOffset(c *Coordinator, group string, tp topicPart) (int64, bool) {
	g := c.group(group, false)
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	o, ok := g.offsets[tp]
	return o.offset, ok
}

// startCommit checks and enqueues a generation -1 commit as OffsetCommit
// does, without finishing it.
func startCommit(t *testing.T, c *Coordinator, group string, tp topicPart, offset, commitTime int64) (*group, []offsetEntry, Write) {
	t.Helper()
	entries := []offsetEntry{{tp: tp, value: committedOffset{offset: offset, leaderEpoch: -1, commitTime: commitTime}}}
	al := c.appendLock(group)
	al.Lock()
	defer al.Unlock()
	g, kerr := c.commitCheck(group, "", nil, -1, entries)
	if kerr != nil {
		t.Fatalf("commit check: %v", kerr)
	}
	w, err := c.write(context.Background(), group, entries)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return g, entries, w
}

func finishCommit(c *Coordinator, g *group, entries []offsetEntry, w Write) {
	err := w.Wait(context.Background())
	c.finishOffsets(g, entries, w.Base(), err == nil)
}

// commitReq is a generation -1 OffsetCommit of one partition.
func commitReq(group, topic string, partition int32, offset int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = partition, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// commit runs an OffsetCommit to the end and returns its one error code.
func commit(c *Coordinator, group, topic string, partition int32, offset int64) *kerr.Error {
	resp, wait := c.OffsetCommit(commitReq(group, topic, partition, offset))
	if wait != nil {
		wait()
	}
	return codeErr(resp.Topics[0].Partitions[0].ErrorCode)
}

// codeErr is the *kerr.Error of code, nil for 0.
func codeErr(code int16) *kerr.Error {
	if err, ok := kerr.ErrorForCode(code).(*kerr.Error); ok {
		return err
	}
	return nil
}

// fetch returns group's committed offset of topic/partition as OffsetFetch
// answers it (-1: none), and the group's error.
func fetch(c *Coordinator, group, topic string, partition int32) (int64, *kerr.Error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rt := kmsg.NewOffsetFetchRequestGroupTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	rg.Topics = append(rg.Topics, rt)
	req.Groups = append(req.Groups, rg)
	resp := c.OffsetFetch(req)
	g := resp.Groups[0]
	if g.ErrorCode != 0 {
		return -1, codeErr(g.ErrorCode)
	}
	return g.Topics[0].Partitions[0].Offset, nil
}

// A commit is answered, and visible to OffsetFetch, only once the log says
// it is durable; a failed write is never applied.
func TestCommitWaitsForDurability(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	l.mu.Lock()
	l.hold = true
	l.mu.Unlock()
	resp, wait := c.OffsetCommit(commitReq("g", "t", 1, 42))
	if wait == nil {
		t.Fatalf("commit answered before it was durable: %+v", resp)
	}
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
		t.Fatal("commit reply returned before the write was durable")
	case <-time.After(100 * time.Millisecond):
	}
	if off, _ := fetch(c, "g", "t", 1); off != -1 {
		t.Fatalf("offset %d visible before durable", off)
	}
	l.release(nil)
	<-done
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(code))
	}
	if off, _ := fetch(c, "g", "t", 1); off != 42 {
		t.Fatalf("committed offset %d, want 42", off)
	}

	// A write that fails (the partition's leadership moved) is answered
	// with a retriable error and not applied.
	resp1, wait := c.OffsetCommit(commitReq("g", "t", 1, 50))
	l.release(errorf(kerr.NotLeaderForPartition, "moved"))
	wait()
	if code := kerr.ErrorForCode(resp1.Topics[0].Partitions[0].ErrorCode); code != kerr.NotCoordinator {
		t.Fatalf("commit whose partition moved: %v, want NOT_COORDINATOR", code)
	}
	resp2, wait2 := c.OffsetCommit(commitReq("g", "t", 2, 7))
	l.release(errorf(kerr.NotEnoughReplicas, "isr"))
	wait2()
	if code := kerr.ErrorForCode(resp2.Topics[0].Partitions[0].ErrorCode); code != kerr.CoordinatorNotAvailable {
		t.Fatalf("commit with too few replicas: %v, want COORDINATOR_NOT_AVAILABLE", code)
	}
	if off, _ := fetch(c, "g", "t", 1); off != 42 {
		t.Fatalf("failed commit applied: offset %d, want 42", off)
	}
	if off, _ := fetch(c, "g", "t", 2); off != -1 {
		t.Fatalf("failed commit applied: offset %d, want none", off)
	}
	// An append the log refuses is answered at once.
	l.mu.Lock()
	l.hold, l.fail = false, errorf(kerr.NotCoordinator, "not the leader")
	l.mu.Unlock()
	if code := commit(c, "g", "t", 1, 60); code != kerr.NotCoordinator {
		t.Fatalf("refused append: %v, want NOT_COORDINATOR", code)
	}
}

// Commits of unknown topics or partitions, or with metadata past the
// limit, are refused per partition.
func TestCommitValidation(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(1), false)
	for _, tc := range []struct {
		topic     string
		partition int32
		want      *kerr.Error
	}{
		{"t", 3, nil},
		{"t", 4, kerr.UnknownTopicOrPartition},
		{"t", -1, kerr.UnknownTopicOrPartition},
		{"missing", 0, kerr.UnknownTopicOrPartition},
	} {
		got := commit(c, "v", tc.topic, tc.partition, 1)
		if tc.want == nil && got != nil || tc.want != nil && got != tc.want {
			t.Errorf("commit %s/%d: %v, want %v", tc.topic, tc.partition, got, tc.want)
		}
	}
	req := commitReq("v", "t", 0, 1)
	md := string(make([]byte, maxOffsetMetadata+1))
	req.Topics[0].Partitions[0].Metadata = &md
	resp, _ := c.OffsetCommit(req)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.OffsetMetadataTooLarge.Code {
		t.Errorf("metadata too large: %v", kerr.ErrorForCode(code))
	}
	if code := commit(c, "", "t", 0, 1); code != kerr.InvalidGroupID {
		t.Errorf("empty group: %v", code)
	}
}

// A commit enqueued before DeleteGroups but applied after it is covered by
// the deletion, in memory and after a restart alike.
func TestDeleteTombstonesInflightCommit(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	tp := topicPart{"t", 0}
	l.hold = true
	g, entries, w := startCommit(t, c, "gd", tp, 5, time.Now().UnixMilli())
	l.hold = false
	if err := c.deleteGroup(context.Background(), "gd"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	l.release(nil)
	finishCommit(c, g, entries, w)
	if o, ok := memOffset(c, "gd", tp); ok {
		t.Fatalf("deleted group still has offset %d in memory", o)
	}
	// A commit after the deletion recreates the group and survives.
	g, entries, w = startCommit(t, c, "gd2", tp, 9, time.Now().UnixMilli())
	finishCommit(c, g, entries, w)
	c.Close()

	c2 := newTestCoordinator(t, l, false)
	if o, ok := memOffset(c2, "gd", tp); ok {
		t.Fatalf("after restart deleted group has offset %d", o)
	}
	if o, ok := memOffset(c2, "gd2", tp); !ok || o != 9 {
		t.Fatalf("after restart gd2 offset %d %v, want 9", o, ok)
	}
}

// Expiry does not tombstone a partition whose newer commit is enqueued but
// not applied yet.
func TestExpirySkipsInflightCommit(t *testing.T) {
	l := newMemLog(3)
	c := newTestCoordinator(t, l, false)
	tp := topicPart{"t", 0}
	old := time.Now().Add(-2 * c.cfg.OffsetsRetention)

	g, entries, w := startCommit(t, c, "ge", tp, 3, old.UnixMilli())
	finishCommit(c, g, entries, w)
	g.mu.Lock()
	g.emptySince = old
	g.mu.Unlock()

	g, entries, w = startCommit(t, c, "ge", tp, 7, time.Now().UnixMilli())
	c.expireOffsets(time.Now()) // the old entry looks expired
	finishCommit(c, g, entries, w)
	c.expireOffsets(time.Now())
	if o, ok := memOffset(c, "ge", tp); !ok || o != 7 {
		t.Fatalf("offset %d %v, want 7", o, ok)
	}
	c.Close()
	c2 := newTestCoordinator(t, l, false)
	if o, ok := memOffset(c2, "ge", tp); !ok || o != 7 {
		t.Fatalf("after restart offset %d %v, want 7", o, ok)
	}
	// Once applied and old enough it does expire, durably.
	c2.expireOffsets(time.Now().Add(2 * c2.cfg.OffsetsRetention))
	if o, ok := memOffset(c2, "ge", tp); ok {
		t.Fatalf("offset %d not expired", o)
	}
	c2.Close()
	if o, ok := memOffset(newTestCoordinator(t, l, false), "ge", tp); ok {
		t.Fatalf("expired offset %d back after a restart", o)
	}
}

// A durable commit reaches memory even when its reply is never run (the
// connection's writer stopped).
func TestCommitAppliedWithoutReply(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(3), false)
	_, _ = c.OffsetCommit(commitReq("gn", "u", 0, 11)) // the wait is dropped
	deadline := time.Now().Add(5 * time.Second)
	for {
		if o, ok := memOffset(c, "gn", topicPart{"u", 0}); ok && o == 11 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a commit whose reply never ran was not applied")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A group with a commit in flight is not forgotten, and a commit whose
// group object was replaced is applied to the group now registered under
// the name.
func TestCommitAppliesToFreshGroup(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(3), false)
	tp := topicPart{"t", 1}
	g, entries, w := startCommit(t, c, "gf", tp, 4, time.Now().UnixMilli())
	c.forgetIfUnused(g)
	if c.group("gf", false) != g {
		t.Fatal("group with a commit in flight was forgotten")
	}
	// Replace the object behind the commit's back.
	c.mu.Lock()
	g.mu.Lock()
	g.state = groupDead
	delete(c.groups, "gf")
	g.mu.Unlock()
	c.mu.Unlock()
	finishCommit(c, g, entries, w)
	if o, ok := memOffset(c, "gf", tp); !ok || o != 4 {
		t.Fatalf("offset %d %v, want 4 in the live group", o, ok)
	}
}

// A group made only by a MEMBER_ID_REQUIRED join is forgotten once the
// pending ID expires, and an expired pending ID cannot be used.
func TestPendingMemberForgotten(t *testing.T) {
	c := newTestCoordinator(t, newMemLog(1), false)
	join := func(group, member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 4
		req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 500, 1000
		meta := kmsg.NewConsumerMemberMetadata()
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		resp, wait := c.JoinGroup(req, "cl", "host")
		if wait != nil {
			t.Fatalf("join %s/%q parked", group, member)
		}
		return resp
	}
	r := join("gp", "")
	if r.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("join: %v, want MEMBER_ID_REQUIRED", kerr.ErrorForCode(r.ErrorCode))
	}
	r2 := join("gp2", "")
	time.Sleep(700 * time.Millisecond)
	if rr := join("gp2", r2.MemberID); rr.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("join with expired pending ID: %v, want UNKNOWN_MEMBER_ID", kerr.ErrorForCode(rr.ErrorCode))
	}
	c.expireOffsets(time.Now())
	for _, name := range []string{"gp", "gp2"} {
		if c.group(name, false) != nil {
			t.Fatalf("group %s of an expired pending member was not forgotten", name)
		}
	}
}

// Commits, OffsetDelete, DeleteGroups and expiry race; what memory holds
// afterwards is what a restart replays from the log.
func TestOffsetsMemoryMatchesLog(t *testing.T) {
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
	for s := int64(0); s < 3; s++ {
		worker(s, func(r *rand.Rand, group string) {
			commit(c, group, "t", int32(r.Intn(2)), int64(r.Intn(1000)))
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
	want := memOffsets(c)
	c.Close()
	if got := memOffsets(newTestCoordinator(t, l, false)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart offsets %v, memory had %v", got, want)
	}
}
