package broker

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// ElectLeaders: v0-2
//
// Behavior:
// * Preferred (type 0, and every v0 request): each named partition moves to
//   its preferred replica, the first of its replicas, when that replica is
//   live, in the ISR and not damaged; ELECTION_NOT_NEEDED when it leads
//   already, PREFERRED_LEADER_NOT_AVAILABLE (with the reason) when it
//   cannot lead. Partitions move in one controller command.
// * Unclean (type 1): a partition without a live leader gets one, from the
//   ISR if a member is live, else the first live replica outside it (what
//   it lacks is lost); ELECTION_NOT_NEEDED when a live leader exists,
//   ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is live.
// * Null topics elect over every partition, and the answer lists only the
//   partitions an election was tried for (not those needing none), as
//   Kafka's.
// * The answer comes once this broker has applied the result; each
//   partition's code says where it ended, not only what was asked.
// * ACLs: ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED (for
//   every partition in v0, which has no top-level code).
//
// Deviations:
// * A standalone broker leads every partition: ELECTION_NOT_NEEDED.

func handleElectLeaders(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ElectLeadersRequest)
	resp := r.ResponseKind().(*kmsg.ElectLeadersResponse)
	unclean := r.Version >= 1 && r.ElectionType == 1
	switch {
	case !c.allowedCluster(kmsg.ACLOperationAlter):
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		if r.Version == 0 {
			resp.Topics = electAnswer(r.Topics, kerr.ClusterAuthorizationFailed)
		}
		return now(resp)
	case r.Version >= 1 && r.ElectionType != 0 && r.ElectionType != 1:
		resp.ErrorCode = kerr.InvalidRequest.Code
		return now(resp)
	}
	resp.Topics = c.b.electLeaders(r.Topics, unclean)
	return now(resp)
}

// electAnswer answers every named partition with code.
func electAnswer(topics []kmsg.ElectLeadersRequestTopic, code *kerr.Error) []kmsg.ElectLeadersResponseTopic {
	var out []kmsg.ElectLeadersResponseTopic
	for _, rt := range topics {
		st := kmsg.NewElectLeadersResponseTopic()
		st.Topic = rt.Topic
		for _, p := range rt.Partitions {
			sp := kmsg.NewElectLeadersResponseTopicPartition()
			sp.Partition, sp.ErrorCode = p, code.Code
			st.Partitions = append(st.Partitions, sp)
		}
		out = append(out, st)
	}
	return out
}

// electTarget is one partition of an ElectLeaders request.
type electTarget struct {
	topic     string
	partition int32
	err       error // the partition's answer before any election
}

