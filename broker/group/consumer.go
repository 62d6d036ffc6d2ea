package group

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The coordinator for KIP-848's consumer group protocol
// (ConsumerGroupHeartbeat). The broker assigns partitions; members only
// heartbeat their subscription and the partitions they own.
//
// Epochs: the group epoch is bumped by every change of membership,
// subscriptions or subscribed topics' partition counts, and the target
// assignment is recomputed at once for that epoch (assignEpoch). Each member
// then converges on its target one heartbeat at a time:
//
//  1. Partitions it owns but is no longer assigned are revoked first: the
//     response drops them and the member keeps its epoch until a heartbeat
//     shows it no longer owns them (it commits before it lets them go). A
//     member that does not release them within its rebalance timeout is
//     removed.
//  2. Then it moves to the target epoch and gets every target partition no
//     other member still owns or is revoking; the rest follow on later
//     heartbeats, once their previous owners have released them.
//
// So no partition is ever assigned to two members at once. A group has
// members of one protocol only: JoinGroup into a group with consumer-protocol
// members, or a heartbeat into a group with classic members, gets
// INCONSISTENT_GROUP_PROTOCOL. The state lives in group.cg under group.mu.
// It is kept in __consumer_offsets (metadata.go): after a restart or a
// coordinator move members go on at their epochs.

type consumerGroup struct {
	epoch       int32
	assignEpoch int32
	assignor    string
	members     map[string]*cgMember
	static      map[string]string                 // instance ID -> member ID
	target      map[string]map[topicPart]struct{} // member ID -> target partitions
	// metaSig is the subscribed topics and partition counts the target
	// was computed from; a change bumps the epoch.
	metaSig string
}

type cgMember struct {
	id, instanceID       string
	rackID               string
	clientID, clientHost string
	epoch, prevEpoch     int32
	topics               []string // subscribed topic names, sorted
	regex                *regexp.Regexp
	assignor             string
	rebalanceTimeout     time.Duration

	assigned map[topicPart]struct{} // what the member was last told it owns
	revoking map[topicPart]struct{} // taken away, not yet released by the member
	dirty    bool                   // assigned changed since the last response
	left     bool                   // a static member that left with epoch -2

	session     *time.Timer
	sessionSeq  uint64
	revokeTimer *time.Timer
	revokeSeq   uint64
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{
		members: make(map[string]*cgMember),
		static:  make(map[string]string),
		target:  make(map[string]map[topicPart]struct{}),
	}
}

// cgAssignors are the server-side assignors, by the names clients send.
var cgAssignors = map[string]func(members []*cgMember, parts map[string]int32, prev map[string]map[topicPart]struct{}) map[string]map[topicPart]struct{}{
	"uniform": assignUniform,
	"range":   assignRange,
}

const defaultAssignor = "uniform"

// hbErr is a heartbeat error with its message.
type hbErr struct {
	code *kerr.Error
	msg  string
}

func hbErrf(code *kerr.Error, format string, args ...any) *hbErr {
	return &hbErr{code, fmt.Sprintf(format, args...)}
}

