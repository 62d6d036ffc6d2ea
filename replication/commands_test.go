package replication

import (
	"fmt"
	"slices"
	"testing"
)

func mustApply(t *testing.T, s *State, c *Command) *State {
	t.Helper()
	n, res := apply(s, c)
	if res.Err != nil {
		t.Fatalf("apply %+v: %v", c, res.Err)
	}
	return n
}

func threeBrokers(t *testing.T) *State {
	s := NewState()
	for id := int32(1); id <= 3; id++ {
		s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: id, Host: "h", Port: 9000 + id, Incarnation: "a"}})
	}
	return s
}

func TestAssignSpreadsLeadersAndReplicas(t *testing.T) {
	s := threeBrokers(t)
	for i := range 30 {
		parts, err := assign(s, 1, 3)
		if err != nil {
			t.Fatal(err)
		}
		s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: string(rune('a' + i)), ID: TopicID{byte(i + 1)}, Partitions: parts}})
	}
	leads := map[int32]int{}
	for _, tp := range s.Topics {
		p := tp.Partitions[0]
		leads[p.Leader]++
		if len(p.Replicas) != 3 || !slices.Equal(p.Replicas, p.ISR) || p.Leader != p.Replicas[0] {
			t.Fatalf("partition %+v: want 3 distinct replicas, ISR = replicas, leader = first", p)
		}
		r := slices.Clone(p.Replicas)
		slices.Sort(r)
		if !slices.Equal(r, []int32{1, 2, 3}) {
			t.Fatalf("replicas %v are not the three brokers", p.Replicas)
		}
	}
	for id := int32(1); id <= 3; id++ {
		if leads[id] != 10 {
			t.Fatalf("leaders per broker %v, want 10 each", leads)
		}
	}
	if _, err := assign(s, 1, 4); err == nil || err.Code != CodeInvalidReplicationFactor {
		t.Fatalf("rf 4 on 3 brokers: got %v, want INVALID_REPLICATION_FACTOR", err)
	}
}

func TestFenceMovesLeadershipWithinISRAndRegisterRestores(t *testing.T) {
	s := threeBrokers(t)
	id := TopicID{9}
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "t", ID: id, Partitions: []PartitionInfo{
		{Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, Leader: 1},
		{Replicas: []int32{2, 3, 1}, ISR: []int32{2, 3, 1}, Leader: 2},
	}}})
	s = mustApply(t, s, &Command{FenceBroker: &FenceBroker{ID: 1, Incarnation: "a"}})
	p0, p1 := s.Topics["t"].Partitions[0], s.Topics["t"].Partitions[1]
	if p0.Leader != 2 || p0.LeaderEpoch != 1 || !slices.Equal(p0.ISR, []int32{2, 3}) {
		t.Fatalf("after fencing 1, p0 = %+v; want leader 2 epoch 1 ISR [2 3]", p0)
	}
	if p1.Leader != 2 || p1.LeaderEpoch != 0 || !slices.Equal(p1.ISR, []int32{2, 3}) {
		t.Fatalf("after fencing 1, p1 = %+v; want leader 2 epoch 0 ISR [2 3]", p1)
	}
	if s.Live(1) {
		t.Fatal("fenced broker still live")
	}
	// A stale fence (older incarnation) is ignored.
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 1, Incarnation: "b"}})
	if n, _ := apply(s, &Command{FenceBroker: &FenceBroker{ID: 1, Incarnation: "a"}}); !n.Live(1) {
		t.Fatal("a fence for an old incarnation fenced the new one")
	}
	// Fencing 2 and 3 leaves the last ISR member without a leader, and it
	// keeps its ISR entry so it can lead again when it returns.
	s = mustApply(t, s, &Command{FenceBroker: &FenceBroker{ID: 2, Incarnation: "a"}})
	s = mustApply(t, s, &Command{FenceBroker: &FenceBroker{ID: 3, Incarnation: "a"}})
	p0 = s.Topics["t"].Partitions[0]
	if p0.Leader != -1 || !slices.Equal(p0.ISR, []int32{3}) {
		t.Fatalf("all ISR fenced: p0 = %+v; want leader -1 ISR [3]", p0)
	}
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 3, Incarnation: "b"}})
	p0 = s.Topics["t"].Partitions[0]
	if p0.Leader != 3 {
		t.Fatalf("ISR member returned: p0 = %+v; want leader 3", p0)
	}
}

