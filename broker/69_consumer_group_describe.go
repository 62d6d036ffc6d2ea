package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerGroupDescribe: v0-1
//
// Behavior:
// * Describes KIP-848 consumer groups: state (Empty, Assigning,
//   Reconciling, Stable), group epoch, target assignment epoch, assignor,
//   and per member its epoch, subscription, current and target assignment.
// * Unknown groups, and classic groups, get GROUP_ID_NOT_FOUND.
// * Authorized operations are not computed (no ACLs).

func handleConsumerGroupDescribe(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ConsumerGroupDescribeRequest)
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, name := range r.Groups {
		resp.Groups = append(resp.Groups, c.b.groups.DescribeConsumerGroup(name))
	}
	return now(resp)
}
