package broker

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v0-10
//
// Behavior:
// * Returns the committed offsets (durable: a commit is applied only after
//   its fsync). Partitions without a commit, and unknown groups, get offset
//   -1 and no error, as Kafka.
// * Null topics (v2+) return every committed partition of the group.
// * v8+ fetch several groups in one request; v10 names topics by ID
//   (committed partitions of deleted topics are left out).
//
// Deviations:
// * RequireStable (v7+) never waits: there are no transactional commits.
// * MemberID and MemberEpoch (v9+, KIP-848) are checked only against
//   consumer-protocol groups: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH.

func handleOffsetFetch(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetFetchRequest)
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version < 8 {
		var topics []kmsg.OffsetFetchRequestGroupTopic
		if r.Topics != nil || r.Version < 2 {
			topics = make([]kmsg.OffsetFetchRequestGroupTopic, 0, len(r.Topics))
			for _, t := range r.Topics {
				gt := kmsg.NewOffsetFetchRequestGroupTopic()
				gt.Topic, gt.Partitions = t.Topic, t.Partitions
				topics = append(topics, gt)
			}
		}
		rg := c.b.groups.fetchOffsets(r.Group, topics, r.Version)
		resp.ErrorCode = rg.ErrorCode
		for _, t := range rg.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return now(resp)
	}
	for _, g := range r.Groups {
		if r.Version >= 9 && g.MemberID != nil && g.MemberEpoch >= 0 {
			if err := c.b.groups.checkFetchMember(g.Group, *g.MemberID, g.MemberEpoch); err != nil {
				rg := kmsg.NewOffsetFetchResponseGroup()
				rg.Group, rg.ErrorCode = g.Group, err.Code
				resp.Groups = append(resp.Groups, rg)
				continue
			}
		}
		resp.Groups = append(resp.Groups, c.b.groups.fetchOffsets(g.Group, g.Topics, r.Version))
	}
	return now(resp)
}

// fetchOffsets answers one group; topics nil means every committed
// partition.
func (c *coordinator) fetchOffsets(name string, topics []kmsg.OffsetFetchRequestGroupTopic, version int16) kmsg.OffsetFetchResponseGroup {
	out := kmsg.NewOffsetFetchResponseGroup()
	out.Group = name
	if code := c.unavailable(name); code != nil {
		out.ErrorCode = code.Code
		return out
	}
	byID := version >= 10
	g := c.group(name, false)
	snap := map[topicPart]committedOffset{}
	if g != nil {
		g.mu.Lock()
		if topics == nil {
			for tp, o := range g.offsets {
				snap[tp] = o
			}
		} else {
			for _, t := range topics {
				topicName := t.Topic
				if byID {
					if tt := c.b.lookupTopicID(t.TopicID); tt != nil {
						topicName = tt.name
					}
				}
				for _, p := range t.Partitions {
					if o, ok := g.offsets[topicPart{topicName, p}]; ok {
						snap[topicPart{topicName, p}] = o
					}
				}
			}
		}
		g.mu.Unlock()
	}
	part := func(p int32, o committedOffset, ok bool) kmsg.OffsetFetchResponseGroupTopicPartition {
		rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
		md := ""
		if ok {
			rp.Offset, rp.LeaderEpoch, md = o.offset, o.leaderEpoch, o.metadata
		}
		rp.Metadata = &md
		return rp
	}
	if topics != nil {
		for _, t := range topics {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			topicName := t.Topic
			if byID {
				if tt := c.b.lookupTopicID(t.TopicID); tt != nil {
					topicName = tt.name
				}
			}
			for _, p := range t.Partitions {
				o, ok := snap[topicPart{topicName, p}]
				rt.Partitions = append(rt.Partitions, part(p, o, ok))
			}
			out.Topics = append(out.Topics, rt)
		}
		return out
	}
	byTopic := map[string][]int32{}
	for tp := range snap {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	names := make([]string, 0, len(byTopic))
	for n := range byTopic {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = n
		if byID {
			t := c.b.lookupTopic(n)
			if t == nil {
				continue
			}
			rt.TopicID = t.id
		}
		ps := byTopic[n]
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		for _, p := range ps {
			rt.Partitions = append(rt.Partitions, part(p, snap[topicPart{n, p}], true))
		}
		out.Topics = append(out.Topics, rt)
	}
	return out
}

// checkFetchMember validates an OffsetFetch's member of a consumer-protocol
// group: it must be in the group, at its current or previous epoch.
func (c *coordinator) checkFetchMember(name, memberID string, epoch int32) *kerr.Error {
	g := c.group(name, false)
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cg == nil || len(g.cg.members) == 0 {
		return nil
	}
	err := g.validateConsumerMemberLocked(memberID, epoch)
	if err == kerr.FencedMemberEpoch {
		err = kerr.StaleMemberEpoch
	}
	return err
}
