package broker

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup: v0-5
//
// Behavior:
// * The leader's assignments end the CompletingRebalance round; followers
//   wait for them (at most until the next rebalance, which answers them
//   REBALANCE_IN_PROGRESS). In a Stable group every member gets its current
//   assignment and any assignments sent are ignored.
// * UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID (v3+) and,
//   v5+, INCONSISTENT_GROUP_PROTOCOL when ProtocolType or Protocol do not
//   match the group's.
// * ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED.

// syncWaitLimit bounds how long a follower waits for its leader before it
// is told to rejoin; the rebalance timer normally answers much sooner.
const syncWaitLimit = 5 * time.Minute

func handleSyncGroup(c *conn, req *request) reply {
	r := req.Request.(*kmsg.SyncGroupRequest)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		return now(groupErrorResponse(r, kerr.GroupAuthorizationFailed))
	}
	resp, wait := c.b.groups.SyncGroup(r)
	if resp != nil {
		resp.SetVersion(r.Version)
		return now(resp)
	}
	return func() kmsg.Response {
		timer := time.NewTimer(syncWaitLimit)
		defer timer.Stop()
		var resp *kmsg.SyncGroupResponse
		select {
		case resp = <-wait:
		case <-timer.C:
			resp = kmsg.NewPtrSyncGroupResponse()
			resp.ErrorCode = kerr.RebalanceInProgress.Code
		case <-c.b.closing:
			resp = kmsg.NewPtrSyncGroupResponse()
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		}
		resp.SetVersion(r.Version)
		return resp
	}
}
