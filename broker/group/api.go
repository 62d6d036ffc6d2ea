package group

import (
	"context"
	"errors"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The requests the broker's handlers adapt: each takes the decoded request
// and returns the response, or a response and a wait that completes it
// (called in the reply, so the connection's next request is read
// meanwhile).

// OffsetCommit runs an OffsetCommit (v0-10). The returned wait, when not
// nil, blocks until the commit is durable and fills in its errors.
func (c *Coordinator) OffsetCommit(r *kmsg.OffsetCommitRequest) (*kmsg.OffsetCommitResponse, func()) {
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
	var slots []*int16 // the error codes of the partitions written
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			st.Partitions[j] = kmsg.NewOffsetCommitResponseTopicPartition()
			st.Partitions[j].Partition = rt.Partitions[j].Partition
		}
	}
	failAll := func(code *kerr.Error) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code.Code
			}
		}
	}
	generation := r.Generation
	if r.Version == 0 {
		generation = -1
	}
	nowMs := time.Now().UnixMilli()
	entries := make([]offsetEntry, 0, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		name, known := rt.Topic, true
		if r.Version >= 10 {
			name, known = c.topics.Name(rt.TopicID)
		}
		parts := int32(0)
		if known {
			parts = c.topics.Partitions(name)
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[i].Partitions[j]
			if !known {
				sp.ErrorCode = kerr.UnknownTopicID.Code
				continue
			}
			epoch := int32(-1)
			if r.Version >= 6 {
				epoch = rp.LeaderEpoch
			}
			e, code := c.offsetEntry(name, parts, rp.Partition, rp.Offset, epoch, rp.Metadata, nowMs)
			if code != nil {
				sp.ErrorCode = code.Code
				continue
			}
			entries = append(entries, e)
			slots = append(slots, &sp.ErrorCode)
		}
	}
	ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
	defer cancel()
	var refused *kerr.Error
	w, _, err := c.appendOffsets(ctx, r.Group, func() (*group, []offsetEntry, error) {
		g, gerr := c.commitCheck(r.Group, r.MemberID, r.InstanceID, generation, entries)
		if gerr != nil {
			refused = gerr
			return nil, nil, gerr
		}
		return g, entries, nil
	})
	if refused != nil {
		failAll(refused)
		return resp, nil
	}
	return resp, c.writeOutcome(w, err, slots)
}

// offsetEntry checks one partition's commit of offset into topic (of
// parts partitions): it returns the entry to write, or the error code the
// partition gets.
func (c *Coordinator) offsetEntry(topic string, parts, partition int32, offset int64, leaderEpoch int32, metadata *string, nowMs int64) (offsetEntry, *kerr.Error) {
	switch {
	case partition < 0 || partition >= parts:
		return offsetEntry{}, kerr.UnknownTopicOrPartition
	case metadata != nil && len(*metadata) > c.cfg.MaxOffsetMetadata:
		return offsetEntry{}, kerr.OffsetMetadataTooLarge
	}
	v := committedOffset{offset: offset, leaderEpoch: leaderEpoch, commitTime: nowMs}
	if metadata != nil {
		v.metadata = *metadata
	}
	return offsetEntry{tp: topicPart{topic, partition}, value: v}, nil
}

// writeOutcome answers the partitions whose error codes are codes for a
// write that appendOffsets started (err nil; w under way) or refused: at
// once when it failed, or by the returned wait.
func (c *Coordinator) writeOutcome(w *pendingOffsets, err error, codes []*int16) func() {
	set := func(code *kerr.Error) {
		for _, p := range codes {
			*p = code.Code
		}
	}
	if err != nil {
		set(commitWriteErr(err))
		return nil
	}
	return func() { c.settle(w, set) }
}

// settle waits for w, bounded by offsetWriteTimeout and Close, and calls
// fail with the error its requests get if it failed.
func (c *Coordinator) settle(w *pendingOffsets, fail func(*kerr.Error)) {
	ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
	defer cancel()
	if err := w.wait(ctx); err != nil {
		code := commitWriteErr(err)
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = kerr.CoordinatorNotAvailable // closing
		}
		fail(code)
	}
}

