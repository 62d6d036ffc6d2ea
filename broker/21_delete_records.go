package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteRecords: v0-2
//
// Behavior:
// * Moves a partition's log start offset forward to the requested offset
//   (-1 means the high watermark) and answers with the new low watermark.
//   The log start is checkpointed (fsynced) before the response, so it
//   survives a restart; fetches below it get OFFSET_OUT_OF_RANGE, and
//   ListOffsets earliest returns it.
// * An offset beyond the high watermark, or below -1, gets
//   OFFSET_OUT_OF_RANGE. An offset at or below the current log start
//   changes nothing and returns the current log start.
// * Whole sealed segments below the log start are deleted by the next
//   retention pass, which this request wakes; the active segment's bytes go
//   with the WAL once sealed.
// * A topic whose cleanup.policy is compact only gets POLICY_VIOLATION, as
//   in Kafka.
// * __consumer_offsets gets INVALID_TOPIC_EXCEPTION: it belongs to the
//   group coordinator.
// * ACLs: DELETE on each topic, checked before it is looked up, else
//   TOPIC_AUTHORIZATION_FAILED for its partitions.

func handleDeleteRecords(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DeleteRecordsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DeleteRecordsResponse)
	moved := false
	for _, rt := range r.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		denied := !c.allowed(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeTopic, rt.Topic)
		var t *topic
		if !denied {
			t = b.lookupTopic(rt.Topic)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			p := b.partitionOf(t, rp.Partition)
			switch {
			case denied:
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			case p == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case isInternalTopic(t.name):
				sp.ErrorCode = kerr.InvalidTopicException.Code
			case b.ctl != nil && !b.leads(t, rp.Partition):
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
			default:
				if del, _ := b.cleanupPolicy(t); !del {
					sp.ErrorCode = kerr.PolicyViolation.Code
					break
				}
				var err error
				sp.LowWatermark, err = b.deleteRecords(p, rp.Offset)
				if err != nil {
					sp.ErrorCode = kafkaErr(err).Code
				} else {
					moved = true
				}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if moved {
		select {
		case b.cleanKick <- struct{}{}:
		default:
		}
	}
	return now(resp)
}

// deleteRecords advances p's log start to offset and returns the new log
// start.
func (b *Broker) deleteRecords(p *partition, offset int64) (int64, error) {
	p.mu.RLock()
	hw, deleted, failed := p.visibleEndLocked(), p.deleted, p.failed
	p.mu.RUnlock()
	switch {
	case deleted:
		return -1, kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted", p.topic.name)
	case failed != nil:
		return -1, kerrf(kerr.KafkaStorageError, "%v", failed)
	case offset == -1:
		offset = hw
	case offset < -1 || offset > hw:
		return -1, kerrf(kerr.OffsetOutOfRange, "offset %d is outside [-1, %d]", offset, hw)
	}
	if err := b.advanceLogStart(p, offset); err != nil {
		b.log.Error("persist log start failed", "topic", p.topic.name, "partition", p.index, "err", err)
		return -1, kerrf(kerr.KafkaStorageError, "persist log start: %v", err)
	}
	logStart, _ := p.offsets()
	return logStart, nil
}
