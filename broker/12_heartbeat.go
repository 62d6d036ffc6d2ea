package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Heartbeat: v0-4
//
// Behavior:
// * Resets the member's session timer. REBALANCE_IN_PROGRESS while the group
//   is PreparingRebalance (the member must rejoin); UNKNOWN_MEMBER_ID,
//   ILLEGAL_GENERATION and FENCED_INSTANCE_ID (v3+) as Kafka.
// * ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED.

func handleHeartbeat(c *conn, req *request) reply {
	r := req.Request.(*kmsg.HeartbeatRequest)
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return now(resp)
	}
	if err := c.b.groups.Heartbeat(r); err != nil {
		resp.ErrorCode = err.Code
	}
	return now(resp)
}
