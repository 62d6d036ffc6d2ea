package broker

import (
	"sort"

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
// * Authorized operations are not computed (no ACLs).

func handleConsumerGroupDescribe(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ConsumerGroupDescribeRequest)
	resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, name := range r.Groups {
		resp.Groups = append(resp.Groups, c.b.groups.describeConsumer(name))
	}
	return now(resp)
}

func (c *coordinator) describeConsumer(name string) kmsg.ConsumerGroupDescribeResponseGroup {
	out := kmsg.NewConsumerGroupDescribeResponseGroup()
	out.Group = name
	out.AuthorizedOperations = -2147483648
	if code := c.unavailable(name); code != nil {
		out.ErrorCode = code.Code
		return out
	}
	g := c.group(name, false)
	if g == nil {
		msg := "group " + name + " does not exist"
		out.ErrorCode, out.ErrorMessage = kerr.GroupIDNotFound.Code, &msg
		return out
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cg == nil || len(g.members) > 0 || g.state != groupEmpty {
		msg := "group " + name + " is not a consumer group"
		out.ErrorCode, out.ErrorMessage = kerr.GroupIDNotFound.Code, &msg
		return out
	}
	cg := g.cg
	out.State = cg.stateLocked()
	out.Epoch, out.AssignmentEpoch, out.AssignorName = cg.epoch, cg.assignEpoch, cg.assignor
	ids := make([]string, 0, len(cg.members))
	for id := range cg.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		m := cg.members[id]
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID, dm.MemberEpoch, dm.ClientID, dm.ClientHost = m.id, m.epoch, m.clientID, m.clientHost
		if m.instanceID != "" {
			dm.InstanceID = &m.instanceID
		}
		if m.rackID != "" {
			dm.RackID = &m.rackID
		}
		dm.SubscribedTopics = append([]string{}, m.topics...)
		if m.regex != nil {
			re := m.regex.String()
			re = re[len("^(?:") : len(re)-len(")$")]
			dm.SubscribedTopicRegex = &re
		}
		dm.MemberType = 1 // consumer protocol
		dm.Assignment = g.describeAssignment(m.assigned)
		dm.TargetAssignment = g.describeAssignment(cg.target[id])
		out.Members = append(out.Members, dm)
	}
	return out
}

func (g *group) describeAssignment(tps map[topicPart]struct{}) kmsg.Assignment {
	a := kmsg.NewAssignment()
	byTopic := map[string][]int32{}
	for tp := range tps {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	names := make([]string, 0, len(byTopic))
	for n := range byTopic {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		at := kmsg.NewAssignmentTopicPartition()
		at.Topic, at.Partitions = n, byTopic[n]
		if t := g.c.b.lookupTopic(n); t != nil {
			at.TopicID = t.id
		}
		sort.Slice(at.Partitions, func(i, j int) bool { return at.Partitions[i] < at.Partitions[j] })
		a.TopicPartitions = append(a.TopicPartitions, at)
	}
	return a
}
