package group

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka's classic group protocol: JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup.
//
// Timers: each member has one session timer and each group at most one
// rebalance timer and one initial-delay timer; every timer is stopped when
// its member leaves, when the rebalance completes, or on Close, and its
// callback rechecks state under the group's lock, so a timer that fires late
// is harmless.

type groupState int8

const (
	groupEmpty groupState = iota
	groupPreparingRebalance
	groupCompletingRebalance
	groupStable
	groupDead
)

func (s groupState) String() string {
	switch s {
	case groupEmpty:
		return "Empty"
	case groupPreparingRebalance:
		return "PreparingRebalance"
	case groupCompletingRebalance:
		return "CompletingRebalance"
	case groupStable:
		return "Stable"
	default:
		return "Dead"
	}
}

const (
	// maxPendingMembers bounds member IDs handed out with
	// MEMBER_ID_REQUIRED that have not joined yet, per group.
	maxPendingMembers = 10_000
	// maxGroupMembers bounds a group (Kafka's group.max.size).
	maxGroupMembers = 10_000
)

type group struct {
	c    *Coordinator
	name string
	// part is the group's partition of __consumer_offsets and gen the
	// ownership of it the group was loaded or created under (cluster).
	part int32
	gen  uint64

	mu           sync.Mutex // guards the following
	state        groupState
	protocolType string
	protocol     string // selected in the current generation
	generation   int32
	leader       string
	members      map[string]*member
	static       map[string]string    // instance ID -> member ID
	pending      map[string]time.Time // MEMBER_ID_REQUIRED IDs -> expiry
	emptySince   time.Time            // when the group last became Empty
	initialDelay bool                 // an initial-rebalance delay is running

	rebalanceTimer *time.Timer
	delayTimer     *time.Timer

	// offsets is the committed offsets, applied in __consumer_offsets order.
	offsets map[topicPart]committedOffset
	// inflight counts, per partition, offset writes enqueued against this
	// group object and not yet applied (finishOffsets); deletedAt holds the
	// log offset of tombstones applied while such writes were in flight,
	// so an earlier commit applied late does not resurrect the offset.
	inflight  map[topicPart]int
	deletedAt map[topicPart]int64
	// deleted is set by DeleteGroups: writes enqueued before the deletion
	// are tombstoned by it and must not be applied to a new group.
	deleted bool
	// txnOffsets is the transactional offsets pending (durable, their
	// transaction not ended yet), by producer ID: at most one per
	// partition and producer, the latest in the log (txn.go). Allocated
	// on first use.
	txnOffsets map[int64]map[topicPart]committedOffset

	// pendingMeta is membership records queued for the log (metadata.go);
	// cgGroupPrint and cgMemberPrint fingerprint the KIP-848 state last
	// queued, to write only what changes. While loading: loadedMeta and
	// loadedCg are the latest classic and KIP-848 records met, the last
	// at log offsets loadedMetaAt and loadedCgAt.
	pendingMeta   []Record
	cgGroupPrint  uint64
	cgMemberPrint map[string]uint64
	loadedMeta    *kmsg.GroupMetadataValue
	loadedCg      *loadedConsumer
	loadedMetaAt  int64
	loadedCgAt    int64

	// cg is the KIP-848 consumer-protocol state (group_consumer.go); nil
	// until a member heartbeats with ConsumerGroupHeartbeat.
	cg *consumerGroup
}

// activeLocked reports whether the group has members of either protocol or
// a classic rebalance under way.
func (g *group) activeLocked() bool {
	return len(g.members) > 0 || g.state != groupEmpty || g.cg != nil && len(g.cg.members) > 0
}

type topicPart struct {
	topic     string
	partition int32
}