// consumerHeartbeat runs one ConsumerGroupHeartbeat.
func (c *Coordinator) consumerHeartbeat(r *kmsg.ConsumerGroupHeartbeatRequest, clientID, clientHost string) (*kmsg.ConsumerGroupHeartbeatResponse, *hbErr) {
	if r.Group == "" {
		return nil, hbErrf(kerr.InvalidGroupID, "group id is empty")
	}
	if r.MemberEpoch < -2 {
		return nil, hbErrf(kerr.InvalidRequest, "member epoch %d is below -2", r.MemberEpoch)
	}
	if r.MemberEpoch == 0 {
		if r.RebalanceTimeoutMillis <= 0 {
			return nil, hbErrf(kerr.InvalidRequest, "RebalanceTimeoutMillis must be positive when joining")
		}
		if r.SubscribedTopicNames == nil && r.SubscribedTopicRegex == nil {
			return nil, hbErrf(kerr.InvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set when joining")
		}
		if r.Topics == nil {
			return nil, hbErrf(kerr.InvalidRequest, "Topics must be set (empty) when joining")
		}
	}
	if r.Version >= 1 && r.MemberID == "" {
		return nil, hbErrf(kerr.InvalidRequest, "MemberID must be set from v1")
	}
	var re *regexp.Regexp
	if r.SubscribedTopicRegex != nil && *r.SubscribedTopicRegex != "" {
		var err error
		if re, err = regexp.Compile("^(?:" + *r.SubscribedTopicRegex + ")$"); err != nil {
			return nil, hbErrf(kerr.InvalidRegularExpression, "SubscribedTopicRegex: %v", err)
		}
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != "" {
		if _, ok := cgAssignors[*r.ServerAssignor]; !ok {
			return nil, hbErrf(kerr.UnsupportedAssignor, "assignor %q is not one of uniform, range", *r.ServerAssignor)
		}
	}

	g := c.lockGroup(r.Group, r.MemberEpoch == 0)
	if g == nil {
		if code := c.unavailable(r.Group); code != nil {
			return nil, hbErrf(code, "this broker does not coordinate group %q now", r.Group)
		}
		return nil, hbErrf(kerr.UnknownMemberID, "group %q has no member %q", r.Group, r.MemberID)
	}
	defer g.mu.Unlock()
	var hbMember *cgMember
	defer func() { g.persistConsumerLocked(hbMember) }() // what the heartbeat changed, before the unlock
	if len(g.members) > 0 || g.state != groupEmpty {
		return nil, hbErrf(kerr.InconsistentGroupProtocol, "group %q is a classic group with members", r.Group)
	}
	if g.cg == nil {
		g.cg = newConsumerGroup()
	}
	cg := g.cg

	switch r.MemberEpoch {
	case -1, -2:
		m := cg.members[r.MemberID]
		if m == nil && r.InstanceID != nil {
			m = cg.members[cg.static[*r.InstanceID]]
		}
		if m == nil {
			return nil, hbErrf(kerr.UnknownMemberID, "group %q has no member %q", r.Group, r.MemberID)
		}
		if r.InstanceID != nil && m.instanceID != *r.InstanceID {
			return nil, hbErrf(kerr.FencedInstanceID, "member %q is not instance %q", r.MemberID, *r.InstanceID)
		}
		if r.MemberEpoch == -2 && m.instanceID != "" {
			// A static member's temporary leave: its partitions stay
			// reserved for the instance until its session expires.
			m.left = true
		} else {
			g.removeConsumerLocked(m, "member left")
		}
		resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
		resp.MemberID, resp.MemberEpoch = &m.id, r.MemberEpoch
		return resp, nil
	}

	m := cg.members[r.MemberID]
	joined := false // a new member: the epoch moves once, below
	if r.MemberEpoch == 0 {
		if r.InstanceID != nil && *r.InstanceID != "" {
			if oldID, ok := cg.static[*r.InstanceID]; ok && oldID != r.MemberID {
				old := cg.members[oldID]
				if old != nil && !old.left {
					return nil, hbErrf(kerr.UnreleasedInstanceID, "instance %q is still used by member %q", *r.InstanceID, oldID)
				}
				if old != nil {
					m = g.replaceStaticConsumerLocked(old, r.MemberID)
				}
			}
		}
		if m == nil {
			if len(cg.members) >= maxGroupMembers {
				return nil, hbErrf(kerr.GroupMaxSizeReached, "group %q has %d members", r.Group, len(cg.members))
			}
			id := r.MemberID
			if id == "" {
				id = newMemberID(clientID)
			}
			m = &cgMember{id: id, assigned: map[topicPart]struct{}{}, revoking: map[topicPart]struct{}{}}
			cg.members[id] = m
			joined = true
			if r.InstanceID != nil && *r.InstanceID != "" {
				m.instanceID = *r.InstanceID
				cg.static[m.instanceID] = id
			}
		} else if m.epoch != 0 && len(m.assigned)+len(m.revoking) > 0 {
			// A known member rejoining with epoch 0 lost its
			// state: it owns nothing now.
			m.assigned, m.revoking = map[topicPart]struct{}{}, map[topicPart]struct{}{}
			m.epoch, m.dirty = 0, true
		}
		m.dirty = true
	} else {
		if m == nil {
			return nil, hbErrf(kerr.UnknownMemberID, "group %q has no member %q", r.Group, r.MemberID)
		}
		if r.InstanceID != nil && m.instanceID != *r.InstanceID {
			return nil, hbErrf(kerr.FencedInstanceID, "member %q is not instance %q", r.MemberID, *r.InstanceID)
		}
		if r.MemberEpoch != m.epoch && !(r.MemberEpoch == m.prevEpoch && r.Topics != nil && g.ownsOnlyLocked(m, r.Topics)) {
			return nil, hbErrf(kerr.FencedMemberEpoch, "member %q is at epoch %d, not %d", m.id, m.epoch, r.MemberEpoch)
		}
	}
	hbMember = m
	m.left = false
	m.clientID, m.clientHost = clientID, clientHost
	if r.RackID != nil {
		m.rackID = *r.RackID
	}
	if r.RebalanceTimeoutMillis > 0 {
		m.rebalanceTimeout = time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	}
	changed := false
	if r.SubscribedTopicNames != nil {
		topics := slices.Clone(r.SubscribedTopicNames)
		sort.Strings(topics)
		topics = slices.Compact(topics)
		if !slices.Equal(topics, m.topics) || m.regex != nil && r.SubscribedTopicRegex == nil {
			m.topics, changed = topics, true
			if r.SubscribedTopicRegex == nil {
				m.regex = nil
			}
		}
	}
	if r.SubscribedTopicRegex != nil {
		if (re == nil) != (m.regex == nil) || re != nil && re.String() != m.regex.String() {
			m.regex, changed = re, true
			if r.SubscribedTopicNames == nil {
				m.topics = nil
			}
		}
	}
	if r.ServerAssignor != nil && *r.ServerAssignor != m.assignor {
		m.assignor, changed = *r.ServerAssignor, true
	}
	if changed || joined {
		cg.epoch++
	}
	c.resetConsumerSessionLocked(g, m)

	if r.Topics != nil {
		g.noteOwnedLocked(m, r.Topics)
	}
	g.maybeRetargetLocked()
	g.reconcileLocked(m)

	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.MemberID = &m.id
	resp.MemberEpoch = m.epoch
	resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerGroupHeartbeatInterval.Milliseconds())
	// Send the assignment when it changed, and to a full request (a join,
	// or a member that re-sent what it owns) so a lost response heals.
	if m.dirty || r.Topics != nil && !g.ownsExactlyLocked(m, r.Topics) {
		resp.Assignment = g.assignmentLocked(m)
		m.dirty = false
	}
	return resp, nil
}

// ownedSet resolves a heartbeat's owned partitions to topic names;
// unknown topic IDs are left out.
func (g *group) ownedSet(topics []kmsg.ConsumerGroupHeartbeatRequestTopic) map[topicPart]struct{} {
	out := make(map[topicPart]struct{})
	for _, t := range topics {
		name, ok := g.c.topics.Name(t.TopicID)
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			out[topicPart{name, p}] = struct{}{}
		}
	}
	return out
}

