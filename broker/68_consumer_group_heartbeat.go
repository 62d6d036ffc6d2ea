package broker

import (
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerGroupHeartbeat: v0-1
//
// Behavior:
// * KIP-848's consumer group protocol, with server-side assignment
//   (broker/group/consumer.go): "uniform" (sticky, balanced) and "range"
//   assignors, group and member epochs, and a target assignment each member
//   reaches by first releasing what it loses (revocation before
//   reassignment; a member that does not release within its rebalance
//   timeout is removed). Members time out after
//   ConsumerGroupSessionTimeout and are told to heartbeat every
//   ConsumerGroupHeartbeatInterval.
// * MemberEpoch 0 joins (v1: with a client-chosen MemberID; v0: an empty
//   MemberID gets one), -1 leaves, -2 is a static member's temporary leave:
//   its partitions stay reserved until its session expires, and the same
//   group.instance.id rejoining takes them over without a rebalance (while
//   the old member is active: UNRELEASED_INSTANCE_ID).
// * A heartbeat from an older epoch is accepted only as the retry of a
//   lost response (the previous epoch, owning nothing it was not
//   assigned); otherwise FENCED_MEMBER_EPOCH. Unknown members get
//   UNKNOWN_MEMBER_ID, a group with classic members
//   INCONSISTENT_GROUP_PROTOCOL, unknown assignors UNSUPPORTED_ASSIGNOR,
//   bad regexes INVALID_REGULAR_EXPRESSION.
// * SubscribedTopicRegex (v1) is an RE2 regular expression matched against
//   whole topic names, as Kafka's RE2J.
// * ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED; then
//   DESCRIBE on every topic of SubscribedTopicNames, else
//   TOPIC_AUTHORIZATION_FAILED for the heartbeat (Kafka 4.0, KIP-848's
//   KAFKA-18813), which changes nothing in the group.
//
// Deviations:
// * RackID is recorded but no assignor is rack-aware.
// * No online migration between classic and consumer groups (KIP-848's
//   upgrade path): a group is one or the other while it has members.
// * Topics matched by SubscribedTopicRegex are not filtered by the ACLs of
//   the member that subscribed (Kafka 4.0 leaves out those it may not
//   DESCRIBE): a member can be assigned partitions of such a topic, though
//   it cannot fetch them without READ.

func handleConsumerGroupHeartbeat(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ConsumerGroupHeartbeatRequest)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		return now(groupErrorResponse(r, kerr.GroupAuthorizationFailed))
	}
	var denied []string
	for _, t := range r.SubscribedTopicNames {
		if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t) {
			denied = append(denied, t)
		}
	}
	if denied != nil {
		resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		msg := "not authorized to describe the subscribed topics " + strings.Join(denied, ", ")
		resp.ErrorCode, resp.ErrorMessage = kerr.TopicAuthorizationFailed.Code, &msg
		return now(resp)
	}
	return now(c.b.groups.ConsumerGroupHeartbeat(r, req.clientID, "/"+c.remoteHost()))
}