func TestChangeISRChecksLeaderEpoch(t *testing.T) {
	s := threeBrokers(t)
	ref := TopicRef{Name: "t", ID: TopicID{1}}
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "t", ID: ref.ID, Partitions: []PartitionInfo{{Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, Leader: 1}}}})
	all := []int32{1, 2, 3}
	if _, res := apply(s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, LeaderEpoch: 3, ISR: []int32{1}, From: all}}); res.Err == nil || res.Err.Code != CodeFencedLeaderEpoch {
		t.Fatalf("stale epoch: got %v", res.Err)
	}
	if _, res := apply(s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{2}, From: all}}); res.Err == nil {
		t.Fatal("an ISR without its leader was accepted")
	}
	s = mustApply(t, s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{1, 3}, From: all}})
	if got := s.Topics["t"].Partitions[0].ISR; !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("ISR %v, want [1 3]", got)
	}
	// A change based on a stale ISR is refused: here the leader still
	// believes 2 is in it.
	if _, res := apply(s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{1, 2}, From: all}}); res.Err == nil {
		t.Fatal("a change based on a stale ISR was accepted")
	}
	// A fenced broker cannot join.
	s = mustApply(t, s, &Command{FenceBroker: &FenceBroker{ID: 2, Incarnation: "a"}})
	if _, res := apply(s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{1, 2, 3}, From: []int32{1, 3}}}); res.Err == nil {
		t.Fatal("a fenced broker joined the ISR")
	}
}

func TestCreateTopicRetryIsIdempotent(t *testing.T) {
	s := threeBrokers(t)
	c := &Command{CreateTopic: &TopicInfo{Name: "t", ID: TopicID{1}, Partitions: []PartitionInfo{{Replicas: []int32{1}, ISR: []int32{1}, Leader: 1}}}}
	s = mustApply(t, s, c)
	if _, res := apply(s, c); res.Err != nil {
		t.Fatalf("retry of the same create: %v", res.Err)
	}
	other := &Command{CreateTopic: &TopicInfo{Name: "t", ID: TopicID{2}}}
	if _, res := apply(s, other); res.Err == nil || res.Err.Code != CodeTopicAlreadyExists {
		t.Fatalf("second topic of the same name: got %v", res.Err)
	}
}

// A broker that restarts within its session (a new incarnation while still
// unfenced) loses its leaderships and ISR places, as if it had been fenced.
func TestQuickRestartIsFencedFirst(t *testing.T) {
	s := threeBrokers(t)
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "t", ID: TopicID{1}, Partitions: []PartitionInfo{
		{Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, Leader: 1},
	}}})
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 1, Incarnation: "b"}})
	p := s.Topics["t"].Partitions[0]
	if p.Leader != 2 || p.LeaderEpoch != 1 || slices.Contains(p.ISR, 1) || !s.Live(1) {
		t.Fatalf("after a quick restart of 1: %+v live %v; want leader 2, epoch 1, 1 out of the ISR but live", p, s.Live(1))
	}
}

// apply is applyAt for tests that do not care about the Raft index.
func apply(s *State, c *Command) (*State, Result) { return applyAt(s, c, 0) }