func (g *group) ownsOnlyLocked(m *cgMember, topics []kmsg.ConsumerGroupHeartbeatRequestTopic) bool {
	for tp := range g.ownedSet(topics) {
		if _, ok := m.assigned[tp]; !ok {
			return false
		}
	}
	return true
}

func (g *group) ownsExactlyLocked(m *cgMember, topics []kmsg.ConsumerGroupHeartbeatRequestTopic) bool {
	owned := g.ownedSet(topics)
	if len(owned) != len(m.assigned) {
		return false
	}
	for tp := range owned {
		if _, ok := m.assigned[tp]; !ok {
			return false
		}
	}
	return true
}

// noteOwnedLocked finishes revocations the member has completed: a
// partition it was revoking and no longer reports owning is released.
func (g *group) noteOwnedLocked(m *cgMember, topics []kmsg.ConsumerGroupHeartbeatRequestTopic) {
	if len(m.revoking) == 0 {
		return
	}
	owned := g.ownedSet(topics)
	for tp := range m.revoking {
		if _, still := owned[tp]; !still {
			delete(m.revoking, tp)
		}
	}
	if len(m.revoking) == 0 && m.revokeTimer != nil {
		m.revokeTimer.Stop()
		m.revokeTimer = nil
		m.revokeSeq++
	}
}