type member struct {
	id, instanceID       string
	clientID, clientHost string
	protocolType         string
	protocols            []kmsg.JoinGroupRequestProtocol
	sessionTimeout       time.Duration
	rebalanceTimeout     time.Duration
	assignment           []byte

	// joinWait is set while the member waits for the join round to
	// complete; syncWait while it waits for the leader's assignment.
	joinWait   chan *kmsg.JoinGroupResponse
	joinVer    int16
	syncWait   chan *kmsg.SyncGroupResponse
	joined     bool // rejoined during the current PreparingRebalance
	session    *time.Timer
	sessionSeq uint64 // bumped on every reset so a stale fire is ignored
}

// group returns the named group, creating it when create is set. It returns
// nil if the group does not exist (and create is false), the coordinator
// is closed, or (in a cluster) this broker does not serve the group's
// partition of __consumer_offsets.
func (c *Coordinator) group(name string, create bool) *group {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	g := c.groups[name]
	if g == nil && create && c.unavailableLocked(name) == nil {
		g = c.newGroupLocked(name)
	}
	return g
}

// newGroupLocked creates and registers a group; c.mu is held.
func (c *Coordinator) newGroupLocked(name string) *group {
	g := c.newGroup(name)
	if o := c.owned[g.part]; o != nil {
		g.gen = o.gen
	}
	c.groups[name] = g
	return g
}

// newGroup returns an empty group, not registered.
func (c *Coordinator) newGroup(name string) *group {
	return &group{
		c:          c,
		name:       name,
		part:       c.partitionOf(name),
		members:    make(map[string]*member),
		static:     make(map[string]string),
		pending:    make(map[string]time.Time),
		offsets:    make(map[topicPart]committedOffset),
		inflight:   make(map[topicPart]int),
		deletedAt:  make(map[topicPart]int64),
		emptySince: time.Now(),
	}
}

// appendLock returns the lock serializing name's __consumer_offsets
// writes.
func (c *Coordinator) appendLock(name string) *sync.Mutex {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * 16777619
	}
	return &c.appendLocks[h%uint32(len(c.appendLocks))]
}

// dropExpiredPendingLocked forgets MEMBER_ID_REQUIRED IDs whose join
// window has passed.
func (g *group) dropExpiredPendingLocked(now time.Time) {
	for pid, exp := range g.pending {
		if now.After(exp) {
			delete(g.pending, pid)
		}
	}
}

// lockGroup returns the named group locked, or nil. A group found Dead (it
// was deleted between the lookup and the lock) is looked up again.
func (c *Coordinator) lockGroup(name string, create bool) *group {
	for {
		g := c.group(name, create)
		if g == nil {
			return nil
		}
		g.mu.Lock()
		if g.state != groupDead {
			return g
		}
		g.mu.Unlock()
	}
}

func (c *Coordinator) snapshot() []*group {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		out = append(out, g)
	}
	return out
}

func newMemberID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	if prefix == "" {
		prefix = "member"
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

func (g *group) stopGroupTimersLocked() {
	if g.rebalanceTimer != nil {
		g.rebalanceTimer.Stop()
		g.rebalanceTimer = nil
	}
	if g.delayTimer != nil {
		g.delayTimer.Stop()
		g.delayTimer = nil
	}
	g.initialDelay = false
}

// resetSessionLocked (re)arms m's session timer.
func (g *group) resetSessionLocked(m *member) {
	m.sessionSeq++
	seq := m.sessionSeq
	if m.session != nil {
		m.session.Stop()
	}
	m.session = time.AfterFunc(m.sessionTimeout, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.members[m.id] != m || m.sessionSeq != seq || m.joinWait != nil {
			return // replaced, reset, or parked in a join round
		}
		g.c.log.Info("group member session expired", "group", g.name, "member", m.id)
		g.removeMemberLocked(m, "session timeout")
	})
}

// failWaitersLocked answers m's parked join or sync with code.
func (g *group) failWaitersLocked(m *member, code *kerr.Error) {
	if m.joinWait != nil {
		resp := kmsg.NewPtrJoinGroupResponse()
		resp.SetVersion(m.joinVer)
		resp.ErrorCode, resp.Generation, resp.MemberID = code.Code, -1, m.id
		m.joinWait <- resp
		m.joinWait = nil
	}
	if m.syncWait != nil {
		resp := kmsg.NewPtrSyncGroupResponse()
		resp.ErrorCode = code.Code
		m.syncWait <- resp
		m.syncWait = nil
	}
}