// OffsetDelete runs an OffsetDelete (v0). The returned wait, when not
// nil, blocks until the tombstones are durable and fills in their errors.
func (c *Coordinator) OffsetDelete(r *kmsg.OffsetDeleteRequest) (*kmsg.OffsetDeleteResponse, func()) {
	resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
	type want struct {
		tp topicPart
		sp *kmsg.OffsetDeleteResponseTopicPartition
	}
	var wants []want
	resp.Topics = make([]kmsg.OffsetDeleteResponseTopic, len(r.Topics))
	for i, rt := range r.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetDeleteResponseTopic()
		st.Topic = rt.Topic
		parts := c.topics.Partitions(rt.Topic)
		st.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewOffsetDeleteResponseTopicPartition()
			sp.Partition = rp.Partition
			if rp.Partition < 0 || rp.Partition >= parts {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			wants = append(wants, want{topicPart{rt.Topic, rp.Partition}, sp})
		}
	}
	// The subscription check and the enqueue are one step (the check of
	// appendOffsets), so a member cannot subscribe in between.
	var refused *kerr.Error
	var slots []*int16 // the error codes of the partitions written
	check := func() (*group, []offsetEntry, error) {
		g := c.lockGroup(r.Group, false)
		if g == nil {
			refused = kerr.GroupIDNotFound
			if code := c.unavailable(r.Group); code != nil {
				refused = code
			}
			return nil, nil, refused
		}
		defer g.mu.Unlock()
		subscribed := func(string) bool { return false }
		switch {
		case len(g.members) > 0:
			if g.protocolType != "consumer" {
				refused = kerr.NonEmptyGroup
				return nil, nil, refused
			}
			topics := map[string]bool{}
			for _, m := range g.members {
				var md kmsg.ConsumerMemberMetadata
				if md.ReadFrom(protocolMetadata(m, g.protocol)) == nil {
					for _, t := range md.Topics {
						topics[t] = true
					}
				}
			}
			subscribed = func(t string) bool { return topics[t] }
		case g.cg != nil && len(g.cg.members) > 0:
			cg := g.cg
			subscribed = func(t string) bool {
				for _, m := range cg.members {
					if m.subscribes(t) {
						return true
					}
				}
				return false
			}
		}
		var entries []offsetEntry
		for _, w := range wants {
			if subscribed(w.tp.topic) {
				w.sp.ErrorCode = kerr.GroupSubscribedToTopic.Code
				continue
			}
			entries = append(entries, offsetEntry{tp: w.tp, deleted: true})
			slots = append(slots, &w.sp.ErrorCode)
		}
		g.beginInflightLocked(entries)
		return g, entries, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
	defer cancel()
	w, _, err := c.appendOffsets(ctx, r.Group, check)
	if refused != nil {
		resp.Topics = nil
		resp.ErrorCode = refused.Code
		return resp, nil
	}
	return resp, c.writeOutcome(w, err, slots)
}