// subscribedPartitionsLocked returns the partition count of every existing
// topic some member subscribes to.
func (g *group) subscribedPartitionsLocked() map[string]int32 {
	out := map[string]int32{}
	var all []string
	for _, m := range g.cg.members {
		for _, name := range m.topics {
			if _, ok := out[name]; ok {
				continue
			}
			if n := g.c.topics.Partitions(name); n > 0 && name != OffsetsTopic {
				out[name] = n
			}
		}
		if m.regex != nil {
			if all == nil {
				all = g.c.topics.Names()
			}
			for _, name := range all {
				if name != OffsetsTopic && m.regex.MatchString(name) {
					if n := g.c.topics.Partitions(name); n > 0 {
						out[name] = n
					}
				}
			}
		}
	}
	return out
}

func (m *cgMember) subscribes(topic string) bool {
	if _, ok := slices.BinarySearch(m.topics, topic); ok {
		return true
	}
	return m.regex != nil && m.regex.MatchString(topic)
}

// maybeRetargetLocked recomputes the target assignment when the group
// epoch moved or the subscribed topics changed.
func (g *group) maybeRetargetLocked() {
	cg := g.cg
	parts := g.subscribedPartitionsLocked()
	names := make([]string, 0, len(parts))
	for n := range parts {
		names = append(names, n)
	}
	sort.Strings(names)
	var sig strings.Builder
	for _, n := range names {
		fmt.Fprintf(&sig, "%s:%d,", n, parts[n])
	}
	if sig.String() != cg.metaSig {
		cg.metaSig = sig.String()
		if cg.assignEpoch == cg.epoch && len(cg.members) > 0 {
			cg.epoch++
		}
	}
	if cg.assignEpoch == cg.epoch {
		return
	}
	members := make([]*cgMember, 0, len(cg.members))
	votes := map[string]int{}
	for _, m := range cg.members {
		members = append(members, m)
		if m.assignor != "" {
			votes[m.assignor]++
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].id < members[j].id })
	// As Kafka: the assignor most members ask for.
	cg.assignor = defaultAssignor
	best := 0
	for _, name := range []string{"range", "uniform"} {
		if votes[name] > best {
			cg.assignor, best = name, votes[name]
		}
	}
	cg.target = cgAssignors[cg.assignor](members, parts, cg.target)
	cg.assignEpoch = cg.epoch
	g.c.log.Debug("consumer group target assignment", "group", g.name, "epoch", cg.epoch, "assignor", cg.assignor, "members", len(members))
}

// reconcileLocked moves m towards its target assignment (see the top of
// this file).
func (g *group) reconcileLocked(m *cgMember) {
	cg := g.cg
	target := cg.target[m.id]
	if len(m.revoking) > 0 {
		return // wait for the member to release what it is revoking
	}
	var revoke []topicPart
	for tp := range m.assigned {
		if _, ok := target[tp]; !ok {
			revoke = append(revoke, tp)
		}
	}
	if len(revoke) > 0 {
		for _, tp := range revoke {
			delete(m.assigned, tp)
			m.revoking[tp] = struct{}{}
		}
		m.dirty = true
		g.armRevokeTimerLocked(m)
		return
	}
	if m.epoch != cg.assignEpoch {
		m.prevEpoch, m.epoch = m.epoch, cg.assignEpoch
	}
	for tp := range target {
		if _, ok := m.assigned[tp]; ok || !g.freeLocked(tp, m) {
			continue
		}
		m.assigned[tp] = struct{}{}
		m.dirty = true
	}
}

// freeLocked reports whether no member other than self owns or is
// revoking tp.
func (g *group) freeLocked(tp topicPart, self *cgMember) bool {
	for _, o := range g.cg.members {
		if o == self {
			continue
		}
		if _, ok := o.assigned[tp]; ok {
			return false
		}
		if _, ok := o.revoking[tp]; ok {
			return false
		}
	}
	return true
}

