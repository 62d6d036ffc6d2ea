package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-3
//
// Behavior:
// * Deletes Empty groups: their committed offsets are tombstoned in
//   __consumer_offsets and the answer waits for the fsync. A group with
//   members (classic or KIP-848) gets NON_EMPTY_GROUP, an unknown one
//   GROUP_ID_NOT_FOUND; v3+ carry an error message.

func handleDeleteGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DeleteGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	groups := r.Groups
	return func() kmsg.Response {
		ctx, cancel := c.b.ctxUntilClose(c.ctx)
		defer cancel()
		for _, name := range groups {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group = name
			if err := c.b.groups.deleteGroup(ctx, name); err != nil {
				rg.ErrorCode = kafkaErr(err).Code
				if r.Version >= 3 {
					rg.ErrorMessage = errMessage(err)
				}
			}
			resp.Groups = append(resp.Groups, rg)
		}
		return resp
	}
}
