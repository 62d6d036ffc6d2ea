package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-3
//
// Behavior:
// * Deletes Empty groups: their committed offsets are tombstoned in
//   __consumer_offsets and the answer waits for the fsync. A group with
//   members (classic or KIP-848) gets NON_EMPTY_GROUP, an unknown one
//   GROUP_ID_NOT_FOUND; v3+ carry an error message.
// * ACLs: DELETE on each group, else GROUP_AUTHORIZATION_FAILED for it
//   (listed after the others, as Kafka); the others are deleted.

func handleDeleteGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DeleteGroupsRequest)
	var denied []string
	if c.b.cfg.Authorizer != nil {
		allowed := *r
		allowed.Groups = nil
		for _, g := range r.Groups {
			if c.allowed(kmsg.ACLOperationDelete, kmsg.ACLResourceTypeGroup, g) {
				allowed.Groups = append(allowed.Groups, g)
			} else {
				denied = append(denied, g)
			}
		}
		r = &allowed
	}
	return func() kmsg.Response {
		resp := c.b.groups.DeleteGroups(c.ctx, r)
		for _, g := range denied {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
		}
		return resp
	}
}