// dropMemberLocked takes m out of the group: its session ends and a
// parked join or sync gets UNKNOWN_MEMBER_ID.
func (g *group) dropMemberLocked(m *member) {
	if m.session != nil {
		m.session.Stop()
	}
	m.sessionSeq++
	g.failWaitersLocked(m, kerr.UnknownMemberID)
	delete(g.members, m.id)
	if m.instanceID != "" && g.static[m.instanceID] == m.id {
		delete(g.static, m.instanceID)
	}
	if g.leader == m.id {
		g.leader = ""
	}
}

// removeMemberLocked drops m and rebalances the rest.
func (g *group) removeMemberLocked(m *member, why string) {
	g.dropMemberLocked(m)
	switch g.state {
	case groupStable, groupCompletingRebalance:
		g.prepareRebalanceLocked(why)
		g.tryCompleteJoinLocked()
	case groupPreparingRebalance:
		g.tryCompleteJoinLocked()
	}
}

// prepareRebalanceLocked moves the group to PreparingRebalance: members
// parked in SyncGroup are told to rejoin, and the round ends when every
// member has rejoined or the longest rebalance timeout passes.
func (g *group) prepareRebalanceLocked(why string) {
	fromEmpty := g.state == groupEmpty
	if g.state == groupPreparingRebalance {
		return
	}
	for _, m := range g.members {
		if m.syncWait != nil {
			resp := kmsg.NewPtrSyncGroupResponse()
			resp.ErrorCode = kerr.RebalanceInProgress.Code
			m.syncWait <- resp
			m.syncWait = nil
		}
		m.joined = false
	}
	g.state = groupPreparingRebalance
	g.c.log.Debug("group rebalancing", "group", g.name, "generation", g.generation, "reason", why)
	var timeout time.Duration
	for _, m := range g.members {
		timeout = max(timeout, m.rebalanceTimeout)
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	g.stopGroupTimersLocked()
	g.rebalanceTimer = time.AfterFunc(timeout, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.state != groupPreparingRebalance {
			return
		}
		g.initialDelay = false
		g.completeJoinLocked()
	})
	if delay := g.c.cfg.GroupInitialRebalanceDelay; fromEmpty && delay > 0 {
		g.initialDelay = true
		g.delayTimer = time.AfterFunc(min(delay, timeout), func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.initialDelay = false
			if g.state == groupPreparingRebalance {
				g.tryCompleteJoinLocked()
			}
		})
	}
}

// tryCompleteJoinLocked completes the join round once every member has
// rejoined.
func (g *group) tryCompleteJoinLocked() {
	if g.state != groupPreparingRebalance || g.initialDelay {
		return
	}
	for _, m := range g.members {
		if !m.joined {
			return
		}
	}
	g.completeJoinLocked()
}

// completeJoinLocked ends the join round: members that did not rejoin are
// removed, a protocol is selected, the generation advances and every joined
// member is answered (the leader with the member list).
func (g *group) completeJoinLocked() {
	g.stopGroupTimersLocked()
	for _, m := range g.members {
		if !m.joined {
			g.dropMemberLocked(m)
		}
	}
	g.generation++
	if len(g.members) == 0 {
		g.state, g.protocol, g.leader = groupEmpty, "", ""
		g.emptySince = time.Now()
		g.persistMetadataLocked()
		return
	}
	if _, ok := g.members[g.leader]; !ok {
		g.leader = ""
		for id, m := range g.members {
			if m.joinWait != nil {
				g.leader = id
				break
			}
		}
		if g.leader == "" {
			for id := range g.members {
				g.leader = id
				break
			}
		}
	}
	g.protocol = g.selectProtocolLocked()
	g.state = groupCompletingRebalance
	for _, m := range g.members {
		m.assignment = nil
		if m.joinWait == nil {
			continue
		}
		m.joinWait <- g.joinResponseLocked(m, m.joinVer, false)
		m.joinWait = nil
		g.resetSessionLocked(m)
	}
}

