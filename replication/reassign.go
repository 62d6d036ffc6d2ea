package replication

import "slices"

// Reassignment (Kafka's KIP-455): a partition's replicas move to a target
// list. While it runs, Replicas holds the target followed by the replicas
// leaving (RemovingReplicas); the ones joining (AddingReplicas) fetch from
// the leader like any follower, and the leader adds them to the ISR once
// they have caught up. When every target replica is in the ISR the
// reassignment completes: Replicas becomes the target, the leaving
// replicas leave the ISR, and if the leader is one of them the first
// target replica in the ISR leads at a new epoch. A reassignment replaces
// one in progress (computed from the replicas before either began); a nil
// target cancels it.

// Reassign starts, replaces or (Target nil) cancels a partition's
// reassignment.
type Reassign struct {
	TopicRef
	Partition int32   `json:"partition"`
	Target    []int32 `json:"target"`
}

// Kafka error codes of reassignments.
const (
	CodeInvalidReplicaAssignment int16 = 39
	CodeNoReassignmentInProgress int16 = 85
)

func applyReassign(s *State, c *Reassign) (*State, Result) {
	t, p, err := s.partition(c.TopicRef, c.Partition)
	if err != nil {
		return s, Result{Err: err}
	}
	orig := without(p.Replicas, p.Adding)
	np := p
	if c.Target == nil {
		if len(p.Adding) == 0 && len(p.Removing) == 0 {
			return s, Result{Err: errorf(CodeNoReassignmentInProgress, "partition %s/%d has no reassignment in progress", t.Name, c.Partition)}
		}
		np.Replicas, np.ISR = orig, without(p.ISR, p.Adding)
		np.Adding, np.Removing = nil, nil
		if len(np.ISR) == 0 {
			return s, Result{Err: errorf(CodeInvalidReplicaAssignment, "cannot cancel the reassignment of %s/%d: none of its original replicas is in sync", t.Name, c.Partition)}
		}
		if !slices.Contains(np.ISR, np.Leader) {
			np.Leader = electLeader(s, np)
			np.LeaderEpoch++
		}
	} else {
		if len(c.Target) == 0 {
			return s, Result{Err: errorf(CodeInvalidReplicaAssignment, "a reassignment needs at least one replica")}
		}
		for i, r := range c.Target {
			if s.Brokers[r] == nil {
				return s, Result{Err: errorf(CodeInvalidReplicaAssignment, "broker %d is not registered", r)}
			}
			if slices.Contains(c.Target[:i], r) {
				return s, Result{Err: errorf(CodeInvalidReplicaAssignment, "broker %d appears twice", r)}
			}
		}
		removing := without(orig, c.Target)
		np.Replicas = append(slices.Clone(c.Target), removing...)
		np.Adding, np.Removing = without(c.Target, orig), removing
		np = finishReassign(s, np)
	}
	return s.withPartition(t, c.Partition, np), Result{}
}

// finishReassign completes p's reassignment once every target replica is
// in its ISR.
func finishReassign(s *State, p PartitionInfo) PartitionInfo {
	if len(p.Adding) == 0 && len(p.Removing) == 0 {
		return p
	}
	target := without(p.Replicas, p.Removing)
	for _, r := range target {
		if !slices.Contains(p.ISR, r) {
			return p
		}
	}
	p.Replicas = target
	p.ISR = without(p.ISR, p.Removing)
	p.Offline = without(p.Offline, p.Removing)
	p.Empty = without(p.Empty, p.Removing)
	p.Adding, p.Removing = nil, nil
	if !slices.Contains(target, p.Leader) {
		p.Leader = electLeader(s, p)
		p.LeaderEpoch++
		p.Adopted = nil
	}
	return p
}

// without returns a's members that are not in b, in a's order.
func without(a, b []int32) []int32 {
	var out []int32
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
