package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-10
//
// Behavior:
// * Answered only after the commit is durable: the partitions' offsets are
//   one record batch appended to the group's partition of
//   __consumer_offsets through the produce path (concurrent commits share
//   WAL group commits), fsynced, and in a cluster covered by the
//   partition's high watermark (min.insync.replicas). NOT_COORDINATOR when
//   leadership of the partition moves meanwhile; COORDINATOR_NOT_AVAILABLE
//   when the partition has too few in-sync replicas.
// * Generation -1 (and v0) commits into a group with no members, creating
//   it if needed (admin and standalone consumers). Otherwise the member and
//   generation must match: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//   FENCED_INSTANCE_ID (v7+), REBALANCE_IN_PROGRESS while the group is
//   CompletingRebalance. Commits are accepted during PreparingRebalance, as
//   Kafka does, so cooperative consumers can commit what they revoke.
// * Groups of the KIP-848 consumer protocol: Generation is the member
//   epoch. UNKNOWN_MEMBER_ID for a member not in the group (including
//   generation -1 commits while it has members), FENCED_MEMBER_EPOCH for an
//   epoch ahead of the member's, STALE_MEMBER_EPOCH for one older than its
//   previous epoch (the previous one is accepted: a member commits what it
//   revokes before moving to the new epoch, as Kafka 4.3 allows).
// * Unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION (v10:
//   UNKNOWN_TOPIC_ID); metadata over 4096 bytes gets
//   OFFSET_METADATA_TOO_LARGE.
// * ACLs: READ on the group (else every partition gets
//   GROUP_AUTHORIZATION_FAILED) and READ on each topic (else its
//   partitions get TOPIC_AUTHORIZATION_FAILED and the others are
//   committed).
//
// Deviations:
// * RetentionTimeMillis (v2-4) and the v1 per-partition timestamp are
//   ignored: offsets.retention.minutes applies to every commit.

func handleOffsetCommit(c *conn, req *request) reply {
	r := req.Request.(*kmsg.OffsetCommitRequest)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		return now(groupErrorResponse(r, kerr.GroupAuthorizationFailed))
	}
	denied := c.deniedTopics(kmsg.ACLOperationRead, len(r.Topics), func(i int) (string, [16]byte) {
		return r.Topics[i].Topic, r.Topics[i].TopicID
	}, r.Version >= 10)
	if denied == nil {
		resp, wait := c.b.groups.OffsetCommit(r)
		return waitThen(resp, wait)
	}
	// The coordinator sees only the allowed topics.
	allowed := *r
	allowed.Topics = without(r.Topics, denied)
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	var wait func()
	if len(allowed.Topics) > 0 {
		resp, wait = c.b.groups.OffsetCommit(&allowed)
	}
	for i := range r.Topics {
		if denied[i] {
			resp.Topics = append(resp.Topics, offsetCommitTopicError(&r.Topics[i], kerr.TopicAuthorizationFailed))
		}
	}
	return waitThen(resp, wait)
}

// offsetCommitTopicError answers every partition of rt with code.
func offsetCommitTopicError(rt *kmsg.OffsetCommitRequestTopic, code *kerr.Error) kmsg.OffsetCommitResponseTopic {
	st := kmsg.NewOffsetCommitResponseTopic()
	st.Topic, st.TopicID = rt.Topic, rt.TopicID
	for _, rp := range rt.Partitions {
		sp := kmsg.NewOffsetCommitResponseTopicPartition()
		sp.Partition, sp.ErrorCode = rp.Partition, code.Code
		st.Partitions = append(st.Partitions, sp)
	}
	return st
}

// groupErrorResponse answers a request of a single group with code: at the
// top level, or for every partition of an OffsetCommit, which has no
// top-level error code.
func groupErrorResponse(r kmsg.Request, code *kerr.Error) kmsg.Response {
	if r, ok := r.(*kmsg.OffsetCommitRequest); ok {
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for i := range r.Topics {
			resp.Topics = append(resp.Topics, offsetCommitTopicError(&r.Topics[i], code))
		}
		return resp
	}
	return notCoordinatorResponse(r, code) // the same answers
}

// deniedTopics checks op on the n topics of a request, each once, and says
// which are denied; nil when none is (always, without an authorizer).
// topic returns the i-th topic's name and ID; byID resolves the ID, and a
// topic whose ID is unknown is not denied: the handler answers
// UNKNOWN_TOPIC_ID.
func (c *conn) deniedTopics(op kmsg.ACLOperation, n int, topic func(i int) (string, [16]byte), byID bool) []bool {
	if c.b.cfg.Authorizer == nil {
		return nil
	}
	var denied []bool
	for i := 0; i < n; i++ {
		name, id := topic(i)
		if byID {
			t := c.b.lookupTopicID(id)
			if t == nil {
				continue
			}
			name = t.name
		}
		if !c.allowed(op, kmsg.ACLResourceTypeTopic, name) {
			if denied == nil {
				denied = make([]bool, n)
			}
			denied[i] = true
		}
	}
	return denied
}
