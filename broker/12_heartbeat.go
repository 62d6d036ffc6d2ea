package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// Heartbeat: v0-4
//
// Behavior:
// * Resets the member's session timer. REBALANCE_IN_PROGRESS while the group
//   is PreparingRebalance (the member must rejoin); UNKNOWN_MEMBER_ID,
//   ILLEGAL_GENERATION and FENCED_INSTANCE_ID (v3+) as Kafka.

func handleHeartbeat(c *conn, req *request) reply {
	r := req.Request.(*kmsg.HeartbeatRequest)
	resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
	if err := c.b.groups.Heartbeat(r); err != nil {
		resp.ErrorCode = err.Code
	}
	return now(resp)
}
