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

	// The subscription check and the enqueue are one step under the
	// group's append lock, so a member cannot subscribe in between.
	al := b.groups.appendLock(r.Group)
	al.Lock()
	g := b.groups.lockGroup(r.Group, false)
	if g == nil {
		al.Unlock()
		resp.Topics = nil
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return now(resp)
	}
	subscribed := func(string) bool { return false }
	switch {
	case len(g.members) > 0:
		if g.protocolType != "consumer" {
			g.mu.Unlock()
			al.Unlock()
			resp.Topics = nil
			resp.ErrorCode = kerr.NonEmptyGroup.Code
			return now(resp)
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
	var slots []*kmsg.OffsetDeleteResponseTopicPartition
	for _, w := range wants {
		if subscribed(w.tp.topic) {
			w.sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			continue
		}
		entries = append(entries, offsetEntry{tp: w.tp, deleted: true})
		slots = append(slots, w.sp)
	}
	g.beginInflightLocked(entries)
	g.mu.Unlock()
	if len(entries) == 0 {
		al.Unlock()
		return now(resp)
	}
	ctx, cancel := b.ctxUntilClose(c.ctx)
	res, base, err := b.groups.offsets.write(ctx, r.Group, entries)
	al.Unlock()
	if err != nil {
		cancel()
		b.groups.finishOffsets(g, entries, 0, false)
		for _, sp := range slots {
			sp.ErrorCode = commitWriteErr(err).Code
		}
		return now(resp)
	}
	applied := make(chan struct{})
	go func() {
		<-res.done
		b.groups.finishOffsets(g, entries, base, res.err == nil)
		close(applied)
	}()
	return func() kmsg.Response {
		defer cancel()
		select {
		case <-applied:
		case <-ctx.Done():
			for _, sp := range slots {
				sp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			}
			return resp
		}
		if res.err != nil {
			for _, sp := range slots {
				sp.ErrorCode = commitWriteErr(res.err).Code
			}
		}
		return resp
	}
}
