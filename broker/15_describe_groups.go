package broker

import (
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
// * Authorized operations are not computed (no ACLs).

func handleDescribeGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range r.Groups {
		resp.Groups = append(resp.Groups, c.b.groups.DescribeGroup(name, r.Version))
	}
	return now(resp)
}
