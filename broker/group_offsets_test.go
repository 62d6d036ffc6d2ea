package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// memOffsets returns the in-memory committed offsets of every group.
func memOffsets(b *Broker) map[string]map[topicPart]int64 {
	out := map[string]map[topicPart]int64{}
	for _, g := range b.groups.snapshot() {
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

func memOffset(b *Broker, group string, tp topicPart) (int64, bool) {
	g := b.groups.group(group, false)
	if g == nil {
		return 0, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	o, ok := g.offsets[tp]
	return o.offset, ok
}

// startCommit checks and enqueues a generation -1 commit as
// handleOffsetCommit does, without finishing it.
func startCommit(t *testing.T, b *Broker, group string, tp topicPart, offset, commitTime int64) (*group, []offsetEntry, *offsetWrite, int64) {
	t.Helper()
	c := b.groups
	entries := []offsetEntry{{tp: tp, value: committedOffset{offset: offset, leaderEpoch: -1, commitTime: commitTime}}}
	al := c.appendLock(group)
	al.Lock()
	defer al.Unlock()
	g, kerr := c.commitCheck(group, "", nil, -1, entries)
	if kerr != nil {
		t.Fatalf("commit check: %v", kerr)
	}
	w, err := c.offsets.write(context.Background(), group, entries)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	return g, entries, w, w.base
}

func finishCommit(b *Broker, g *group, entries []offsetEntry, w *offsetWrite, base int64) {
	err := w.wait(context.Background())
	b.groups.finishOffsets(g, entries, base, err == nil)
}

// TestGroupDeleteTombstonesInflightCommit: a commit enqueued before
// DeleteGroups but applied after it is covered by the deletion, in memory
// and after a restart alike.
func TestGroupDeleteTombstonesInflightCommit(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, dir)
	groupCreateTopic(t, kadm.NewClient(testClient(t, b)), "del", 1)
	tp := topicPart{"del", 0}

	g, entries, res, base := startCommit(t, b, "gd", tp, 5, time.Now().UnixMilli())
	if err := b.groups.deleteGroup(context.Background(), "gd"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	finishCommit(b, g, entries, res, base)
	if o, ok := memOffset(b, "gd", tp); ok {
		t.Fatalf("deleted group still has offset %d in memory", o)
	}
	// A commit after the deletion recreates the group and survives.
	g, entries, res, base = startCommit(t, b, "gd2", tp, 9, time.Now().UnixMilli())
	finishCommit(b, g, entries, res, base)
	b.Close()

	b2 := groupBroker(t, dir)
	if o, ok := memOffset(b2, "gd", tp); ok {
		t.Fatalf("after restart deleted group has offset %d", o)
	}
	if o, ok := memOffset(b2, "gd2", tp); !ok || o != 9 {
		t.Fatalf("after restart gd2 offset %d %v, want 9", o, ok)
	}
}

// TestGroupExpirySkipsInflightCommit: expiry does not tombstone a
// partition whose newer commit is enqueued but not applied yet.
func TestGroupExpirySkipsInflightCommit(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, dir)
	groupCreateTopic(t, kadm.NewClient(testClient(t, b)), "exp", 1)
	tp := topicPart{"exp", 0}
	old := time.Now().Add(-2 * b.cfg.OffsetsRetention)

	g, entries, res, base := startCommit(t, b, "ge", tp, 3, old.UnixMilli())
	finishCommit(b, g, entries, res, base)
	g.mu.Lock()
	g.emptySince = old
	g.mu.Unlock()

	g, entries, res, base = startCommit(t, b, "ge", tp, 7, time.Now().UnixMilli())
	b.groups.expireOffsets(time.Now()) // the old entry looks expired
	finishCommit(b, g, entries, res, base)
	b.groups.expireOffsets(time.Now())
	if o, ok := memOffset(b, "ge", tp); !ok || o != 7 {
		t.Fatalf("offset %d %v, want 7", o, ok)
	}
	b.Close()
	b2 := groupBroker(t, dir)
	if o, ok := memOffset(b2, "ge", tp); !ok || o != 7 {
		t.Fatalf("after restart offset %d %v, want 7", o, ok)
	}
	// Once applied and old enough it does expire.
	b2.groups.expireOffsets(time.Now().Add(2 * b2.cfg.OffsetsRetention))
	if o, ok := memOffset(b2, "ge", tp); ok {
		t.Fatalf("offset %d not expired", o)
	}
}

// TestGroupCommitAppliedWithoutReply: a durable commit reaches memory even
// when its reply is never run (the connection's writer stopped).
func TestGroupCommitAppliedWithoutReply(t *testing.T) {
	b := groupBroker(t, t.TempDir())
	groupCreateTopic(t, kadm.NewClient(testClient(t, b)), "norep", 1)
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation = "gn", -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "norep"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 11
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = handleOffsetCommit(&conn{b: b, ctx: ctx}, &request{Request: req}) // reply dropped
	checkFor(t, 5*time.Second, func() error {
		if o, ok := memOffset(b, "gn", topicPart{"norep", 0}); !ok || o != 11 {
			return fmt.Errorf("offset %d %v, want 11", o, ok)
		}
		return nil
	})
}

// TestGroupCommitAppliesToFreshGroup: a group with a commit in flight is
// not forgotten, and a commit whose group object was replaced is applied
// to the group now registered under the name.
func TestGroupCommitAppliesToFreshGroup(t *testing.T) {
	b := groupBroker(t, t.TempDir())
	groupCreateTopic(t, kadm.NewClient(testClient(t, b)), "fresh", 1)
	tp := topicPart{"fresh", 0}
	c := b.groups

	g, entries, res, base := startCommit(t, b, "gf", tp, 4, time.Now().UnixMilli())
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
	finishCommit(b, g, entries, res, base)
	if o, ok := memOffset(b, "gf", tp); !ok || o != 4 {
		t.Fatalf("offset %d %v, want 4 in the live group", o, ok)
	}
}

// TestGroupPendingMemberForgotten: a group made only by a MEMBER_ID_REQUIRED
// join is forgotten once the pending ID expires, and an expired pending ID
// cannot be used.
func TestGroupPendingMemberForgotten(t *testing.T) {
	b := groupBroker(t, t.TempDir())
	c := b.groups
	join := func(group, member string) *kmsg.JoinGroupResponse {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Version = 4
		req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 500, 1000
		meta := kmsg.NewConsumerMemberMetadata()
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		r := c.join(req, "cl", "host")
		if r.resp == nil {
			t.Fatalf("join %s/%q parked", group, member)
		}
		return r.resp
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

// TestOffsetDeleteConsumerProtocol: OffsetDelete refuses a topic that a
// KIP-848 member subscribes to.
func TestOffsetDeleteConsumerProtocol(t *testing.T) {
	b := consumerGroupBroker(t)
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "cg", 2)
	groupCreateTopic(t, adm, "other", 1)
	c := &cgClient{t: t, cl: cl, group: "god848", topic: b.lookupTopic("cg").id}
	wantHB(t, "m1 joins", c.hb("m1", 0, nil, nil), nil, 1, []int32{0, 1})

	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = "god848"
	for _, name := range []string{"cg", "other"} {
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = name
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(testCtx(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || len(resp.Topics) != 2 {
		t.Fatalf("offset delete: %v %+v", kerr.ErrorForCode(resp.ErrorCode), resp.Topics)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.GroupSubscribedToTopic.Code {
		t.Fatalf("subscribed topic: %v, want GROUP_SUBSCRIBED_TO_TOPIC", kerr.ErrorForCode(code))
	}
	if code := resp.Topics[1].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("unsubscribed topic: %v", kerr.ErrorForCode(code))
	}
}

// TestScanOffsetBatchesBadLength: a batch with an invalid length stops the
// replay with an error instead of re-reading the same offset forever.
func TestScanOffsetBatchesBadLength(t *testing.T) {
	good := encodeOffsetBatch("g", []offsetEntry{{tp: topicPart{"t", 0}, deleted: true}}, 0)
	bad := make([]byte, batchHeaderLen)
	binary.BigEndian.PutUint32(bad[offBatchLength:], 1) // too short
	log := append(append([]byte{}, good...), bad...)    // offsets 0 (good), 1 (bad)
	for _, tc := range []struct {
		name string
		read func(int64) ([]byte, error)
		want string
	}{
		{"first", func(int64) ([]byte, error) { return bad, nil }, "offset 0"},
		{"later", func(next int64) ([]byte, error) {
			if next == 0 {
				return log, nil
			}
			return bad, nil
		}, "offset 1"},
	} {
		done := make(chan error, 1)
		batches := 0
		go func() { done <- scanOffsetBatches(5, tc.read, func([]byte) { batches++ }) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: err %v, want one naming %s", tc.name, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: replay loops on an invalid batch", tc.name)
		}
	}
}

// TestGroupOffsetsMemoryMatchesLog races commits, OffsetDelete,
// DeleteGroups and expiry, then checks that what memory holds is what a
// restart replays.
func TestGroupOffsetsMemoryMatchesLog(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, dir)
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "race", 2)
	ctx := testCtx(t)
	groups := []string{"r0", "r1", "r2"}
	var wg sync.WaitGroup
	worker := func(seed int64, fn func(r *rand.Rand, group string)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < 150 && ctx.Err() == nil; i++ {
				fn(r, groups[r.Intn(len(groups))])
			}
		}()
	}
	for s := int64(0); s < 3; s++ {
		worker(s, func(r *rand.Rand, group string) {
			var os kadm.Offsets
			os.AddOffset("race", int32(r.Intn(2)), int64(r.Intn(1000)), -1)
			adm.CommitOffsets(ctx, group, os)
		})
	}
	worker(10, func(r *rand.Rand, group string) { adm.DeleteGroups(ctx, group) })
	worker(11, func(r *rand.Rand, group string) {
		s := kadm.TopicsSet{}
		s.Add("race", int32(r.Intn(2)))
		adm.DeleteOffsets(ctx, group, s)
	})
	worker(12, func(r *rand.Rand, group string) {
		b.groups.expireOffsets(time.Now().Add(2 * b.cfg.OffsetsRetention))
	})
	wg.Wait()
	want := memOffsets(b)
	b.Close()
	b2 := groupBroker(t, dir)
	if got := memOffsets(b2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart offsets %v, memory had %v", got, want)
	}
}
