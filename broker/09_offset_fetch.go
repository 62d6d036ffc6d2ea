package broker

import (
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
// * ACLs: DESCRIBE on each group (else GROUP_AUTHORIZATION_FAILED for it:
//   at the top level before v8, and for every partition asked before v2)
//   and DESCRIBE on each topic: a named topic denied gets
//   TOPIC_AUTHORIZATION_FAILED for its partitions; fetching every topic
//   leaves the denied ones out.
//
// Deviations:
// * RequireStable (v7+) never waits: there are no transactional commits.
// * MemberID and MemberEpoch (v9+, KIP-848) are checked only against
//   consumer-protocol groups: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH.

func handleOffsetFetch(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetFetchRequest)
	if c.b.cfg.Authorizer == nil {
		return now(c.b.groups.OffsetFetch(r))
	}
	if r.Version < 8 {
		if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, r.Group) {
			return now(offsetFetchGroupDenied(r))
		}
		resp := c.b.groups.OffsetFetch(r)
		all := r.Topics == nil && r.Version >= 2
		kept := resp.Topics[:0]
		for _, rt := range resp.Topics {
			if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic) {
				if all {
					continue
				}
				for j := range rt.Partitions {
					rp := &rt.Partitions[j]
					rp.Offset, rp.LeaderEpoch, rp.Metadata = -1, -1, new(string)
					rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				}
			}
			kept = append(kept, rt)
		}
		resp.Topics = kept
		return now(resp)
	}

	// v8+: the coordinator answers the allowed groups; the others are
	// answered here, in request order.
	allowed := *r
	allowed.Groups = nil
	denied := make([]bool, len(r.Groups))
	for i, g := range r.Groups {
		if denied[i] = !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g.Group); !denied[i] {
			allowed.Groups = append(allowed.Groups, g)
		}
	}
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	var answered []kmsg.OffsetFetchResponseGroup
	if len(allowed.Groups) > 0 {
		answered = c.b.groups.OffsetFetch(&allowed).Groups
	}
	for i, g := range r.Groups {
		if denied[i] {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		if len(answered) == 0 {
			continue // never: the coordinator answers each group it is asked, in order
		}
		rg := answered[0]
		answered = answered[1:]
		if rg.ErrorCode == 0 {
			rg.Topics = c.offsetFetchTopicsAllowed(rg.Topics, g.Topics == nil, r.Version >= 10)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return now(resp)
}

// offsetFetchTopicsAllowed applies DESCRIBE on each topic to one group's
// answer: denied topics are left out when the request fetched every topic
// (all), and get TOPIC_AUTHORIZATION_FAILED for their partitions
// otherwise.
func (c *conn) offsetFetchTopicsAllowed(topics []kmsg.OffsetFetchResponseGroupTopic, all, byID bool) []kmsg.OffsetFetchResponseGroupTopic {
	kept := topics[:0]
	for _, rt := range topics {
		name := rt.Topic
		if byID {
			if t := c.b.lookupTopicID(rt.TopicID); t != nil {
				name = t.name
			}
		}
		if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
			if all {
				continue
			}
			for j := range rt.Partitions {
				rp := &rt.Partitions[j]
				rp.Offset, rp.LeaderEpoch, rp.Metadata = -1, -1, new(string)
				rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			}
		}
		kept = append(kept, rt)
	}
	return kept
}

// offsetFetchGroupDenied answers a v0-7 OffsetFetch whose group the
// principal may not describe: the top-level error (v2+), and before v2,
// which has none, every partition asked.
func offsetFetchGroupDenied(r *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
	if r.Version >= 2 {
		return resp
	}
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.ErrorCode = p, -1, kerr.GroupAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
