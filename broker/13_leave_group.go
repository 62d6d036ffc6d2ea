package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup: v0-5
//
// Behavior:
// * v0-2 remove one member by ID; v3+ remove a batch of members, each by
//   member ID or by group.instance.id (KIP-345), with a per-member error
//   (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID). The rest of the group
//   rebalances.
// * ACLs: READ on the group, else GROUP_AUTHORIZATION_FAILED at the top
//   level.

func handleLeaveGroup(c *conn, req *request) reply {
	r := req.Request.(*kmsg.LeaveGroupRequest)
	resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
	if !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group) {
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return now(resp)
	}
	members := r.Members
	if r.Version < 3 {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = r.MemberID
		members = []kmsg.LeaveGroupRequestMember{m}
	}
	gerr, errs := c.b.groups.LeaveGroup(r.Group, members)
	if gerr != nil {
		resp.ErrorCode = gerr.Code
		return now(resp)
	}
	if r.Version < 3 {
		if errs[0] != nil {
			resp.ErrorCode = errs[0].Code
		}
		return now(resp)
	}
	for i, m := range members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		if errs[i] != nil {
			rm.ErrorCode = errs[i].Code
		}
		resp.Members = append(resp.Members, rm)
	}
	return now(resp)
}