// A deleted topic is recorded by ID; adoption takes in an unknown topic
// with its adopter as the only replica at an epoch above its log's, merges
// a second adopter (who takes over when it holds more), and refuses a
// deleted topic or another topic's name.
func TestDeletionRecordsAndAdoption(t *testing.T) {
	s := NewState()
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 1, Incarnation: "a"}})
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 2, Incarnation: "b"}})
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "old", ID: TopicID{1}, Partitions: []PartitionInfo{{Replicas: []int32{1}, ISR: []int32{1}, Leader: 1}}}})
	n, res := applyAt(s, &Command{DeleteTopic: &TopicRef{Name: "old", ID: TopicID{1}}}, 42)
	if res.Err != nil || n.Topics["old"] != nil || n.Deleted[TopicID{1}] != (DeletedTopic{Name: "old", Index: 42}) {
		t.Fatalf("delete: %v, deleted %v", res.Err, n.Deleted)
	}
	s = n
	if _, err := planAdopt(s, &AdoptTopicRequest{Broker: 1, Name: "old", ID: TopicID{1}, Partitions: []Holding{{LogEnd: 5}}}); err == nil || err.Code != CodeUnknownTopicOrPartition {
		t.Fatalf("adopting a deleted topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}

	req := &AdoptTopicRequest{Broker: 1, Name: "kept", ID: TopicID{2}, Configs: map[string]string{"retention.ms": "-1"},
		Partitions: []Holding{{LogEnd: 500, LastEpoch: 4}, {LogEnd: 0, LastEpoch: -1}}}
	ti, err := planAdopt(s, req)
	if err != nil {
		t.Fatal(err)
	}
	s = mustApply(t, s, &Command{AdoptTopic: ti})
	p := s.Topics["kept"].Partitions
	if len(p) != 2 || p[0].Leader != 1 || p[0].LeaderEpoch != 5 || !slices.Equal(p[0].ISR, []int32{1}) || p[1].LeaderEpoch != 0 {
		t.Fatalf("adopted partitions %+v", p)
	}
	// A second broker holding more of partition 0 takes it over; of
	// partition 1 it holds nothing more and only becomes a replica.
	ti, err = planAdopt(s, &AdoptTopicRequest{Broker: 2, Name: "kept", ID: TopicID{2}, Partitions: []Holding{{LogEnd: 800, LastEpoch: 4}, {LogEnd: 0, LastEpoch: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	s = mustApply(t, s, &Command{AdoptTopic: ti})
	p = s.Topics["kept"].Partitions
	if p[0].Leader != 2 || p[0].LeaderEpoch != 6 || !slices.Equal(p[0].Replicas, []int32{1, 2}) || !slices.Equal(p[0].ISR, []int32{2}) {
		t.Fatalf("partition 0 after the second adopter: %+v", p[0])
	}
	if p[1].Leader != 1 || !slices.Equal(p[1].Replicas, []int32{1, 2}) || !slices.Equal(p[1].ISR, []int32{1}) {
		t.Fatalf("partition 1 after the second adopter: %+v", p[1])
	}
	if _, err := planAdopt(s, &AdoptTopicRequest{Broker: 1, Name: "kept", ID: TopicID{3}, Partitions: []Holding{{}}}); err == nil || err.Code != CodeTopicAlreadyExists {
		t.Fatalf("adopting another topic under a taken name: %v", err)
	}
}

// A broker back with another data directory leaves every ISR, even as the
// last member; a damaged replica leaves the ISR (not as its last member),
// may not rejoin it or lead while another can, until reported whole; an
// unclean election makes a replica outside the ISR its only member.
func TestStorageReplacedDamagedAndUnclean(t *testing.T) {
	s := NewState()
	for _, id := range []int32{1, 2, 3} {
		s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: id, Incarnation: "i1", StorageID: fmt.Sprint("disk", id)}})
	}
	ref := TopicRef{Name: "t", ID: TopicID{1}}
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "t", ID: ref.ID, Partitions: []PartitionInfo{
		{Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, Leader: 1},
		{Replicas: []int32{3, 1, 2}, ISR: []int32{3}, Leader: 3},
	}}})

	// Broker 3 returns with an empty disk: out of both ISRs, partition 1
	// (where it was the last member) without a leader.
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 3, Incarnation: "i2", StorageID: "disk3-new"}})
	p := s.Topics["t"].Partitions
	if !slices.Equal(p[0].ISR, []int32{1, 2}) || p[0].Leader != 1 {
		t.Fatalf("partition 0 after broker 3's disk was replaced: %+v", p[0])
	}
	if len(p[1].ISR) != 0 || p[1].Leader != -1 || p[1].LeaderEpoch != 1 || !slices.Equal(p[1].Empty, []int32{3}) {
		t.Fatalf("partition 1 (broker 3 its only ISR member) after its disk was replaced: %+v", p[1])
	}
	// The same disk again (a restart) changes nothing of that kind.
	if n := mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 1, Incarnation: "i1", StorageID: "disk1"}}); !slices.Equal(n.Topics["t"].Partitions[0].ISR, []int32{1, 2}) {
		t.Fatalf("a re-registration with the same disk changed the ISR: %+v", n.Topics["t"].Partitions[0])
	}

	// Broker 1, the leader of partition 0, reports its replica damaged:
	// broker 2 leads, 1 cannot rejoin until it reports it whole.
	s = mustApply(t, s, &Command{MarkReplica: &MarkReplica{TopicRef: ref, Partition: 0, Broker: 1, Incarnation: "i1", Damaged: true}})
	p = s.Topics["t"].Partitions
	if p[0].Leader != 2 || !slices.Equal(p[0].ISR, []int32{2}) || !slices.Equal(p[0].Offline, []int32{1}) {
		t.Fatalf("partition 0 after broker 1 reported damage: %+v", p[0])
	}
	if _, res := apply(s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Partition: 0, Leader: 2, LeaderEpoch: p[0].LeaderEpoch, ISR: []int32{2, 1}, From: []int32{2}}}); res.Err == nil {
		t.Fatal("a damaged replica rejoined the ISR")
	}
	s = mustApply(t, s, &Command{MarkReplica: &MarkReplica{TopicRef: ref, Partition: 0, Broker: 1, Incarnation: "i1"}})
	s = mustApply(t, s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Partition: 0, Leader: 2, LeaderEpoch: s.Topics["t"].Partitions[0].LeaderEpoch, ISR: []int32{2, 1}, From: []int32{2}}})

	// Partition 1 has no leader; an unclean election names broker 1.
	if _, res := apply(s, &Command{ElectLeader: &ElectLeader{TopicRef: ref, Partition: 1, Leader: 1}}); res.Err == nil {
		t.Fatal("a clean election of a broker outside the ISR succeeded")
	}
	s = mustApply(t, s, &Command{ElectLeader: &ElectLeader{TopicRef: ref, Partition: 1, Leader: 1, Unclean: true}})
	if p := s.Topics["t"].Partitions[1]; p.Leader != 1 || !slices.Equal(p.ISR, []int32{1}) || p.LeaderEpoch != 2 {
		t.Fatalf("partition 1 after an unclean election: %+v", p)
	}
}

