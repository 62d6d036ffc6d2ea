package broker

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// AlterPartitionAssignments: v0-1
//
// Behavior:
// * KIP-455 reassignment through the controller (replication/reassign.go):
//   the new replicas fetch from the leader and join the ISR once caught
//   up, then the reassignment completes and the leaving replicas leave; a
//   leaving leader hands over to the first target replica in the ISR.
//   Null replicas cancel a reassignment in progress
//   (NO_REASSIGNMENT_IN_PROGRESS when there is none). Unknown brokers or
//   repeated ones get INVALID_REPLICA_ASSIGNMENT; v1's
//   AllowReplicationFactorChange false refuses a target of another size
//   with INVALID_REPLICATION_FACTOR.
// * The response comes once the controller has recorded each change (the
//   move itself goes on in the background; ListPartitionReassignments
//   shows it).
// * ACLs: ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED for the
//   whole request.
//
// Deviations:
// * A standalone broker accepts only itself as the target.
// * The data a removed replica held stays on its broker's disk.

func handleAlterPartitionAssignments(c *conn, req *request) reply {
	r := req.Request.(*kmsg.AlterPartitionAssignmentsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.AlterPartitionAssignmentsResponse)
	resp.AllowReplicationFactorChange = r.AllowReplicationFactorChange
	if !c.allowedCluster(kmsg.ACLOperationAlter) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	for _, rt := range r.Topics {
		st := kmsg.NewAlterPartitionAssignmentsResponseTopic()
		st.Topic = rt.Topic
		t := b.lookupTopic(rt.Topic)
		for _, rp := range rt.Partitions {
			sp := kmsg.NewAlterPartitionAssignmentsResponseTopicPartition()
			sp.Partition = rp.Partition
			if err := b.reassign(t, rt.Topic, rp.Partition, rp.Replicas, r.Version < 1 || r.AllowReplicationFactorChange); err != nil {
				sp.ErrorCode, sp.ErrorMessage = kafkaErr(err).Code, errMessage(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}

// reassign starts, replaces or (target nil) cancels the reassignment of
// partition p of t.
func (b *Broker) reassign(t *topic, name string, p int32, target []int32, allowRFChange bool) error {
	if t == nil || b.partitionOf(t, p) == nil {
		return kerrf(kerr.UnknownTopicOrPartition, "topic %q has no partition %d", name, p)
	}
	if b.ctl == nil {
		if target != nil && !slices.Equal(target, []int32{b.cfg.NodeID}) {
			return kerrf(kerr.InvalidReplicaAssignment, "a standalone broker holds every partition itself (broker %d)", b.cfg.NodeID)
		}
		if target == nil {
			return kerrf(kerr.NoReassignmentInProgress, "a standalone broker has no reassignments")
		}
		return nil
	}
	if ps, ok := b.partitionState(t, p); ok && target != nil && !allowRFChange && len(target) != len(ps.Replicas)-len(ps.Adding) {
		return kerrf(kerr.InvalidReplicationFactor, "the target has %d replicas; the partition has %d and the request does not allow a change",
			len(target), len(ps.Replicas)-len(ps.Adding))
	}
	_, err := b.propose(context.Background(), &replication.Request{Reassign: &replication.Reassign{
		TopicRef: replication.TopicRef{Name: t.name, ID: t.id}, Partition: p, Target: target,
	}})
	if err == nil {
		b.log.Info("partition reassignment", "topic", t.name, "partition", p, "target", target)
	}
	return err
}