// selectProtocolLocked picks the first protocol, in the leader's order of
// preference, that every member supports.
func (g *group) selectProtocolLocked() string {
	leader := g.members[g.leader]
	if leader == nil {
		return ""
	}
	for _, p := range leader.protocols {
		all := true
		for _, m := range g.members {
			if !supports(m, p.Name) {
				all = false
				break
			}
		}
		if all {
			return p.Name
		}
	}
	return ""
}

func supports(m *member, name string) bool {
	for _, p := range m.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func protocolMetadata(m *member, name string) []byte {
	for _, p := range m.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

func (g *group) joinResponseLocked(m *member, version int16, skipAssignment bool) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.SetVersion(version)
	resp.Generation = g.generation
	pt, proto := g.protocolType, g.protocol
	resp.ProtocolType, resp.Protocol = &pt, &proto
	resp.LeaderID, resp.MemberID = g.leader, m.id
	resp.SkipAssignment = skipAssignment
	if m.id == g.leader {
		for _, o := range g.members {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			if o.instanceID != "" {
				id := o.instanceID
				jm.InstanceID = &id
			}
			jm.ProtocolMetadata = protocolMetadata(o, g.protocol)
			resp.Members = append(resp.Members, jm)
		}
	}
	return resp
}

// joinResult is either an immediate response or a channel to wait on.
type joinResult struct {
	resp *kmsg.JoinGroupResponse
	wait chan *kmsg.JoinGroupResponse
}

func joinErr(version int16, code *kerr.Error, memberID string) joinResult {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.SetVersion(version)
	resp.ErrorCode, resp.Generation, resp.MemberID = code.Code, -1, memberID
	return joinResult{resp: resp}
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Metadata, b[i].Metadata) {
			return false
		}
	}
	return true
}