func (g *group) armRevokeTimerLocked(m *cgMember) {
	if m.revokeTimer != nil {
		m.revokeTimer.Stop()
	}
	m.revokeSeq++
	seq := m.revokeSeq
	timeout := m.rebalanceTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	m.revokeTimer = time.AfterFunc(timeout, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.cg == nil || g.cg.members[m.id] != m || m.revokeSeq != seq || len(m.revoking) == 0 {
			return
		}
		g.c.log.Info("consumer group member did not revoke in time", "group", g.name, "member", m.id)
		g.removeConsumerLocked(m, "revocation timeout")
	})
}

func (c *Coordinator) resetConsumerSessionLocked(g *group, m *cgMember) {
	m.sessionSeq++
	seq := m.sessionSeq
	if m.session != nil {
		m.session.Stop()
	}
	m.session = time.AfterFunc(c.cfg.ConsumerGroupSessionTimeout, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.cg == nil || g.cg.members[m.id] != m || m.sessionSeq != seq {
			return
		}
		g.c.log.Info("consumer group member session expired", "group", g.name, "member", m.id)
		g.removeConsumerLocked(m, "session timeout")
	})
}

func stopCgMember(m *cgMember) {
	if m.session != nil {
		m.session.Stop()
	}
	if m.revokeTimer != nil {
		m.revokeTimer.Stop()
	}
	m.sessionSeq++
	m.revokeSeq++
}

// removeConsumerLocked drops m; its partitions go to others at the next
// epoch.
func (g *group) removeConsumerLocked(m *cgMember, why string) {
	cg := g.cg
	stopCgMember(m)
	delete(cg.members, m.id)
	delete(cg.target, m.id)
	if m.instanceID != "" && cg.static[m.instanceID] == m.id {
		delete(cg.static, m.instanceID)
	}
	cg.epoch++
	g.c.log.Debug("consumer group member removed", "group", g.name, "member", m.id, "reason", why, "epoch", cg.epoch)
	if len(cg.members) == 0 {
		g.emptySince = time.Now()
	}
	g.persistConsumerLocked(nil)
}

// replaceStaticConsumerLocked hands a static member's partitions and epoch
// to the instance's new member ID, without a rebalance.
func (g *group) replaceStaticConsumerLocked(old *cgMember, newID string) *cgMember {
	cg := g.cg
	stopCgMember(old)
	m := *old
	m.id = newID
	if m.id == "" {
		m.id = newMemberID(old.instanceID)
	}
	m.session, m.revokeTimer, m.left = nil, nil, false
	m.dirty = true
	delete(cg.members, old.id)
	cg.members[m.id] = &m
	cg.static[m.instanceID] = m.id
	if t, ok := cg.target[old.id]; ok {
		delete(cg.target, old.id)
		cg.target[m.id] = t
	}
	if len(m.revoking) > 0 {
		g.armRevokeTimerLocked(&m)
	}
	return &m
}

func (g *group) assignmentLocked(m *cgMember) *kmsg.ConsumerGroupHeartbeatResponseAssignment {
	a := &kmsg.ConsumerGroupHeartbeatResponseAssignment{}
	a.Default()
	byTopic := map[string][]int32{}
	for tp := range m.assigned {
		byTopic[tp.topic] = append(byTopic[tp.topic], tp.partition)
	}
	names := make([]string, 0, len(byTopic))
	for n := range byTopic {
		names = append(names, n)
	}
	sort.Strings(names)
	a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
	for _, n := range names {
		id, ok := g.c.topics.ID(n)
		if !ok {
			continue
		}
		at := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
		at.TopicID = id
		at.Partitions = byTopic[n]
		slices.Sort(at.Partitions)
		a.Topics = append(a.Topics, at)
	}
	return a
}

// stateLocked is the group state as ConsumerGroupDescribe names it.
func (cg *consumerGroup) stateLocked() string {
	switch {
	case len(cg.members) == 0:
		return "Empty"
	case cg.assignEpoch != cg.epoch:
		return "Assigning"
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignEpoch || len(m.revoking) > 0 || len(m.assigned) != len(cg.target[m.id]) {
			return "Reconciling"
		}
	}
	return "Stable"
}

