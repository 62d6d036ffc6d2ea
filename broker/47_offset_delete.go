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
// * ACLs: DELETE on the group (else GROUP_AUTHORIZATION_FAILED at the top
//   level) and READ on each topic (else TOPIC_AUTHORIZATION_FAILED for its
//   partitions; the others are deleted).

func handleOffsetDelete(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetDeleteRequest)
	if !c.allowed(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup, r.Group) {
		return now(groupErrorResponse(r, kerr.GroupAuthorizationFailed))
	}
	denied := c.deniedTopics(kmsg.ACLOperationRead, len(r.Topics), func(i int) (string, [16]byte) {
		return r.Topics[i].Topic, [16]byte{}
	}, false)
	if denied == nil {
		resp, wait := c.b.groups.OffsetDelete(r)
		return waitThen(resp, wait)
	}
	// The coordinator sees only the allowed topics (and still checks the
	// group when there are none).
	allowed := *r
	allowed.Topics = without(r.Topics, denied)
	resp, wait := c.b.groups.OffsetDelete(&allowed)
	if resp.ErrorCode != 0 {
		return waitThen(resp, wait)
	}
	for i, rt := range r.Topics {
		if !denied[i] {
			continue
		}
		st := kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, kerr.TopicAuthorizationFailed.Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return waitThen(resp, wait)
}

// waitThen answers resp now, or after wait when there is one.
func waitThen(resp kmsg.Response, wait func()) reply {
	if wait == nil {
		return now(resp)
	}
	return func() kmsg.Response {
		wait()
		return resp
	}
}
