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
// * ACLs: every group with DESCRIBE on the cluster; otherwise only the
//   groups the principal may DESCRIBE.

func handleListGroups(c *conn, req *request) reply {
	resp := c.b.groups.ListGroups(req.Request.(*kmsg.ListGroupsRequest))
	if c.allowedCluster(kmsg.ACLOperationDescribe) {
		return now(resp)
	}
	kept := resp.Groups[:0]
	for _, g := range resp.Groups {
		if c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, g.Group) {
			kept = append(kept, g)
		}
	}
	resp.Groups = kept
	return now(resp)
}
