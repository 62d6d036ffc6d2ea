package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// joinAndSync makes member a group of one, Stable with assignment as its
// assignment, and returns its member ID and generation.
func joinAndSync(t *testing.T, c *Coordinator, name string, assignment []byte) (string, int32) {
	t.Helper()
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 3
	join.Group, join.ProtocolType = name, "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 30000, 30000
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", []byte("subscription")
	join.Protocols = append(join.Protocols, p)
	resp, wait := c.JoinGroup(join, "client", "/10.0.0.1")
	if resp == nil {
		select {
		case resp = <-wait:
		case <-time.After(5 * time.Second):
			t.Fatal("join round did not complete")
		}
	}
	if resp.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = name, resp.MemberID, resp.Generation
	a := kmsg.NewSyncGroupRequestGroupAssignment()
	a.MemberID, a.MemberAssignment = resp.MemberID, assignment
	sync.GroupAssignment = append(sync.GroupAssignment, a)
	sresp, _ := c.SyncGroup(sync)
	if sresp == nil || sresp.ErrorCode != 0 {
		t.Fatalf("sync: %+v", sresp)
	}
	return resp.MemberID, resp.Generation
}

// waitRecords waits until partition p of l holds at least n records.
func waitRecords(t *testing.T, l *memLog, p int32, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.End(p) < n {
		if time.Now().After(deadline) {
			t.Fatalf("partition %d holds %d records, want %d", p, l.End(p), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A classic group's membership is kept in the log: a coordinator that
// loads the group (a restart, or the next leader of its partition) serves
// its members in their generation, with their assignments, and no
// rebalance; DeleteGroups removes it for good.
func TestGroupMetadataRestored(t *testing.T) {
	l := newMemLog(2)
	c, name := leaderOf(t, l, 1, "meta")
	member, gen := joinAndSync(t, c, name, []byte("assignment"))
	waitRecords(t, l, 1, 1)
	if code := commit(c, name, "t", 0, 5); code == nil {
		t.Fatal("a generation -1 commit into a group with members was accepted")
	}

	// The partition moves to another coordinator.
	c.SetLeadership(map[int32]int32{})
	next := newTestCoordinator(t, l, true)
	next.SetLeadership(map[int32]int32{1: 2})
	waitServed(t, next, name)
	if st, g, n := next.Status(name); st != "Stable" || g != gen || n != 1 {
		t.Fatalf("restored group: %s generation %d members %d, want Stable %d 1", st, g, n, gen)
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = name, member, gen
	if err := next.Heartbeat(hb); err != nil {
		t.Fatalf("heartbeat of a restored member: %v", err)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = name, member, gen
	sresp, _ := next.SyncGroup(sync)
	if sresp == nil || sresp.ErrorCode != 0 || string(sresp.MemberAssignment) != "assignment" {
		t.Fatalf("sync of a restored member: %+v", sresp)
	}
	req := commitReq(name, "t", 2, 40)
	req.MemberID, req.Generation = member, gen
	resp, wait := next.OffsetCommit(req)
	if wait != nil {
		wait()
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit of a restored member: %v", kerr.ErrorForCode(code))
	}

	// It leaves: the group empties, and a reload finds it empty.
	before := l.End(1)
	leave := []kmsg.LeaveGroupRequestMember{{MemberID: member}}
	if gerr, errs := next.LeaveGroup(name, leave); gerr != nil || errs[0] != nil {
		t.Fatalf("leave: %v %v", gerr, errs)
	}
	waitRecords(t, l, 1, before+1)
	next.Close()
	third := newTestCoordinator(t, l, false)
	if st, _, n := third.Status(name); st != "Empty" || n != 0 {
		t.Fatalf("after the member left: %s with %d members, want Empty", st, n)
	}
	if off, _ := fetch(third, name, "t", 2); off != 40 {
		t.Fatalf("committed offset %d, want 40", off)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{name}
	if dr := third.DeleteGroups(t.Context(), del); dr.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete: %v", kerr.ErrorForCode(dr.Groups[0].ErrorCode))
	}
	third.Close()
	if st, _, _ := newTestCoordinator(t, l, false).Status(name); st != "Dead" {
		t.Fatalf("deleted group back after a restart: %s", st)
	}
}

// A restored member that does not come back is expired by its session
// timeout, as if it had stopped heartbeating to the old coordinator.
func TestRestoredMemberExpires(t *testing.T) {
	l := newMemLog(1)
	c := newTestCoordinator(t, l, false)
	join := kmsg.NewPtrJoinGroupRequest()
	join.Version = 3
	join.Group, join.ProtocolType = "gone", "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 200, 200
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name = "range"
	join.Protocols = append(join.Protocols, p)
	resp, wait := c.JoinGroup(join, "client", "/h")
	if resp == nil {
		resp = <-wait
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "gone", resp.MemberID, resp.Generation
	if sresp, _ := c.SyncGroup(sync); sresp == nil || sresp.ErrorCode != 0 {
		t.Fatalf("sync: %+v", sresp)
	}
	waitRecords(t, l, 0, 1)
	c.Close()
	next := newTestCoordinator(t, l, false)
	if st, _, n := next.Status("gone"); st != "Stable" || n != 1 {
		t.Fatalf("restored: %s %d", st, n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, n := next.Status("gone")
		if st == "Empty" && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored member never expired: %s %d", st, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgHeartbeat is a KIP-848 heartbeat of member at epoch subscribing to "t".
func cgHeartbeat(c *Coordinator, group, member string, epoch int32, owned []int32) *kmsg.ConsumerGroupHeartbeatResponse {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = 1
	req.Group, req.MemberID, req.MemberEpoch = group, member, epoch
	req.RebalanceTimeoutMillis = 30000
	req.SubscribedTopicNames = []string{"t"}
	if owned != nil || epoch == 0 {
		id, _ := memTopics{"t": 4}.ID("t")
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{{TopicID: id, Partitions: owned}}
		if len(owned) == 0 {
			req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		}
	}
	return c.ConsumerGroupHeartbeat(req, "client", "/h")
}

// A KIP-848 group's epochs and assignments are kept in the log too: the
// next coordinator serves its members at their epochs, and their commits.
func TestConsumerGroupRestored(t *testing.T) {
	l := newMemLog(2)
	c, name := leaderOf(t, l, 0, "cg")
	resp := cgHeartbeat(c, name, "m1", 0, nil)
	if resp.ErrorCode != 0 || resp.MemberEpoch != 1 || resp.Assignment == nil || len(resp.Assignment.Topics[0].Partitions) != 4 {
		t.Fatalf("join: %+v", resp)
	}
	if r := cgHeartbeat(c, name, "m1", 1, []int32{0, 1, 2, 3}); r.ErrorCode != 0 {
		t.Fatalf("heartbeat: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// A second member: the target moves, m1 revokes two partitions.
	if r := cgHeartbeat(c, name, "m2", 0, nil); r.ErrorCode != 0 || r.MemberEpoch != 2 {
		t.Fatalf("m2 joins: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	r1 := cgHeartbeat(c, name, "m1", 1, []int32{0, 1, 2, 3})
	if r1.ErrorCode != 0 || r1.Assignment == nil || len(r1.Assignment.Topics[0].Partitions) != 2 {
		t.Fatalf("m1 told to revoke: %+v", r1)
	}
	waitRecords(t, l, 0, 3) // the epochs and two members, at least
	// More may still be on their way (a member's record written after
	// its heartbeat was answered): wait until the log stops growing.
	settled := l.End(0)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		n := l.End(0)
		if n == settled {
			break
		}
		settled = n
	}
	// A heartbeat that changes nothing writes nothing.
	if r := cgHeartbeat(c, name, "m2", 2, nil); r.ErrorCode != 0 {
		t.Fatalf("m2 heartbeat: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	time.Sleep(50 * time.Millisecond)
	if n := l.End(0); n != settled {
		t.Fatalf("an idle heartbeat wrote %d records", n-settled)
	}

	c.SetLeadership(map[int32]int32{})
	next := newTestCoordinator(t, l, true)
	next.SetLeadership(map[int32]int32{0: 2})
	waitServed(t, next, name)
	if st, epoch, n := next.Status(name); n != 2 || epoch != 2 {
		t.Fatalf("restored: %s epoch %d members %d", st, epoch, n)
	}
	// m1 is still revoking at epoch 1: it releases what it was told to
	// and moves on, as it would have at the old coordinator.
	owned := []int32{}
	for _, t := range r1.Assignment.Topics {
		owned = append(owned, t.Partitions...)
	}
	r := cgHeartbeat(next, name, "m1", 1, owned)
	if r.ErrorCode != 0 || r.MemberEpoch != 2 {
		t.Fatalf("m1 after revoking at the restored coordinator: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	if r := cgHeartbeat(next, name, "m2", 2, nil); r.ErrorCode != 0 {
		t.Fatalf("m2 at the restored coordinator: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	req := commitReq(name, "t", 3, 77)
	req.MemberID, req.Generation = "m1", 2
	cresp, wait := next.OffsetCommit(req)
	if wait != nil {
		wait()
	}
	if code := cresp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("commit of a restored member: %v", kerr.ErrorForCode(code))
	}
	// A member the old coordinator did not know is still refused.
	if r := cgHeartbeat(next, name, "stranger", 1, nil); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// m1 leaves: a reload finds m2 alone; then m2 leaves too.
	end := l.End(0)
	if r := cgHeartbeat(next, name, "m1", -1, nil); r.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	waitRecords(t, l, 0, end+1)
	next.Close()
	third := newTestCoordinator(t, l, false)
	if members := third.Members(name); len(members) != 1 || members[0] != "m2" {
		t.Fatalf("members after m1 left: %v", members)
	}
	end = l.End(0)
	if r := cgHeartbeat(third, name, "m2", -1, nil); r.ErrorCode != 0 {
		t.Fatalf("leave: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	waitRecords(t, l, 0, end+1)
	third.Close()
	if _, _, n := newTestCoordinator(t, l, false).Status(name); n != 0 {
		t.Fatalf("%d members after the last one left", n)
	}
}