// join runs one JoinGroup request.
func (c *Coordinator) join(r *kmsg.JoinGroupRequest, clientID, clientHost string) joinResult {
	v := r.Version
	cfg := &c.cfg
	session := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
	if session < cfg.GroupMinSessionTimeout || session > cfg.GroupMaxSessionTimeout {
		return joinErr(v, kerr.InvalidSessionTimeout, r.MemberID)
	}
	rebalance := session
	if v >= 1 && r.RebalanceTimeoutMillis > 0 {
		rebalance = time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
	}
	if r.Group == "" {
		return joinErr(v, kerr.InvalidGroupID, r.MemberID)
	}
	if r.ProtocolType == "" || len(r.Protocols) == 0 {
		return joinErr(v, kerr.InconsistentGroupProtocol, r.MemberID)
	}
	var instanceID string
	if r.InstanceID != nil {
		instanceID = *r.InstanceID
	}
	g := c.lockGroup(r.Group, r.MemberID == "")
	if g == nil {
		if code := c.unavailable(r.Group); code != nil {
			return joinErr(v, code, r.MemberID)
		}
		return joinErr(v, kerr.UnknownMemberID, r.MemberID)
	}
	defer g.mu.Unlock()

	if g.cg != nil {
		if len(g.cg.members) > 0 {
			return joinErr(v, kerr.InconsistentGroupProtocol, r.MemberID)
		}
		g.cg = nil // the group turns classic
	}
	if len(g.members) > 0 || g.state != groupEmpty {
		if g.protocolType != "" && r.ProtocolType != g.protocolType {
			return joinErr(v, kerr.InconsistentGroupProtocol, r.MemberID)
		}
		if !g.compatibleLocked(r.Protocols, r.MemberID) {
			return joinErr(v, kerr.InconsistentGroupProtocol, r.MemberID)
		}
	}

	// Static membership (KIP-345).
	if instanceID != "" {
		oldID, known := g.static[instanceID]
		switch {
		case known && r.MemberID != "" && r.MemberID != oldID:
			return joinErr(v, kerr.FencedInstanceID, r.MemberID)
		case known && r.MemberID == "":
			return g.replaceStaticLocked(g.members[oldID], r, session, rebalance, clientID, clientHost)
		case !known && r.MemberID != "":
			return joinErr(v, kerr.UnknownMemberID, r.MemberID)
		case !known:
			if len(g.members) >= maxGroupMembers {
				return joinErr(v, kerr.GroupMaxSizeReached, r.MemberID)
			}
			m := &member{id: newMemberID(instanceID), instanceID: instanceID}
			g.static[instanceID] = m.id
			return g.addOrUpdateLocked(m, r, session, rebalance, clientID, clientHost)
		}
		return g.addOrUpdateLocked(g.members[oldID], r, session, rebalance, clientID, clientHost)
	}

	if r.MemberID == "" {
		if len(g.members) >= maxGroupMembers {
			return joinErr(v, kerr.GroupMaxSizeReached, r.MemberID)
		}
		id := newMemberID(clientID)
		if v >= 4 {
			// KIP-394: hand out the ID first so a client that dies
			// before rejoining leaves no member behind.
			now := time.Now()
			g.dropExpiredPendingLocked(now)
			if len(g.pending) >= maxPendingMembers {
				return joinErr(v, kerr.GroupMaxSizeReached, "")
			}
			g.pending[id] = now.Add(session)
			return joinErr(v, kerr.MemberIDRequired, id)
		}
		return g.addOrUpdateLocked(&member{id: id}, r, session, rebalance, clientID, clientHost)
	}
	m := g.members[r.MemberID]
	if m == nil {
		exp, ok := g.pending[r.MemberID]
		delete(g.pending, r.MemberID)
		if !ok || time.Now().After(exp) {
			return joinErr(v, kerr.UnknownMemberID, r.MemberID)
		}
		if len(g.members) >= maxGroupMembers {
			return joinErr(v, kerr.GroupMaxSizeReached, r.MemberID)
		}
		m = &member{id: r.MemberID}
	} else if m.instanceID != "" {
		return joinErr(v, kerr.FencedInstanceID, r.MemberID)
	}
	return g.addOrUpdateLocked(m, r, session, rebalance, clientID, clientHost)
}

// unavailable returns the error for a request of group name this
// coordinator cannot serve: COORDINATOR_NOT_AVAILABLE once closed,
// NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) when, in a cluster,
// the group's partition of __consumer_offsets is not served here; nil
// otherwise.
func (c *Coordinator) unavailable(name string) *kerr.Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unavailableLocked(name)
}

func (c *Coordinator) unavailableLocked(name string) *kerr.Error {
	if c.closed {
		return kerr.CoordinatorNotAvailable
	}
	if !c.cfg.Cluster {
		return nil
	}
	p := c.partitionOf(name)
	if p < 0 {
		return kerr.CoordinatorNotAvailable
	}
	switch o := c.owned[p]; {
	case o == nil:
		return kerr.NotCoordinator
	case !o.loaded:
		return kerr.CoordinatorLoadInProgress
	}
	return nil
}

// ownsLocked reports whether a group of partition part created under
// ownership gen may still be changed: standalone always, in a cluster
// while that ownership lasts. c.mu must be held.
func (c *Coordinator) ownsLocked(part int32, gen uint64) bool {
	if !c.cfg.Cluster {
		return true
	}
	o := c.owned[part]
	return o != nil && o.loaded && o.gen == gen
}