// A reassignment adds the target's new replicas, completes when they are
// all in the ISR (the leaving ones leave, a leaving leader hands over), can
// be cancelled while it runs, and refuses unknown brokers.
func TestReassignment(t *testing.T) {
	s := NewState()
	for _, id := range []int32{1, 2, 3} {
		s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: id, Incarnation: "i"}})
	}
	ref := TopicRef{Name: "r", ID: TopicID{9}}
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: "r", ID: ref.ID, Partitions: []PartitionInfo{{Replicas: []int32{1}, ISR: []int32{1}, Leader: 1}}}})
	if _, res := apply(s, &Command{Reassign: &Reassign{TopicRef: ref, Target: []int32{1, 7}}}); res.Err == nil || res.Err.Code != CodeInvalidReplicaAssignment {
		t.Fatalf("reassigning to an unknown broker: %v", res.Err)
	}
	// Grow to three replicas: 2 and 3 join.
	s = mustApply(t, s, &Command{Reassign: &Reassign{TopicRef: ref, Target: []int32{1, 2, 3}}})
	p := s.Topics["r"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{1, 2, 3}) || !slices.Equal(p.Adding, []int32{2, 3}) || len(p.Removing) != 0 || !slices.Equal(p.ISR, []int32{1}) {
		t.Fatalf("while growing: %+v", p)
	}
	s = mustApply(t, s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{1, 2}, From: []int32{1}}})
	if p := s.Topics["r"].Partitions[0]; !slices.Equal(p.Adding, []int32{2, 3}) {
		t.Fatalf("completed with broker 3 out of the ISR: %+v", p)
	}
	s = mustApply(t, s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Leader: 1, ISR: []int32{1, 2, 3}, From: []int32{1, 2}}})
	if p := s.Topics["r"].Partitions[0]; len(p.Adding) != 0 || !slices.Equal(p.Replicas, []int32{1, 2, 3}) {
		t.Fatalf("after every new replica joined the ISR: %+v", p)
	}
	// Move off broker 1, the leader: 2 leads once the move completes.
	s = mustApply(t, s, &Command{Reassign: &Reassign{TopicRef: ref, Target: []int32{2, 3}}})
	p = s.Topics["r"].Partitions[0]
	if !slices.Equal(p.Replicas, []int32{2, 3}) || p.Leader != 2 || p.LeaderEpoch != 1 || !slices.Equal(p.ISR, []int32{2, 3}) {
		t.Fatalf("after moving off the leader (the target was in sync already): %+v", p)
	}
	// A cancelled reassignment reverts to the replicas before it.
	s = mustApply(t, s, &Command{Reassign: &Reassign{TopicRef: ref, Target: []int32{2, 3, 1}}})
	s = mustApply(t, s, &Command{Reassign: &Reassign{TopicRef: ref}})
	if p := s.Topics["r"].Partitions[0]; !slices.Equal(p.Replicas, []int32{2, 3}) || len(p.Adding) != 0 {
		t.Fatalf("after a cancel: %+v", p)
	}
	if _, res := apply(s, &Command{Reassign: &Reassign{TopicRef: ref}}); res.Err == nil || res.Err.Code != CodeNoReassignmentInProgress {
		t.Fatalf("cancelling nothing: %v", res.Err)
	}
}

