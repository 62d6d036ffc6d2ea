package group

import (
	"iter"
	"maps"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (c *Coordinator) describe(name string, version int16) kmsg.DescribeGroupsResponseGroup {
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

func (c *Coordinator) describeConsumer(name string) kmsg.ConsumerGroupDescribeResponseGroup {
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
	names, byTopic := groupByTopic(maps.Keys(tps))
	for _, n := range names {
		at := kmsg.NewAssignmentTopicPartition()
		at.Topic, at.Partitions = n, byTopic[n]
		if id, ok := g.c.topics.ID(n); ok {
			at.TopicID = id
		}
		sort.Slice(at.Partitions, func(i, j int) bool { return at.Partitions[i] < at.Partitions[j] })
		a.TopicPartitions = append(a.TopicPartitions, at)
	}
	return a
}

// groupByTopic returns the topics of tps, sorted, and each one's
// partitions.
func groupByTopic(tps iter.Seq[topicPart]) (names []string, byTopic map[string][]int32) {
	byTopic = map[string][]int32{}
	for tp := range tps {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	names = slices.Sorted(maps.Keys(byTopic))
	return names, byTopic
}
