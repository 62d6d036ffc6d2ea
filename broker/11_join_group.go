package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup: v0-9
//
// Behavior:
// * Classic group protocol: Empty -> PreparingRebalance -> CompletingRebalance
//   -> Stable. The round ends when every member has rejoined or the longest
//   rebalance timeout passes (members that did not rejoin are removed). The
//   first round of an empty group waits GroupInitialRebalanceDelay.
// * v4+: a new member without an ID gets MEMBER_ID_REQUIRED and its ID
//   (KIP-394); it must rejoin with it within its session timeout.
// * The selected protocol is the first of the leader's protocols that every
//   member supports; a member sharing none with the group, or a different
//   protocol type, gets INCONSISTENT_GROUP_PROTOCOL; so does a join into a
//   group that has KIP-848 consumer-protocol members.
// * Session timeouts outside GroupMin/MaxSessionTimeout get
//   INVALID_SESSION_TIMEOUT.
// * Static members (v5+, KIP-345): a known group.instance.id joining with no
//   member ID replaces the old member; in a Stable group with unchanged
//   selected protocol this happens without a rebalance (v9+ answers the leader with
//   SkipAssignment, KIP-814). A stale member ID gets FENCED_INSTANCE_ID.
// * A follower repeating its join with unchanged metadata while the group is
//   Stable or CompletingRebalance gets the current generation back.
// * ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED.
//
// Deviations:
// * Reason (v8+) is logged only at debug level.

func handleJoinGroup(c *conn, req *request) reply {
	r := req.Request.(*kmsg.JoinGroupRequest)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		return now(groupErrorResponse(r, kerr.GroupAuthorizationFailed))
	}
	resp, wait := c.b.groups.JoinGroup(r, req.clientID, "/"+c.remoteHost())
	if resp != nil {
		resp.SetVersion(r.Version)
		return now(resp)
	}
	timeout := time.Duration(max(r.RebalanceTimeoutMillis, r.SessionTimeoutMillis))*time.Millisecond + 5*time.Second
	return func() kmsg.Response {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		var resp *kmsg.JoinGroupResponse
		select {
		case resp = <-wait:
		case <-timer.C:
			resp = kmsg.NewPtrJoinGroupResponse()
			resp.ErrorCode, resp.Generation = kerr.RebalanceInProgress.Code, -1
		case <-c.b.closing:
			resp = kmsg.NewPtrJoinGroupResponse()
			resp.ErrorCode, resp.Generation = kerr.CoordinatorNotAvailable.Code, -1
		}
		resp.SetVersion(r.Version)
		return resp
	}
}