// compatibleLocked reports whether protocols shares a protocol with every
// current member other than self.
func (g *group) compatibleLocked(protocols []kmsg.JoinGroupRequestProtocol, self string) bool {
	for _, p := range protocols {
		all := true
		for id, m := range g.members {
			if id != self && !supports(m, p.Name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// addOrUpdateLocked joins m (new or known) to the group.
func (g *group) addOrUpdateLocked(m *member, r *kmsg.JoinGroupRequest, session, rebalance time.Duration, clientID, clientHost string) joinResult {
	_, known := g.members[m.id]
	changed := !known || !sameProtocols(m.protocols, r.Protocols)
	m.protocols = r.Protocols
	m.protocolType = r.ProtocolType
	m.sessionTimeout, m.rebalanceTimeout = session, rebalance
	m.clientID, m.clientHost = clientID, clientHost
	if !known {
		g.members[m.id] = m
		if g.protocolType == "" || len(g.members) == 1 {
			g.protocolType = r.ProtocolType
		}
	}
	g.resetSessionLocked(m)

	switch g.state {
	case groupCompletingRebalance, groupStable:
		if known && !changed && (g.state == groupCompletingRebalance || m.id != g.leader) {
			// A follower repeating its join: answer with the current
			// generation without disturbing the group.
			return joinResult{resp: g.joinResponseLocked(m, r.Version, false)}
		}
		g.prepareRebalanceLocked("member joined or changed its metadata")
	case groupEmpty, groupDead:
		g.prepareRebalanceLocked("first member joined")
	}
	if m.joinWait != nil {
		// A duplicate join while parked: the older request is superseded.
		g.failWaitersLocked(m, kerr.UnknownMemberID)
	}
	m.joinWait = make(chan *kmsg.JoinGroupResponse, 1)
	m.joinVer = r.Version
	m.joined = true
	wait := m.joinWait
	g.tryCompleteJoinLocked()
	return joinResult{wait: wait}
}

// replaceStaticLocked handles a static member rejoining with no member ID
// (a restart): it gets a new ID and the old ID is fenced. In a Stable group
// whose selected protocol stays the same this costs no rebalance: the member gets the
// current generation and, in SyncGroup, its old assignment.
func (g *group) replaceStaticLocked(old *member, r *kmsg.JoinGroupRequest, session, rebalance time.Duration, clientID, clientHost string) joinResult {
	m := &member{id: newMemberID(old.instanceID), instanceID: old.instanceID}
	if old.session != nil {
		old.session.Stop()
	}
	old.sessionSeq++
	g.failWaitersLocked(old, kerr.FencedInstanceID)
	delete(g.members, old.id)
	m.protocols, m.protocolType = old.protocols, old.protocolType
	m.assignment, m.joined = old.assignment, old.joined
	g.members[m.id] = m
	g.static[m.instanceID] = m.id
	wasLeader := g.leader == old.id
	if wasLeader {
		g.leader = m.id
	}
	// As Kafka: no rebalance when the protocol the group would select is
	// unchanged (client-side metadata such as owned partitions may differ
	// after a restart).
	m.protocols = r.Protocols
	if g.state == groupStable && g.selectProtocolLocked() == g.protocol {
		m.sessionTimeout, m.rebalanceTimeout = session, rebalance
		m.clientID, m.clientHost = clientID, clientHost
		g.resetSessionLocked(m)
		resp := g.joinResponseLocked(m, r.Version, wasLeader && r.Version >= 9)
		if wasLeader && r.Version < 9 {
			// Pre-KIP-814 clients cannot skip the assignment; they see
			// the old leader ID and keep their assignment.
			resp.LeaderID, resp.Members = old.id, nil
		}
		g.persistMetadataLocked()
		return joinResult{resp: resp}
	}
	return g.addOrUpdateLocked(m, r, session, rebalance, clientID, clientHost)
}

// syncResult is either an immediate response or a channel to wait on.
type syncResult struct {
	resp *kmsg.SyncGroupResponse
	wait chan *kmsg.SyncGroupResponse
}

func syncErr(code *kerr.Error) syncResult {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.ErrorCode = code.Code
	return syncResult{resp: resp}
}

// validateMemberLocked applies the member, instance and generation checks
// shared by SyncGroup, Heartbeat and OffsetCommit.
func (g *group) validateMemberLocked(memberID string, instanceID *string, generation int32) *kerr.Error {
	if instanceID != nil {
		if id, ok := g.static[*instanceID]; ok && id != memberID {
			return kerr.FencedInstanceID
		}
	}
	m := g.members[memberID]
	if m == nil {
		return kerr.UnknownMemberID
	}
	if instanceID != nil && m.instanceID != *instanceID {
		return kerr.FencedInstanceID
	}
	if generation != g.generation {
		return kerr.IllegalGeneration
	}
	return nil
}

func (c *Coordinator) sync(r *kmsg.SyncGroupRequest) syncResult {
	g := c.lockGroup(r.Group, false)
	if g == nil {
		return syncErr(kerr.UnknownMemberID)
	}
	defer g.mu.Unlock()
	if err := g.validateMemberLocked(r.MemberID, r.InstanceID, r.Generation); err != nil {
		return syncErr(err)
	}
	if (r.ProtocolType != nil && *r.ProtocolType != g.protocolType) || (r.Protocol != nil && *r.Protocol != g.protocol) {
		return syncErr(kerr.InconsistentGroupProtocol)
	}
	m := g.members[r.MemberID]
	g.resetSessionLocked(m)
	switch g.state {
	case groupPreparingRebalance:
		return syncErr(kerr.RebalanceInProgress)
	case groupStable:
		return syncResult{resp: g.syncResponseLocked(m)}
	case groupCompletingRebalance:
	default:
		return syncErr(kerr.UnknownMemberID)
	}
	if m.id == g.leader {
		for _, a := range r.GroupAssignment {
			if o := g.members[a.MemberID]; o != nil {
				o.assignment = a.MemberAssignment
			}
		}
		g.state = groupStable
		g.stopGroupTimersLocked()
		g.persistMetadataLocked()
		for _, o := range g.members {
			if o.syncWait != nil {
				o.syncWait <- g.syncResponseLocked(o)
				o.syncWait = nil
			}
		}
		return syncResult{resp: g.syncResponseLocked(m)}
	}
	if m.syncWait != nil {
		g.failWaitersLocked(m, kerr.RebalanceInProgress)
	}
	m.syncWait = make(chan *kmsg.SyncGroupResponse, 1)
	return syncResult{wait: m.syncWait}
}

func (g *group) syncResponseLocked(m *member) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	pt, proto := g.protocolType, g.protocol
	resp.ProtocolType, resp.Protocol = &pt, &proto
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

func (c *Coordinator) heartbeat(r *kmsg.HeartbeatRequest) *kerr.Error {
	g := c.lockGroup(r.Group, false)
	if g == nil {
		return kerr.UnknownMemberID
	}
	defer g.mu.Unlock()
	if err := g.validateMemberLocked(r.MemberID, r.InstanceID, r.Generation); err != nil {
		return err
	}
	g.resetSessionLocked(g.members[r.MemberID])
	if g.state == groupPreparingRebalance {
		return kerr.RebalanceInProgress
	}
	return nil
}

// leave removes members; it returns the group error and per-member errors.
func (c *Coordinator) leave(groupName string, ids []kmsg.LeaveGroupRequestMember) (*kerr.Error, []*kerr.Error) {
	g := c.lockGroup(groupName, false)
	if g == nil {
		return kerr.UnknownMemberID, nil
	}
	defer g.mu.Unlock()
	errs := make([]*kerr.Error, len(ids))
	for i, lm := range ids {
		var m *member
		if lm.InstanceID != nil {
			id, ok := g.static[*lm.InstanceID]
			switch {
			case !ok:
				errs[i] = kerr.UnknownMemberID
				continue
			case lm.MemberID != "" && lm.MemberID != id:
				errs[i] = kerr.FencedInstanceID
				continue
			}
			m = g.members[id]
		} else {
			m = g.members[lm.MemberID]
		}
		if m == nil {
			errs[i] = kerr.UnknownMemberID
			continue
		}
		g.removeMemberLocked(m, "member left")
	}
	return nil, errs
}
