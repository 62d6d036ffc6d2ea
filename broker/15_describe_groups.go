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
// * Authorized operations are not computed (no ACLs).

func handleDescribeGroups(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range r.Groups {
		resp.Groups = append(resp.Groups, c.b.groups.describe(name, r.Version))
	}
	return now(resp)
}

func (c *coordinator) describe(name string, version int16) kmsg.DescribeGroupsResponseGroup {
	out := kmsg.NewDescribeGroupsResponseGroup()
	out.Group = name
	out.AuthorizedOperations = -2147483648
	g := c.group(name, false)
	if g == nil {
		out.State = groupDead.String()
		if code := c.unavailable(name); code != nil {
			out.ErrorCode = code.Code
		} else if version >= 6 {
			out.ErrorCode = kerr.GroupIDNotFound.Code
			msg := "group " + name + " does not exist"
			out.ErrorMessage = &msg
		}
		return out
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cg != nil && len(g.members) == 0 && g.state == groupEmpty {
		g.describeConsumerClassicLocked(&out)
		return out
	}
	out.State = g.state.String()
	out.ProtocolType = g.protocolType
	if g.state == groupCompletingRebalance || g.state == groupStable {
		out.Protocol = g.protocol
	}
	for _, m := range g.members {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.ClientID, dm.ClientHost = m.id, m.clientID, m.clientHost
		if m.instanceID != "" {
			id := m.instanceID
			dm.InstanceID = &id
		}
		dm.ProtocolMetadata = protocolMetadata(m, g.protocol)
		if g.state == groupStable {
			dm.MemberAssignment = m.assignment
		}
		out.Members = append(out.Members, dm)
	}
	return out
}

func (g *group) describeConsumerClassicLocked(out *kmsg.DescribeGroupsResponseGroup) {
	cg := g.cg
	out.State, out.ProtocolType, out.Protocol = cg.stateLocked(), "consumer", cg.assignor
	for _, m := range cg.members {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.ClientID, dm.ClientHost = m.id, m.clientID, m.clientHost
		if m.instanceID != "" {
			id := m.instanceID
			dm.InstanceID = &id
		}
		meta := kmsg.NewConsumerMemberMetadata()
		meta.Topics = m.topics
		dm.ProtocolMetadata = meta.AppendTo(nil)
		a := kmsg.NewConsumerMemberAssignment()
		for _, t := range g.describeAssignment(m.assigned).TopicPartitions {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic, at.Partitions = t.Topic, t.Partitions
			a.Topics = append(a.Topics, at)
		}
		dm.MemberAssignment = a.AppendTo(nil)
		out.Members = append(out.Members, dm)
	}
}