// validateConsumerMemberLocked checks an OffsetCommit's (or OffsetFetch's)
// member and epoch against a consumer-protocol group. The member's previous
// epoch is accepted: a member commits what it revokes before its next
// heartbeat moves it to the new epoch, and responses can cross.
func (g *group) validateConsumerMemberLocked(memberID string, epoch int32) *kerr.Error {
	m := g.cg.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID
	}
	switch {
	case epoch > m.epoch:
		return kerr.FencedMemberEpoch
	case epoch < m.epoch && epoch != m.prevEpoch:
		return kerr.StaleMemberEpoch
	}
	return nil
}

// assignUniform spreads partitions evenly over the members subscribed to
// their topics, keeping each partition with its previous owner where that
// keeps the balance (members' counts differ by at most one among those who
// could take a partition).
func assignUniform(members []*cgMember, parts map[string]int32, prev map[string]map[topicPart]struct{}) map[string]map[topicPart]struct{} {
	out := make(map[string]map[topicPart]struct{}, len(members))
	byID := make(map[string]*cgMember, len(members))
	for _, m := range members {
		out[m.id] = map[topicPart]struct{}{}
		byID[m.id] = m
	}
	all := sortedPartitions(parts)
	owner := make(map[topicPart]string, len(all))
	subscribers := make(map[string][]*cgMember, len(parts))
	for name := range parts {
		for _, m := range members {
			if m.subscribes(name) {
				subscribers[name] = append(subscribers[name], m)
			}
		}
	}
	eligible := func(tp topicPart) []*cgMember { return subscribers[tp.topic] }
	// Keep previous owners, then place the rest on the least loaded.
	for id, tps := range prev {
		m := byID[id]
		if m == nil {
			continue
		}
		for tp := range tps {
			if n, ok := parts[tp.topic]; ok && tp.partition < n && m.subscribes(tp.topic) {
				owner[tp] = id
				out[id][tp] = struct{}{}
			}
		}
	}
	for _, tp := range all {
		if _, ok := owner[tp]; ok {
			continue
		}
		var best *cgMember
		for _, m := range eligible(tp) {
			if best == nil || len(out[m.id]) < len(out[best.id]) {
				best = m
			}
		}
		if best != nil {
			owner[tp] = best.id
			out[best.id][tp] = struct{}{}
		}
	}
	// Move partitions from the most to the least loaded eligible member
	// until no move narrows a gap of two or more. Bounded: each move
	// lowers the sum of squared counts.
	for moved := true; moved; {
		moved = false
		for _, tp := range all {
			from, ok := owner[tp]
			if !ok {
				continue
			}
			for _, m := range eligible(tp) {
				if len(out[m.id]) < len(out[from])-1 {
					delete(out[from], tp)
					out[m.id][tp] = struct{}{}
					owner[tp] = m.id
					moved = true
					break
				}
			}
		}
	}
	return out
}

// assignRange gives each member, per topic, a contiguous range of
// partitions, as Kafka's range assignor.
func assignRange(members []*cgMember, parts map[string]int32, _ map[string]map[topicPart]struct{}) map[string]map[topicPart]struct{} {
	out := make(map[string]map[topicPart]struct{}, len(members))
	for _, m := range members {
		out[m.id] = map[topicPart]struct{}{}
	}
	names := make([]string, 0, len(parts))
	for n := range parts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var subs []*cgMember
		for _, m := range members {
			if m.subscribes(name) {
				subs = append(subs, m)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := parts[name]
		per, extra := n/int32(len(subs)), n%int32(len(subs))
		p := int32(0)
		for i, m := range subs {
			count := per
			if int32(i) < extra {
				count++
			}
			for range count {
				out[m.id][topicPart{name, p}] = struct{}{}
				p++
			}
		}
	}
	return out
}

func sortedPartitions(parts map[string]int32) []topicPart {
	var all []topicPart
	for name, n := range parts {
		for p := range n {
			all = append(all, topicPart{name, p})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].topic != all[j].topic {
			return all[i].topic < all[j].topic
		}
		return all[i].partition < all[j].partition
	})
	return all
}
