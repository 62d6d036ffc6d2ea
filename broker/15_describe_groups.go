package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-6
//
// Behavior:
// * State is Kafka's name (Empty, PreparingRebalance, CompletingRebalance,
//   Stable, Dead). Members carry their client ID and host, their metadata
//   for the selected protocol and their current assignment.
// * An unknown group is described as Dead with no error before v6 and gets
//   GROUP_ID_NOT_FOUND from v6, as Kafka.
// * A KIP-848 consumer group is described in the classic shape, so classic
//   tools keep working: protocol type "consumer", its assignor as the
//   protocol, its state name (Empty, Assigning, Reconciling, Stable), and
//   each member's current assignment encoded as a ConsumerMemberAssignment.
// * ACLs: DESCRIBE on each group, else GROUP_AUTHORIZATION_FAILED for it.
//   v3+ fill AuthorizedOperations of the groups described when asked.

func handleDescribeGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range r.Groups {
		if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, name) {
			g := kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = name, kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, g)
			continue
		}
		g := c.b.groups.DescribeGroup(name, r.Version)
		if r.Version >= 3 && r.IncludeAuthorizedOperations && g.ErrorCode == 0 {
			g.AuthorizedOperations = c.authorizedOperations(kmsg.ACLResourceTypeGroup, name)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return now(resp)
}