// A broker that comes back after a fence leads none of the partitions it
// is the preferred replica of. Once it is in their ISRs again the
// imbalance check names them (and only above the threshold), and a
// preferred election moves them back under a new epoch; partitions whose
// preferred replica cannot lead are left alone, with the reason.
func TestPreferredLeaderElection(t *testing.T) {
	s := threeBrokers(t)
	ref := TopicRef{Name: "t", ID: TopicID{7}}
	var parts []PartitionInfo
	for i := range 6 {
		r := []int32{int32(i%3 + 1), int32((i+1)%3 + 1), int32((i+2)%3 + 1)}
		parts = append(parts, PartitionInfo{Replicas: r, ISR: slices.Clone(r), Leader: r[0]})
	}
	s = mustApply(t, s, &Command{CreateTopic: &TopicInfo{Name: ref.Name, ID: ref.ID, Partitions: parts}})
	if refs := ImbalancedPartitions(s, 10); len(refs) != 0 {
		t.Fatalf("balanced cluster: imbalanced %v", refs)
	}
	s = mustApply(t, s, &Command{FenceBroker: &FenceBroker{ID: 1, Incarnation: "a"}})
	s = mustApply(t, s, &Command{RegisterBroker: &BrokerInfo{ID: 1, Host: "h", Port: 9001, Incarnation: "b"}})
	p0 := s.Topics["t"].Partitions[0]
	if p0.Leader == 1 {
		t.Fatalf("the returning broker leads %+v before it rejoined the ISR", p0)
	}
	if err := PreferredLeaderCheck(s, p0); err == nil || err.Code != CodePreferredLeaderNotAvailable {
		t.Fatalf("preferred replica outside the ISR: check gave %v; want PREFERRED_LEADER_NOT_AVAILABLE", err)
	}
	if refs := ImbalancedPartitions(s, 10); len(refs) != 0 {
		t.Fatalf("nothing can move while broker 1 is outside the ISRs, yet %v were named", refs)
	}
	// Broker 1 catches up on partition 0 only.
	s = mustApply(t, s, &Command{ChangeISR: &ChangeISR{TopicRef: ref, Partition: 0, Leader: p0.Leader, LeaderEpoch: p0.LeaderEpoch,
		ISR: append(slices.Clone(p0.ISR), 1), From: p0.ISR}})
	if refs := ImbalancedPartitions(s, 100); len(refs) != 0 {
		t.Fatalf("threshold 100 %%: imbalanced %v", refs)
	}
	refs := ImbalancedPartitions(s, 10)
	if len(refs) != 1 || refs[0].Partition != 0 {
		t.Fatalf("imbalanced %v; want partition 0 only (3 is not in its ISR yet)", refs)
	}
	epoch := s.Topics["t"].Partitions[0].LeaderEpoch
	s = mustApply(t, s, &Command{ElectPreferred: &ElectPreferred{Partitions: []PartitionRef{{TopicRef: ref, Partition: 0}, {TopicRef: ref, Partition: 3}, {TopicRef: ref, Partition: 1}}}})
	ps := s.Topics["t"].Partitions
	if ps[0].Leader != 1 || ps[0].LeaderEpoch != epoch+1 {
		t.Fatalf("after the election p0 = %+v; want leader 1 at epoch %d", ps[0], epoch+1)
	}
	if ps[3].Leader == 1 {
		t.Fatalf("p3 moved to broker 1, which is not in its ISR: %+v", ps[3])
	}
	if ps[1].Leader != 2 || ps[1].LeaderEpoch != 0 {
		t.Fatalf("p1, led by its preferred replica, changed: %+v", ps[1])
	}
	if err := PreferredLeaderCheck(s, ps[0]); err == nil || err.Code != CodeElectionNotNeeded {
		t.Fatalf("preferred replica leads: check gave %v; want ELECTION_NOT_NEEDED", err)
	}
}
