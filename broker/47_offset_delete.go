package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete: v0
//
// Behavior:
// * Tombstones the named partitions' committed offsets and answers after
//   the fsync. GROUP_ID_NOT_FOUND for an unknown group; a partition of a
//   topic that a member of a "consumer" group subscribes to gets
//   GROUP_SUBSCRIBED_TO_TOPIC; a non-empty group of another protocol type
//   gets NON_EMPTY_GROUP; unknown partitions UNKNOWN_TOPIC_OR_PARTITION.

func handleOffsetDelete(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetDeleteRequest)
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	b := c.b
	g := b.groups.group(r.Group, false)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return now(resp)
	}
	g.mu.Lock()
	if g.state == groupDead {
		g.mu.Unlock()
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return now(resp)
	}
	subscribed := map[string]bool{}
	if len(g.members) > 0 {
		if g.protocolType != "consumer" {
			g.mu.Unlock()
			resp.ErrorCode = kerr.NonEmptyGroup.Code
			return now(resp)
		}
		for _, m := range g.members {
			var md kmsg.ConsumerMemberMetadata
			if md.ReadFrom(protocolMetadata(m, g.protocol)) == nil {
				for _, t := range md.Topics {
					subscribed[t] = true
				}
			}
		}
	}
	g.mu.Unlock()

	var entries []offsetEntry
	var slots []*kmsg.OffsetDeleteResponseTopicPartition
	resp.Topics = make([]kmsg.OffsetDeleteResponseTopic, len(r.Topics))
	for i, rt := range r.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		t := b.lookupTopic(rt.Topic)
		st.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			switch {
			case b.partitionOf(t, rp.Partition) == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case subscribed[rt.Topic]:
				sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				entries = append(entries, offsetEntry{tp: topicPart{rt.Topic, rp.Partition}, deleted: true})
				slots = append(slots, sp)
			}
		}
	}
	if len(entries) == 0 {
		return now(resp)
	}
	return func() kmsg.Response {
		ctx, cancel := b.ctxUntilClose(c.ctx)
		defer cancel()
		res, base, err := b.groups.offsets.write(ctx, r.Group, entries)
		if err == nil {
			<-res.done
			err = res.err
		}
		if err != nil {
			for _, sp := range slots {
				sp.ErrorCode = commitWriteErr(err).Code
			}
			return resp
		}
		g.mu.Lock()
		g.applyLocked(entries, base)
		g.mu.Unlock()
		return resp
	}
}
