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

	type want struct {
		tp topicPart
		sp *kmsg.OffsetDeleteResponseTopicPartition
	}
	var wants []want
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
			if b.partitionOf(t, rp.Partition) == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			wants = append(wants, want{topicPart{rt.Topic, rp.Partition}, sp})
		}
	}

	// The subscription check and the enqueue are one step (the check of
	// appendOffsets), so a member cannot subscribe in between.
	var refused *kerr.Error
	var slots []*kmsg.OffsetDeleteResponseTopicPartition
	check := func() (*group, []offsetEntry, error) {
		g := b.groups.lockGroup(r.Group, false)
		if g == nil {
			refused = kerr.GroupIDNotFound
			if code := b.groups.unavailable(r.Group); code != nil {
				refused = code
			}
			return nil, nil, refused
		}
		defer g.mu.Unlock()
		subscribed := func(string) bool { return false }
		switch {
		case len(g.members) > 0:
			if g.protocolType != "consumer" {
				refused = kerr.NonEmptyGroup
				return nil, nil, refused
			}
			topics := map[string]bool{}
			for _, m := range g.members {
				var md kmsg.ConsumerMemberMetadata
				if md.ReadFrom(protocolMetadata(m, g.protocol)) == nil {
					for _, t := range md.Topics {
						topics[t] = true
					}
				}
			}
			subscribed = func(t string) bool { return topics[t] }
		case g.cg != nil && len(g.cg.members) > 0:
			cg := g.cg
			subscribed = func(t string) bool {
				for _, m := range cg.members {
					if m.subscribes(t) {
						return true
					}
				}
				return false
			}
		}
		var entries []offsetEntry
		for _, w := range wants {
			if subscribed(w.tp.topic) {
				w.sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
				continue
			}
			entries = append(entries, offsetEntry{tp: w.tp, deleted: true})
			slots = append(slots, w.sp)
		}
		g.beginInflightLocked(entries)
		return g, entries, nil
	}
	ctx, cancel := b.ctxUntilClose(c.ctx)
	w, _, err := b.groups.appendOffsets(ctx, r.Group, check)
	if err != nil {
		cancel()
		if refused != nil {
			resp.Topics = nil
			resp.ErrorCode = refused.Code
			return now(resp)
		}
		for _, sp := range slots {
			sp.ErrorCode = commitWriteErr(err).Code
		}
		return now(resp)
	}
	return func() kmsg.Response {
		defer cancel()
		if err := w.wait(ctx); err != nil {
			code := commitWriteErr(err)
			if ctx.Err() != nil {
				code = kerr.CoordinatorNotAvailable
			}
			for _, sp := range slots {
				sp.ErrorCode = code.Code
			}
		}
		return resp
	}
}
