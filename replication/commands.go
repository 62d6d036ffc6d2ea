package replication

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// Command is one entry of the metadata log. Exactly one field is set. Every
// command is deterministic: the leader decides IDs and assignments before
// proposing, so every broker applying it reaches the same state.
type Command struct {
	InitCluster      *InitCluster      `json:"init_cluster,omitempty"`
	RegisterBroker   *BrokerInfo       `json:"register_broker,omitempty"`
	FenceBroker      *FenceBroker      `json:"fence_broker,omitempty"`
	CreateTopic      *TopicInfo        `json:"create_topic,omitempty"`
	DeleteTopic      *TopicRef         `json:"delete_topic,omitempty"`
	CreatePartitions *CreatePartitions `json:"create_partitions,omitempty"`
	SetConfigs       *SetConfigs       `json:"set_configs,omitempty"`
	AllocProducerIDs *AllocProducerIDs `json:"alloc_producer_ids,omitempty"`
	ChangeISR        *ChangeISR        `json:"change_isr,omitempty"`
	AdoptTopic       *TopicInfo        `json:"adopt_topic,omitempty"`
	MarkReplica      *MarkReplica      `json:"mark_replica,omitempty"`
	ElectLeader      *ElectLeader      `json:"elect_leader,omitempty"`
	ElectPreferred   *ElectPreferred   `json:"elect_preferred,omitempty"`
	Reassign         *Reassign         `json:"reassign,omitempty"`
	Security         *SecurityChange   `json:"security,omitempty"`
}

// MarkReplica records a broker's report on one of its replicas: damaged
// (offline) or whole again.
type MarkReplica struct {
	TopicRef
	Partition   int32  `json:"partition"`
	Broker      int32  `json:"broker"`
	Incarnation string `json:"incarnation"` // only this incarnation's report counts
	Damaged     bool   `json:"damaged"`
}

// ElectLeader makes Leader the leader of a partition that has none. An
// unclean election (unclean.leader.election.enable) picks a live replica
// outside the ISR, which becomes its only member: what it lacks is lost.
type ElectLeader struct {
	TopicRef
	Partition int32 `json:"partition"`
	Leader    int32 `json:"leader"`
	Unclean   bool  `json:"unclean"`
}

// ElectPreferred moves each partition's leadership to its preferred
// replica (the first of its replicas) where that replica is live, in the
// ISR and not damaged, and does not lead it already (Kafka's preferred
// leader election). Partitions where that no longer holds when the command
// applies are left as they are.
type ElectPreferred struct {
	Partitions []PartitionRef `json:"partitions"`
}

// PartitionRef names one partition of a topic.
type PartitionRef struct {
	TopicRef
	Partition int32 `json:"partition"`
}

// InitCluster names the cluster; later ones are ignored.
type InitCluster struct {
	ClusterID string `json:"cluster_id"`
}

// FenceBroker fences a broker that missed its heartbeats.
type FenceBroker struct {
	ID          int32  `json:"id"`
	Incarnation string `json:"incarnation"` // only this incarnation is fenced
}

// TopicRef names a topic by name and ID, so a command never hits a newer
// topic of the same name.
type TopicRef struct {
	Name string  `json:"name"`
	ID   TopicID `json:"id"`
}

// CreatePartitions appends partitions to a topic.
type CreatePartitions struct {
	TopicRef
	Add []PartitionInfo `json:"add"`
}

// SetConfigs replaces a topic's explicit configs.
type SetConfigs struct {
	TopicRef
	Configs map[string]string `json:"configs"`
}

// AllocProducerIDs hands a block of producer IDs to a broker.
type AllocProducerIDs struct {
	Broker int32 `json:"broker"`
	Count  int64 `json:"count"`
}

// ChangeISR sets a partition's ISR, proposed by its leader (ISR shrink and
// expand). It applies only while the leader and its epoch are unchanged.
type ChangeISR struct {
	TopicRef
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	ISR         []int32 `json:"isr"`
	// From is the ISR the leader based the change on: a change made on a
	// stale view (a fence or another change applied since) is refused.
	From []int32 `json:"from"`
}