// OffsetFetch runs an OffsetFetch (v0-10). Transactional offsets pending
// are not answered; with RequireStable (v7+) their partitions are answered
// UNSTABLE_OFFSET_COMMIT, as Kafka does, so the client retries.
func (c *Coordinator) OffsetFetch(r *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version < 8 {
		var topics []kmsg.OffsetFetchRequestGroupTopic
		if r.Topics != nil || r.Version < 2 {
			topics = make([]kmsg.OffsetFetchRequestGroupTopic, 0, len(r.Topics))
			for _, t := range r.Topics {
				gt := kmsg.NewOffsetFetchRequestGroupTopic()
				gt.Topic, gt.Partitions = t.Topic, t.Partitions
				topics = append(topics, gt)
			}
		}
		rg := c.fetchOffsets(r.Group, topics, r.Version, r.Version >= 7 && r.RequireStable)
		resp.ErrorCode = rg.ErrorCode
		for _, t := range rg.Topics {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	for _, g := range r.Groups {
		if r.Version >= 9 && g.MemberID != nil && g.MemberEpoch >= 0 {
			if err := c.checkFetchMember(g.Group, *g.MemberID, g.MemberEpoch); err != nil {
				rg := kmsg.NewOffsetFetchResponseGroup()
				rg.Group, rg.ErrorCode = g.Group, err.Code
				resp.Groups = append(resp.Groups, rg)
				continue
			}
		}
		resp.Groups = append(resp.Groups, c.fetchOffsets(g.Group, g.Topics, r.Version, r.RequireStable))
	}
	return resp
}

// ListGroups runs a ListGroups (v0-5): the groups this coordinator serves.
func (c *Coordinator) ListGroups(r *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	typeOK := func(typ string) bool {
		if len(r.TypesFilter) == 0 {
			return true
		}
		for _, t := range r.TypesFilter {
			if strings.EqualFold(t, typ) {
				return true
			}
		}
		return false
	}
	for _, g := range c.snapshot() {
		g.mu.Lock()
		st, pt, typ := g.state, g.protocolType, "classic"
		state := st.String()
		if g.cg != nil && len(g.members) == 0 && st == groupEmpty {
			state, pt, typ = g.cg.stateLocked(), "consumer", "consumer"
		}
		g.mu.Unlock()
		if st == groupDead || !typeOK(typ) {
			continue
		}
		if len(r.StatesFilter) > 0 {
			ok := false
			for _, s := range r.StatesFilter {
				ok = ok || strings.EqualFold(s, state)
			}
			if !ok {
				continue
			}
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.name, pt, state, typ
		resp.Groups = append(resp.Groups, lg)
	}
	sort.Slice(resp.Groups, func(i, j int) bool { return resp.Groups[i].Group < resp.Groups[j].Group })
	return resp
}

// DeleteGroups runs a DeleteGroups (v0-2): each group must be empty; its
// offsets are tombstoned and the reply waits for them.
func (c *Coordinator) DeleteGroups(ctx context.Context, r *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	ctx, cancel := c.ctxUntilClose(ctx)
	defer cancel()
	for _, name := range r.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		if err := c.deleteGroup(ctx, name); err != nil {
			rg.ErrorCode = codeOf(err).Code
			if r.Version >= 3 {
				msg := err.Error()
				var ge *Error
				if errors.As(err, &ge) {
					msg = ge.Msg
				}
				rg.ErrorMessage = &msg
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// JoinGroup runs a JoinGroup (v0-9): the response now, or a channel the
// response arrives on once the join round completes.
func (c *Coordinator) JoinGroup(r *kmsg.JoinGroupRequest, clientID, clientHost string) (*kmsg.JoinGroupResponse, <-chan *kmsg.JoinGroupResponse) {
	res := c.join(r, clientID, clientHost)
	return res.resp, res.wait
}

// SyncGroup runs a SyncGroup (v0-5): the response now, or a channel the
// response arrives on once the leader has sent the assignment.
func (c *Coordinator) SyncGroup(r *kmsg.SyncGroupRequest) (*kmsg.SyncGroupResponse, <-chan *kmsg.SyncGroupResponse) {
	res := c.sync(r)
	return res.resp, res.wait
}

// Heartbeat runs a Heartbeat (v0-4) and returns its error, or nil.
func (c *Coordinator) Heartbeat(r *kmsg.HeartbeatRequest) *kerr.Error { return c.heartbeat(r) }

// LeaveGroup removes members; it returns the group error and one error per
// member.
func (c *Coordinator) LeaveGroup(group string, members []kmsg.LeaveGroupRequestMember) (*kerr.Error, []*kerr.Error) {
	return c.leave(group, members)
}

// DescribeGroup describes one group for DescribeGroups (v0-5).
func (c *Coordinator) DescribeGroup(name string, version int16) kmsg.DescribeGroupsResponseGroup {
	return c.describe(name, version)
}

// ConsumerGroupHeartbeat runs a KIP-848 ConsumerGroupHeartbeat (v0-1).
func (c *Coordinator) ConsumerGroupHeartbeat(r *kmsg.ConsumerGroupHeartbeatRequest, clientID, clientHost string) *kmsg.ConsumerGroupHeartbeatResponse {
	resp, herr := c.consumerHeartbeat(r, clientID, clientHost)
	if herr != nil {
		resp = r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = herr.code.Code
		msg := herr.msg
		resp.ErrorMessage = &msg
	}
	resp.SetVersion(r.Version)
	return resp
}

// DescribeConsumerGroup describes one group for ConsumerGroupDescribe.
func (c *Coordinator) DescribeConsumerGroup(name string) kmsg.ConsumerGroupDescribeResponseGroup {
	return c.describeConsumer(name)
}

// Unavailable returns the error a request for group name gets when this
// coordinator cannot serve it now (closed; in a cluster, the group's
// partition not led or still loading), or nil.
func (c *Coordinator) Unavailable(name string) *kerr.Error { return c.unavailable(name) }

// commitWriteErr maps an append failure to a retriable commit error, as
// Kafka does.
func commitWriteErr(err error) *kerr.Error {
	switch code := codeOf(err); code {
	case kerr.RequestTimedOut, kerr.NotCoordinator:
		return code
	case kerr.NotLeaderForPartition:
		return kerr.NotCoordinator
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return kerr.InvalidCommitOffsetSize
	default:
		return kerr.CoordinatorNotAvailable
	}
}

// commitCheck validates an OffsetCommit's group fields and returns the
// group (created for a generation -1 commit), with entries registered in
// flight on it (end them with finishOffsets). The caller holds the group's
// append lock.
func (c *Coordinator) commitCheck(name, memberID string, instanceID *string, generation int32, entries []offsetEntry) (*group, *kerr.Error) {
	if name == "" {
		return nil, kerr.InvalidGroupID
	}
	g := c.lockGroup(name, generation < 0)
	if g == nil {
		if code := c.unavailable(name); code != nil {
			return nil, code
		}
		return nil, kerr.IllegalGeneration
	}
	defer g.mu.Unlock()
	if g.cg != nil && len(g.cg.members) > 0 {
		// A consumer-protocol group: Generation is the member epoch.
		if err := g.validateConsumerMemberLocked(memberID, generation); err != nil {
			return nil, err
		}
		g.beginInflightLocked(entries)
		return g, nil
	}
	if generation < 0 && len(g.members) == 0 {
		g.beginInflightLocked(entries)
		return g, nil
	}
	if err := g.validateMemberLocked(memberID, instanceID, generation); err != nil {
		return nil, err
	}
	if g.state == groupCompletingRebalance {
		return nil, kerr.RebalanceInProgress
	}
	g.resetSessionLocked(g.members[memberID])
	g.beginInflightLocked(entries)
	return g, nil
}

// fetchOffsets answers one group; topics nil means every committed
// partition (and, stable, every partition with offsets pending).
func (c *Coordinator) fetchOffsets(name string, topics []kmsg.OffsetFetchRequestGroupTopic, version int16, stable bool) kmsg.OffsetFetchResponseGroup {
	out := kmsg.NewOffsetFetchResponseGroup()
	out.Group = name
	if code := c.unavailable(name); code != nil {
		out.ErrorCode = code.Code
		return out
	}
	byID := version >= 10
	g := c.group(name, false)
	snap := map[topicPart]committedOffset{}
	var unstable map[topicPart]bool // read only when nil
	if g != nil {
		g.mu.Lock()
		if stable && len(g.txnOffsets) > 0 {
			unstable = map[topicPart]bool{}
			for _, pend := range g.txnOffsets {
				for tp := range pend {
					unstable[tp] = true
				}
			}
		}
		if topics == nil {
			for tp, o := range g.offsets {
				snap[tp] = o
			}
			for tp := range unstable {
				snap[tp] = committedOffset{}
			}
		} else {
			for _, t := range topics {
				topicName := t.Topic
				if byID {
					if n, ok := c.topics.Name(t.TopicID); ok {
						topicName = n
					}
				}
				for _, p := range t.Partitions {
					if o, ok := g.offsets[topicPart{topicName, p}]; ok {
						snap[topicPart{topicName, p}] = o
					}
				}
			}
		}
		g.mu.Unlock()
	}
	part := func(tp topicPart, o committedOffset, ok bool) kmsg.OffsetFetchResponseGroupTopicPartition {
		rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = tp.partition, -1, -1
		md := ""
		switch {
		case unstable[tp]:
			rp.ErrorCode = kerr.UnstableOffsetCommit.Code
		case ok:
			rp.Offset, rp.LeaderEpoch, md = o.offset, o.leaderEpoch, o.metadata
		}
		rp.Metadata = &md
		return rp
	}
	if topics != nil {
		for _, t := range topics {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			topicName := t.Topic
			if byID {
				if n, ok := c.topics.Name(t.TopicID); ok {
					topicName = n
				}
			}
			for _, p := range t.Partitions {
				o, ok := snap[topicPart{topicName, p}]
				rt.Partitions = append(rt.Partitions, part(topicPart{topicName, p}, o, ok))
			}
			out.Topics = append(out.Topics, rt)
		}
		return out
	}
	names, byTopic := groupByTopic(maps.Keys(snap))
	for _, n := range names {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = n
		if byID {
			id, ok := c.topics.ID(n)
			if !ok {
				continue
			}
			rt.TopicID = id
		}
		ps := byTopic[n]
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		for _, p := range ps {
			rt.Partitions = append(rt.Partitions, part(topicPart{n, p}, snap[topicPart{n, p}], true))
		}
		out.Topics = append(out.Topics, rt)
	}
	return out
}

// checkFetchMember validates an OffsetFetch's member of a consumer-protocol
// group: it must be in the group, at its current or previous epoch.
func (c *Coordinator) checkFetchMember(name, memberID string, epoch int32) *kerr.Error {
	g := c.group(name, false)
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cg == nil || len(g.cg.members) == 0 {
		return nil
	}
	err := g.validateConsumerMemberLocked(memberID, epoch)
	if err == kerr.FencedMemberEpoch {
		err = kerr.StaleMemberEpoch
	}
	return err
}

// Status reports a group this coordinator serves: its state (Kafka's name;
// "Dead" when it serves no such group), its generation (a consumer-protocol
// group: its assignment epoch) and its member count. For metrics, tools and
// tests.
func (c *Coordinator) Status(name string) (state string, generation int32, members int) {
	g := c.group(name, false)
	if g == nil {
		return groupDead.String(), -1, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cg != nil && len(g.members) == 0 && g.state == groupEmpty {
		return g.cg.stateLocked(), g.cg.assignEpoch, len(g.cg.members)
	}
	return g.state.String(), g.generation, len(g.members)
}

// Members returns the member IDs of a group this coordinator serves.
func (c *Coordinator) Members(name string) []string {
	g := c.group(name, false)
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for id := range g.members {
		out = append(out, id)
	}
	if g.cg != nil {
		for id := range g.cg.members {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
