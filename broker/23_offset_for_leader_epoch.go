package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetForLeaderEpoch: v0-4
//
// Behavior:
// * Answers, for a leader epoch, the largest epoch at or below it that this
//   leader's log holds and the offset where the next epoch starts (the log
//   end for the current one): where a follower, or a consumer checking for
//   truncation, must cut its log (KIP-101, KIP-320). Epochs come from the
//   partition's leader-epoch cache (replica_epochs.go), checkpointed beside
//   its segments.
// * Only the partition's leader answers (NOT_LEADER_OR_FOLLOWER otherwise);
//   CurrentLeaderEpoch (v2+) is checked as Fetch checks it.
// * A standalone broker's log is one epoch, 0: any epoch ≥ 0 ends at the
//   log end.
// * An epoch older than every cached epoch gets epoch -1 and offset -1
//   (Kafka's UNDEFINED_EPOCH_OFFSET).
// * ACLs: CLUSTER_ACTION on the cluster (followers), or else DESCRIBE on
//   each topic (consumers, KIP-320), whatever ReplicaID says; otherwise
//   TOPIC_AUTHORIZATION_FAILED for the topic's partitions.

func handleOffsetForLeaderEpoch(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetForLeaderEpochRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	clusterAction := c.allowedCluster(kmsg.ACLOperationClusterAction)
	for _, rt := range r.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		denied := !clusterAction && !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic)
		var t *topic
		if !denied {
			t = b.lookupTopic(rt.Topic)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, -1, -1
			cur := rp.CurrentLeaderEpoch
			if r.Version < 2 {
				cur = -1
			}
			p := b.partitionOf(t, rp.Partition)
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if _, lerr := b.leaderCheck(t, rp.Partition, cur); lerr != nil {
					sp.ErrorCode = lerr.Code
					break
				}
				sp.LeaderEpoch, sp.EndOffset = p.epochEnd(rp.LeaderEpoch)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