// Result is what applying a command returned.
type Result struct {
	Err   *Error `json:"err,omitempty"`
	Value int64  `json:"value,omitempty"` // AllocProducerIDs: the first ID of the block
	Index uint64 `json:"index"`           // the Raft index the command was applied at
	// Security is a SecurityChange's per-item outcome.
	Security *SecurityResult `json:"security,omitempty"`
}

// Error is a failure with a Kafka error code, so a broker can answer its
// client with the right code whichever node decided.
type Error struct {
	Code    int16  `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Kafka error codes the controller returns.
const (
	CodeUnknownTopicOrPartition  int16 = 3
	CodeNotLeaderOrFollower      int16 = 6
	CodeNotController            int16 = 41
	CodeInvalidPartitions        int16 = 37
	CodeInvalidReplicationFactor int16 = 38
	CodeTopicAlreadyExists       int16 = 36
	CodeInvalidRequest           int16 = 42
	// Leader elections (ElectLeaders).
	CodePreferredLeaderNotAvailable int16 = 80
	CodeEligibleLeadersNotAvailable int16 = 83
	CodeElectionNotNeeded           int16 = 84
	CodePolicyViolation             int16 = 44
	// CodeDuplicateBrokerRegistration is KRaft's answer to a broker
	// registering with the ID of another that is still live.
	CodeDuplicateBrokerRegistration int16 = 101
	CodeFencedLeaderEpoch           int16 = 74
	CodeRequestTimedOut             int16 = 7
)

func errorf(code int16, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// applyAt returns the state after c, applied at Raft index index, and c's
// result. s is not modified.
func applyAt(s *State, c *Command, index uint64) (*State, Result) {
	switch {
	case c.InitCluster != nil:
		if s.ClusterID != "" {
			return s, Result{}
		}
		n := s.clone()
		n.ClusterID = c.InitCluster.ClusterID
		return n, Result{}

	case c.RegisterBroker != nil:
		return applyRegister(s, c.RegisterBroker), Result{}

	case c.FenceBroker != nil:
		b := s.Brokers[c.FenceBroker.ID]
		if b == nil || b.Fenced || b.Incarnation != c.FenceBroker.Incarnation {
			return s, Result{} // restarted or fenced in between
		}
		return applyFence(s, b.ID), Result{}

	case c.CreateTopic != nil:
		t := c.CreateTopic
		if cur := s.Topics[t.Name]; cur != nil {
			if cur.ID == t.ID {
				return s, Result{} // a retried proposal that committed before
			}
			return s, Result{Err: errorf(CodeTopicAlreadyExists, "topic %q already exists", t.Name)}
		}
		n := s.clone()
		n.Topics[t.Name] = t
		return n, Result{}

	case c.DeleteTopic != nil:
		if _, err := s.topic(*c.DeleteTopic); err != nil {
			return s, Result{Err: err}
		}
		n := s.clone()
		delete(n.Topics, c.DeleteTopic.Name)
		if n.Deleted == nil {
			n.Deleted = map[TopicID]DeletedTopic{}
		}
		n.Deleted[c.DeleteTopic.ID] = DeletedTopic{Name: c.DeleteTopic.Name, Index: index}
		for len(n.Deleted) > maxDeletedTopics {
			oldest := c.DeleteTopic.ID
			for id, d := range n.Deleted {
				if d.Index < n.Deleted[oldest].Index {
					oldest = id
				}
			}
			delete(n.Deleted, oldest)
		}
		return n, Result{}

	case c.AdoptTopic != nil:
		t := c.AdoptTopic
		if _, gone := s.Deleted[t.ID]; gone {
			return s, Result{Err: errorf(CodeUnknownTopicOrPartition, "topic %q (%s) was deleted", t.Name, t.ID)}
		}
		if cur := s.Topics[t.Name]; cur != nil && cur.ID != t.ID {
			return s, Result{Err: errorf(CodeTopicAlreadyExists, "another topic named %q exists (%s)", t.Name, cur.ID)}
		}
		n := s.clone()
		n.Topics[t.Name] = t
		return n, Result{}

	case c.CreatePartitions != nil:
		t, err := s.topic(c.CreatePartitions.TopicRef)
		if err != nil {
			return s, Result{Err: err}
		}
		n := s.clone()
		n.Topics[t.Name] = t.withPartitions(append(slices.Clip(t.Partitions), c.CreatePartitions.Add...))
		return n, Result{}

	case c.SetConfigs != nil:
		t, err := s.topic(c.SetConfigs.TopicRef)
		if err != nil {
			return s, Result{Err: err}
		}
		n := s.clone()
		nt := *t
		nt.Configs = maps.Clone(c.SetConfigs.Configs)
		n.Topics[t.Name] = &nt
		return n, Result{}

	case c.AllocProducerIDs != nil:
		n := s.clone()
		first := n.NextProducerID
		n.NextProducerID += c.AllocProducerIDs.Count
		return n, Result{Value: first}

	case c.ChangeISR != nil:
		return applyChangeISR(s, c.ChangeISR)

	case c.MarkReplica != nil:
		return applyMarkReplica(s, c.MarkReplica)

	case c.ElectLeader != nil:
		return applyElectLeader(s, c.ElectLeader)
	case c.ElectPreferred != nil:
		return applyElectPreferred(s, c.ElectPreferred), Result{}

	case c.Reassign != nil:
		return applyReassign(s, c.Reassign)

	case c.Security != nil:
		return applySecurity(s, c.Security)
	}
	return s, Result{Err: errorf(CodeInvalidRequest, "empty metadata command")}
}

// partition returns the topic ref names and its partition i, or an error
// saying which is missing.
func (s *State) partition(ref TopicRef, i int32) (*TopicInfo, PartitionInfo, *Error) {
	t, err := s.topic(ref)
	if err != nil {
		return nil, PartitionInfo{}, err
	}
	if i < 0 || int(i) >= len(t.Partitions) {
		return nil, PartitionInfo{}, errorf(CodeUnknownTopicOrPartition, "topic %q has no partition %d", t.Name, i)
	}
	return t, t.Partitions[i], nil
}

// withPartition returns a state like s with partition i of t replaced by
// p (s is not modified).
func (s *State) withPartition(t *TopicInfo, i int32, p PartitionInfo) *State {
	n := s.clone()
	parts := slices.Clone(t.Partitions)
	parts[i] = p
	n.Topics[t.Name] = t.withPartitions(parts)
	return n
}

func (s *State) topic(ref TopicRef) (*TopicInfo, *Error) {
	t := s.Topics[ref.Name]
	if t == nil || t.ID != ref.ID {
		return nil, errorf(CodeUnknownTopicOrPartition, "topic %q does not exist", ref.Name)
	}
	return t, nil
}

// applyRegister records a (re)started or returning broker as live, and
// gives it the partitions that had no leader and still list it in their ISR.
func applyRegister(s *State, b *BrokerInfo) *State {
	if cur := s.Brokers[b.ID]; cur != nil && cur.StorageID != "" && b.StorageID != "" && cur.StorageID != b.StorageID {
		// Back with another data directory: it holds nothing its
		// replicas held. It leaves every ISR, even as the last member
		// (then the partition has no leader until one with the data
		// returns, or unclean.leader.election.enable says otherwise).
		s = applyStorageReplaced(s, b.ID)
	}
	if cur := s.Brokers[b.ID]; cur != nil && !cur.Fenced && cur.Incarnation != b.Incarnation {
		// Restarted within its session: the old incarnation is gone, and
		// with it whatever it had not fsynced. Fence it first, so its
		// partitions get new leaders and epochs and it rejoins ISRs only
		// by catching up.
		s = applyFence(s, b.ID)
	}
	restarted := s.Brokers[b.ID] == nil || s.Brokers[b.ID].Incarnation != b.Incarnation
	n := s.clone()
	nb := *b
	nb.Fenced = false
	n.Brokers[b.ID] = &nb
	for name, t := range n.Topics {
		var parts []PartitionInfo
		for i, p := range t.Partitions {
			if restarted && slices.Contains(p.Offline, b.ID) {
				// A new incarnation reports its damage anew (it may have
				// been repaired before the restart).
				if parts == nil {
					parts = slices.Clone(t.Partitions)
				}
				parts[i].Offline = slices.DeleteFunc(slices.Clone(p.Offline), func(r int32) bool { return r == b.ID })
			}
			if p.Leader != -1 || !slices.Contains(p.ISR, b.ID) {
				continue
			}
			if parts == nil {
				parts = slices.Clone(t.Partitions)
			}
			parts[i].Leader = b.ID
			parts[i].LeaderEpoch++
		}
		if parts != nil {
			n.Topics[name] = t.withPartitions(parts)
		}
	}
	return n
}

// applyFence fences broker id: it leaves every ISR it is in (unless it is
// the last member: the ISR keeps its last member, as Kafka's does, so the
// partition can come back when that broker does), and every partition it led
// gets a new leader from the rest of the ISR, or none.
func applyFence(s *State, id int32) *State {
	n := s.clone()
	nb := *n.Brokers[id]
	nb.Fenced = true
	n.Brokers[id] = &nb
	for name, t := range n.Topics {
		var parts []PartitionInfo
		for i, p := range t.Partitions {
			if !slices.Contains(p.ISR, id) && p.Leader != id {
				continue
			}
			if parts == nil {
				parts = slices.Clone(t.Partitions)
			}
			np := p
			if len(p.ISR) > 1 {
				np.ISR = slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == id })
			}
			if p.Leader == id {
				np.Leader = electLeader(n, np)
				np.LeaderEpoch++
				np.Adopted = nil
			}
			parts[i] = np
		}
		if parts != nil {
			n.Topics[name] = t.withPartitions(parts)
		}
	}
	return n
}

// electLeader picks the first live replica, in preference order, that is in
// the ISR and not offline (damaged), else the first live one in the ISR;
// -1 if none (an unclean election is the controller leader's to propose).
func electLeader(s *State, p PartitionInfo) int32 {
	fallback := int32(-1)
	for _, r := range p.Replicas {
		if !s.Live(r) || !slices.Contains(p.ISR, r) {
			continue
		}
		if !slices.Contains(p.Offline, r) {
			return r
		}
		if fallback < 0 {
			fallback = r
		}
	}
	return fallback
}

// applyStorageReplaced takes broker id out of every ISR and leadership: it
// came back with another data directory.
func applyStorageReplaced(s *State, id int32) *State {
	n := s.clone()
	for name, t := range n.Topics {
		var parts []PartitionInfo
		for i, p := range t.Partitions {
			if !slices.Contains(p.Replicas, id) {
				continue
			}
			if parts == nil {
				parts = slices.Clone(t.Partitions)
			}
			np := p
			np.ISR = slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == id })
			np.Offline = slices.DeleteFunc(slices.Clone(p.Offline), func(r int32) bool { return r == id })
			if !slices.Contains(p.Empty, id) {
				np.Empty = append(slices.Clone(p.Empty), id)
			}
			if p.Leader == id {
				np.Leader = electLeader(n, np)
				np.LeaderEpoch++
				np.Adopted = nil
			}
			parts[i] = np
		}
		if parts != nil {
			n.Topics[name] = t.withPartitions(parts)
		}
	}
	return n
}

func applyMarkReplica(s *State, c *MarkReplica) (*State, Result) {
	t, p, err := s.partition(c.TopicRef, c.Partition)
	if err != nil {
		return s, Result{Err: err}
	}
	if b := s.Brokers[c.Broker]; b == nil || b.Incarnation != c.Incarnation {
		return s, Result{Err: errorf(CodeFencedLeaderEpoch, "broker %d restarted since it made the report", c.Broker)}
	}
	if !slices.Contains(p.Replicas, c.Broker) || slices.Contains(p.Offline, c.Broker) == c.Damaged {
		return s, Result{}
	}
	np := p
	if c.Damaged {
		np.Offline = append(slices.Clone(p.Offline), c.Broker)
		if len(p.ISR) > 1 && slices.Contains(p.ISR, c.Broker) {
			np.ISR = slices.DeleteFunc(slices.Clone(p.ISR), func(r int32) bool { return r == c.Broker })
			if p.Leader == c.Broker {
				np.Leader = electLeader(s, np)
				np.LeaderEpoch++
				np.Adopted = nil
			}
		}
	} else {
		np.Offline = slices.DeleteFunc(slices.Clone(p.Offline), func(r int32) bool { return r == c.Broker })
	}
	return s.withPartition(t, c.Partition, np), Result{}
}

func applyElectLeader(s *State, c *ElectLeader) (*State, Result) {
	t, p, err := s.partition(c.TopicRef, c.Partition)
	if err != nil {
		return s, Result{Err: err}
	}
	switch {
	case p.Leader >= 0 && s.Live(p.Leader):
		return s, Result{Err: errorf(CodeElectionNotNeeded, "partition %s/%d has leader %d", t.Name, c.Partition, p.Leader)}
	case !slices.Contains(p.Replicas, c.Leader) || !s.Live(c.Leader):
		return s, Result{Err: errorf(CodeEligibleLeadersNotAvailable, "broker %d is not a live replica of %s/%d", c.Leader, t.Name, c.Partition)}
	case !c.Unclean && !slices.Contains(p.ISR, c.Leader):
		return s, Result{Err: errorf(CodeEligibleLeadersNotAvailable, "broker %d is not in the ISR of %s/%d", c.Leader, t.Name, c.Partition)}
	}
	np := p
	np.Leader = c.Leader
	np.LeaderEpoch++
	np.Adopted = nil
	if !slices.Contains(p.ISR, c.Leader) {
		np.ISR = []int32{c.Leader}
		np.Empty = slices.DeleteFunc(slices.Clone(p.Empty), func(r int32) bool { return r == c.Leader })
	}
	return s.withPartition(t, c.Partition, np), Result{}
}

func applyChangeISR(s *State, c *ChangeISR) (*State, Result) {
	t, p, err := s.partition(c.TopicRef, c.Partition)
	if err != nil {
		return s, Result{Err: err}
	}
	if p.Leader != c.Leader || p.LeaderEpoch != c.LeaderEpoch {
		return s, Result{Err: errorf(CodeFencedLeaderEpoch, "leader %d epoch %d is no longer current (leader %d epoch %d)",
			c.Leader, c.LeaderEpoch, p.Leader, p.LeaderEpoch)}
	}
	if !sameMembers(p.ISR, c.From) {
		return s, Result{Err: errorf(CodeFencedLeaderEpoch, "the ISR changed to %v since the leader read %v", p.ISR, c.From)}
	}
	if len(c.ISR) == 0 || !slices.Contains(c.ISR, c.Leader) {
		return s, Result{Err: errorf(CodeInvalidRequest, "an ISR must hold its leader")}
	}
	for _, r := range c.ISR {
		if !slices.Contains(p.Replicas, r) {
			return s, Result{Err: errorf(CodeInvalidRequest, "broker %d is not a replica", r)}
		}
		if !slices.Contains(p.ISR, r) && !s.Live(r) {
			return s, Result{Err: errorf(CodeInvalidRequest, "broker %d is fenced and cannot join the ISR", r)}
		}
		if !slices.Contains(p.ISR, r) && slices.Contains(p.Offline, r) {
			return s, Result{Err: errorf(CodeInvalidRequest, "broker %d reported its replica damaged and cannot join the ISR", r)}
		}
	}
	np := p
	np.ISR = slices.Clone(c.ISR)
	np.Empty = slices.DeleteFunc(slices.Clone(p.Empty), func(r int32) bool { return slices.Contains(c.ISR, r) })
	np = finishReassign(s, np)
	if len(c.ISR) > 1 {
		np.Adopted = nil // replication took over from adoption
	}
	return s.withPartition(t, c.Partition, np), Result{}
}

func encodeCommand(c *Command) ([]byte, error) { return json.Marshal(c) }

func decodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("replication: decode command: %w", err)
	}
	return &c, nil
}

// assign places partitions [first, first+count) of a topic on live brokers:
// replicas on consecutive brokers of the ring, each partition's preferred
// leader the live broker leading the fewest partitions so far, so leaders
// spread evenly across topics.
func assign(s *State, count, rf int) ([]PartitionInfo, *Error) {
	live := s.LiveBrokers()
	if rf < 1 {
		return nil, errorf(CodeInvalidReplicationFactor, "replication factor %d must be at least 1", rf)
	}
	if rf > len(live) {
		return nil, errorf(CodeInvalidReplicationFactor, "replication factor %d is larger than the %d live brokers", rf, len(live))
	}
	leads := make(map[int32]int, len(live))
	for _, t := range s.Topics {
		for _, p := range t.Partitions {
			if len(p.Replicas) > 0 {
				leads[p.Replicas[0]]++
			}
		}
	}
	out := make([]PartitionInfo, count)
	for i := range out {
		start := 0
		for j, b := range live {
			if leads[b.ID] < leads[live[start].ID] {
				start = j
			}
		}
		reps := make([]int32, rf)
		for k := range reps {
			reps[k] = live[(start+k)%len(live)].ID
		}
		leads[reps[0]]++
		out[i] = PartitionInfo{Replicas: reps, ISR: slices.Clone(reps), Leader: reps[0]}
	}
	return out, nil
}

func sameMembers(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// PreferredLeaderCheck says whether partition p can move to its preferred
// replica: nil when it can, else the error an ElectLeaders request
// reports for it (the preferred replica leads already, or cannot lead).
func PreferredLeaderCheck(s *State, p PartitionInfo) *Error {
	switch {
	case len(p.Replicas) == 0:
		return errorf(CodePreferredLeaderNotAvailable, "the partition has no replicas")
	case p.Leader == p.Replicas[0]:
		return errorf(CodeElectionNotNeeded, "broker %d, the preferred replica, leads already", p.Replicas[0])
	case p.Adopted != nil:
		return errorf(CodePreferredLeaderNotAvailable, "the partition is being adopted from what the brokers hold")
	case !s.Live(p.Replicas[0]):
		return errorf(CodePreferredLeaderNotAvailable, "broker %d, the preferred replica, is not live", p.Replicas[0])
	case !slices.Contains(p.ISR, p.Replicas[0]):
		return errorf(CodePreferredLeaderNotAvailable, "broker %d, the preferred replica, is not in the ISR %v", p.Replicas[0], p.ISR)
	case slices.Contains(p.Offline, p.Replicas[0]):
		return errorf(CodePreferredLeaderNotAvailable, "broker %d, the preferred replica, holds a damaged copy", p.Replicas[0])
	}
	return nil
}

func applyElectPreferred(s *State, c *ElectPreferred) *State {
	n := s.clone()
	moved := map[string][]PartitionInfo{}
	for _, ref := range c.Partitions {
		t := n.Topics[ref.Name]
		if t == nil || t.ID != ref.ID || ref.Partition < 0 || int(ref.Partition) >= len(t.Partitions) {
			continue
		}
		parts := moved[t.Name]
		if parts == nil {
			parts = slices.Clone(t.Partitions)
		}
		p := parts[ref.Partition]
		if PreferredLeaderCheck(n, p) != nil {
			continue
		}
		p.Leader = p.Replicas[0]
		p.LeaderEpoch++
		parts[ref.Partition] = p
		moved[t.Name] = parts
	}
	for name, parts := range moved {
		n.Topics[name] = n.Topics[name].withPartitions(parts)
	}
	return n
}
