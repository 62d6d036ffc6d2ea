package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListGroups: v0-5
//
// Behavior:
// * Every group the coordinator knows, including Empty groups that only
//   hold committed offsets. StatesFilter (v4+) matches Kafka's state names
//   case-insensitively; TypesFilter (v5+) matches "classic" or "consumer"
//   (KIP-848 groups, whose states are Empty, Assigning, Reconciling,
//   Stable).

func handleListGroups(c *conn, req *request) reply {
	return now(c.b.groups.ListGroups(req.Request.(*kmsg.ListGroupsRequest)))
}
