package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeProducers: v0
//
// Behavior:
// * Lists the producers a partition's leader remembers (idempotent and
//   transactional): producer ID and epoch, last sequence (-1 when only a
//   coordinator wrote for it), last write time, and the first offset of
//   its open transaction on the partition (-1 without one): what an
//   operator needs to find the transaction holding back the last stable
//   offset.
// * A partition this broker does not lead gets NOT_LEADER_OR_FOLLOWER.
// * ACLs: READ on each topic, else TOPIC_AUTHORIZATION_FAILED for its
//   partitions.
//
// Deviations:
// * CoordinatorEpoch is -1: partitions do not keep the epoch of the
//   coordinator that last wrote a marker.

func handleDescribeProducers(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeProducersRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		denied := !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic)
		var t *topic
		if !denied {
			t = b.lookupTopic(rt.Topic)
		}
		for _, idx := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = idx
			p := b.partitionOf(t, idx)
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if _, lerr := b.leaderCheck(t, idx, -1); lerr != nil {
					sp.ErrorCode = lerr.Code
				} else {
					sp.ActiveProducers = p.describeProducers()
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}

// describeProducers lists the producers p remembers.
func (p *partition) describeProducers() []kmsg.DescribeProducersResponseTopicPartitionActiveProducer {
	p.appendMu.Lock()
	defer p.appendMu.Unlock()
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]kmsg.DescribeProducersResponseTopicPartitionActiveProducer, 0, len(p.producers))
	for id, ps := range p.producers {
		ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
		ap.ProducerID, ap.ProducerEpoch, ap.LastTimestamp = id, int32(ps.epoch), ps.lastWrite
		ap.LastSequence, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = -1, -1, -1
		if ps.n > 0 {
			ap.LastSequence = ps.recent[(ps.head-1+producerWindow)%producerWindow].last
		}
		if first, ok := p.txns.open[id]; ok {
			ap.CurrentTxnStartOffset = first
		}
		out = append(out, ap)
	}
	return out
}
