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
	return func() kmsg.Response { return c.b.groups.DeleteGroups(c.ctx, r) }
}
