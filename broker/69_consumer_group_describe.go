package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ConsumerGroupDescribe: v0-1
//
// Behavior:
// * Describes KIP-848 consumer groups: state (Empty, Assigning,
//   Reconciling, Stable), group epoch, target assignment epoch, assignor,
//   and per member its epoch, subscription, current and target assignment.
// * Unknown groups, and classic groups, get GROUP_ID_NOT_FOUND.
// * ACLs: DESCRIBE on each group, else GROUP_AUTHORIZATION_FAILED for it;
//   a group with a topic in a member's current or target assignment that
//   the principal may not DESCRIBE gets TOPIC_AUTHORIZATION_FAILED instead
//   of its description (Kafka 4.0). AuthorizedOperations of the groups
//   described are filled when asked.

func handleConsumerGroupDescribe(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ConsumerGroupDescribeRequest)
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	failed := func(name string, code *kerr.Error) kmsg.ConsumerGroupDescribeResponseGroup {
		g := kmsg.NewConsumerGroupDescribeResponseGroup()
		g.Group, g.ErrorCode = name, code.Code
		return g
	}
	for _, name := range r.Groups {
		if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, name) {
			resp.Groups = append(resp.Groups, failed(name, kerr.GroupAuthorizationFailed))
			continue
		}
		g := c.b.groups.DescribeConsumerGroup(name)
		if g.ErrorCode == 0 && !c.mayDescribeAssigned(&g) {
			g = failed(name, kerr.TopicAuthorizationFailed)
		} else if g.ErrorCode == 0 && r.IncludeAuthorizedOperations {
			g.AuthorizedOperations = c.authorizedOperations(kmsg.ACLResourceTypeGroup, name)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return now(resp)
}

// mayDescribeAssigned reports whether the principal may DESCRIBE every
// topic in the current and target assignments of g's members.
func (c *conn) mayDescribeAssigned(g *kmsg.ConsumerGroupDescribeResponseGroup) bool {
	if c.b.cfg.Authorizer == nil {
		return true
	}
	for i := range g.Members {
		m := &g.Members[i]
		for _, a := range [2]*kmsg.Assignment{&m.Assignment, &m.TargetAssignment} {
			for _, tp := range a.TopicPartitions {
				if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, tp.Topic) {
					return false
				}
			}
		}
	}
	return true
}
