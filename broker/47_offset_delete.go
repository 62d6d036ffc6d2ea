package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetDelete: v0
//
// Behavior:
// * Tombstones the named partitions' committed offsets and answers after
//   the fsync. GROUP_ID_NOT_FOUND for an unknown group; a partition of a
//   topic that a member of a "consumer" group subscribes to gets
//   GROUP_SUBSCRIBED_TO_TOPIC; a non-empty group of another protocol type
//   gets NON_EMPTY_GROUP; unknown partitions UNKNOWN_TOPIC_OR_PARTITION.

func handleOffsetDelete(c *conn, req *request) reply {
	resp, wait := c.b.groups.OffsetDelete(req.Request.(*kmsg.OffsetDeleteRequest))
	return waitThen(resp, wait)
}

// waitThen answers resp now, or after wait when there is one.
func waitThen(resp kmsg.Response, wait func()) reply {
	if wait == nil {
		return now(resp)
	}
	return func() kmsg.Response {
		wait()
		return resp
	}
}