// electLeaders runs a preferred or unclean election over the named
// partitions (all when topics is nil) and answers each.
func (b *Broker) electLeaders(topics []kmsg.ElectLeadersRequestTopic, unclean bool) []kmsg.ElectLeadersResponseTopic {
	all := topics == nil
	var targets []electTarget
	if all {
		for _, t := range b.snapshotTopics() {
			b.mu.RLock()
			n := len(t.partitions)
			b.mu.RUnlock()
			for i := range n {
				targets = append(targets, electTarget{topic: t.name, partition: int32(i)})
			}
		}
	} else {
		for _, rt := range topics {
			for _, p := range rt.Partitions {
				targets = append(targets, electTarget{topic: rt.Topic, partition: p})
			}
		}
	}
	var st *replication.State
	if b.ctl != nil {
		st = b.ctl.State()
	}
	check := func(e *electTarget) (replication.TopicRef, replication.PartitionInfo, bool) {
		t := b.lookupTopic(e.topic)
		if t == nil || b.partitionOf(t, e.partition) == nil {
			e.err = kerrf(kerr.UnknownTopicOrPartition, "topic %q has no partition %d", e.topic, e.partition)
			return replication.TopicRef{}, replication.PartitionInfo{}, false
		}
		if st == nil {
			e.err = kerrf(kerr.ElectionNotNeeded, "a standalone broker leads every partition")
			return replication.TopicRef{}, replication.PartitionInfo{}, false
		}
		ps, ok := b.partitionState(t, e.partition)
		if !ok {
			e.err = kerrf(kerr.UnknownTopicOrPartition, "the controller has no partition %d of topic %q", e.partition, e.topic)
			return replication.TopicRef{}, replication.PartitionInfo{}, false
		}
		ref := replication.TopicRef{Name: t.name, ID: t.id}
		if unclean {
			switch {
			case ps.Leader >= 0 && st.Live(ps.Leader):
				e.err = kerrf(kerr.ElectionNotNeeded, "broker %d leads it", ps.Leader)
			case replication.UncleanCandidate(st, ps) < 0:
				e.err = kerrf(kerr.EligibleLeadersNotAvailable, "no replica of %v is live", ps.Replicas)
			}
		} else if err := replication.PreferredLeaderCheck(st, ps); err != nil {
			e.err = kerrf(kerr.ErrorForCode(err.Code).(*kerr.Error), "%s", err.Message)
		}
		return ref, ps, e.err == nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var preferred []replication.PartitionRef
	for i := range targets {
		e := &targets[i]
		ref, ps, ok := check(e)
		if !ok {
			continue
		}
		if !unclean {
			preferred = append(preferred, replication.PartitionRef{TopicRef: ref, Partition: e.partition})
			continue
		}
		// Unclean: one partition at a time, each checked by the controller
		// against the state it applies to.
		leader := replication.UncleanCandidate(st, ps)
		for _, r := range ps.ISR {
			if st.Live(r) {
				leader = r // a clean choice after all
				break
			}
		}
		_, err := b.propose(ctx, &replication.Request{ElectLeader: &replication.ElectLeader{
			TopicRef: ref, Partition: e.partition, Leader: leader, Unclean: !slices.Contains(ps.ISR, leader),
		}})
		if err != nil {
			e.err = err
		} else {
			b.log.Warn("leader elected by request", "topic", ref.Name, "partition", e.partition, "leader", leader,
				"unclean", !slices.Contains(ps.ISR, leader), "isr_was", ps.ISR)
		}
	}
	if len(preferred) > 0 {
		if _, err := b.propose(ctx, &replication.Request{ElectPreferred: &replication.ElectPreferred{Partitions: preferred}}); err != nil {
			for i := range targets {
				if targets[i].err == nil {
					targets[i].err = err
				}
			}
		} else {
			// What the command did: a partition whose state changed
			// since the check answers as it stands now.
			st = b.ctl.State()
			for i := range targets {
				if e := &targets[i]; e.err == nil {
					if t := b.lookupTopic(e.topic); t != nil {
						if ps, ok := b.partitionState(t, e.partition); ok && ps.Leader != ps.Replicas[0] {
							e.err = kerrf(kerr.PreferredLeaderNotAvailable, "broker %d, the preferred replica, could not take over", ps.Replicas[0])
						}
					}
				}
			}
			b.log.Info("preferred leader election by request", "partitions", len(preferred))
		}
	}

	var out []kmsg.ElectLeadersResponseTopic
	index := map[string]int{}
	for _, e := range targets {
		if all && e.err != nil && kafkaErr(e.err) == kerr.ElectionNotNeeded {
			continue
		}
		i, ok := index[e.topic]
		if !ok {
			st := kmsg.NewElectLeadersResponseTopic()
			st.Topic = e.topic
			out = append(out, st)
			i = len(out) - 1
			index[e.topic] = i
		}
		sp := kmsg.NewElectLeadersResponseTopicPartition()
		sp.Partition = e.partition
		if e.err != nil {
			sp.ErrorCode, sp.ErrorMessage = kafkaErr(e.err).Code, errMessage(e.err)
		}
		out[i].Partitions = append(out[i].Partitions, sp)
	}
	return out
}
