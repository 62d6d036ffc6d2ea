package group

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group membership is kept in __consumer_offsets too, as Kafka keeps it, so
// a coordinator that loads a group (after a restart, or taking up its
// partition from a broker that died) serves its members where they were,
// with fresh session timers: they go on heartbeating and committing, with
// no rebalance.
//
//   - A classic group: a kmsg.GroupMetadataKey v2 record whose value
//     (GroupMetadataValue v3) is the generation, selected protocol, leader
//     and members with their assignments, written when a rebalance
//     completes (the leader's SyncGroup makes the group Stable), when a
//     static member is replaced without one, and when the group empties.
//   - A KIP-848 group: a record of key version consumerKeyVersion whose
//     value is its epochs, target assignment and members (epochs,
//     subscriptions, what each owns and is revoking), as JSON, written
//     after each heartbeat or timer that changed it.
//
// DeleteGroups tombstones both.

// persistMetadataLocked writes g's classic metadata in the background.
// g.mu is held.
func (g *group) persistMetadataLocked() {
	g.persistLocked(g.metadataRecordLocked())
}

// persistLocked queues recs, changes of g's membership, and writes them in
// the background. Queued records are written in the order they were
// queued: each writer takes, under the group's append lock, whatever is
// queued then. A write that fails makes the next KIP-848 persist write the
// whole group again. g.mu is held.
func (g *group) persistLocked(recs ...Record) {
	g.pendingMeta = append(g.pendingMeta, recs...)
	c := g.c
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
		defer cancel()
		w, err := g.appendPending(ctx)
		if w == nil && err == nil {
			return // nothing left to write
		}
		if err == nil {
			err = w.Wait(ctx)
		}
		if err != nil {
			c.log.Debug("writing group membership failed; it is written whole at its next change", "group", g.name, "err", err)
			g.mu.Lock()
			g.cgGroupPrint, g.cgMemberPrint = 0, nil
			g.mu.Unlock()
		}
	}()
}

// appendPending appends, under the group's append lock (never held while
// waiting for durability), what is queued for g; nil and no error when
// nothing is, or the group is gone or no longer served here.
func (g *group) appendPending(ctx context.Context) (Write, error) {
	c := g.c
	al := c.appendLock(g.name)
	al.Lock()
	defer al.Unlock()
	g.mu.Lock()
	recs := g.pendingMeta
	g.pendingMeta = nil
	stale := g.deleted || g.state == groupDead
	g.mu.Unlock()
	if len(recs) == 0 || stale {
		return nil, nil // taken by an earlier writer, or the group is gone
	}
	p := c.partitionOf(g.name)
	c.mu.Lock()
	owned := p >= 0 && !c.closed && c.ownsLocked(p, g.gen)
	c.mu.Unlock()
	if !owned {
		return nil, nil // the partition moved; the new leader has what was durable
	}
	return c.olog.Append(ctx, p, recs)
}

// metadataRecordLocked is g's metadata record. g.mu is held.
func (g *group) metadataRecordLocked() Record {
	k := kmsg.GroupMetadataKey{Version: classicKeyVersion, Group: g.name}
	v := kmsg.NewGroupMetadataValue()
	v.Version = 3
	v.ProtocolType, v.Generation = g.protocolType, g.generation
	v.CurrentStateTimestamp = time.Now().UnixMilli()
	if g.protocol != "" {
		p := g.protocol
		v.Protocol = &p
	}
	if g.leader != "" {
		l := g.leader
		v.Leader = &l
	}
	for _, m := range g.members {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID, vm.ClientID, vm.ClientHost = m.id, m.clientID, m.clientHost
		if m.instanceID != "" {
			id := m.instanceID
			vm.InstanceID = &id
		}
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout.Milliseconds())
		vm.SessionTimeoutMillis = int32(m.sessionTimeout.Milliseconds())
		vm.Subscription = protocolMetadata(m, g.protocol)
		vm.Assignment = m.assignment
		v.Members = append(v.Members, vm)
	}
	return Record{Key: k.AppendTo(nil), Value: v.AppendTo(nil)}
}

// metadataTombstone is the record that deletes name's metadata of key
// version v (classicKeyVersion or consumerKeyVersion).
func metadataTombstone(name string, v int16) Record {
	k := kmsg.GroupMetadataKey{Version: v, Group: name}
	return Record{Key: k.AppendTo(nil)}
}

const (
	// classicKeyVersion is Kafka's GroupMetadataKey version.
	classicKeyVersion = 2
	// consumerKeyVersion keys a KIP-848 group's epochs (a key laid out as
	// GroupMetadataKey) and consumerMemberKeyVersion one member's state
	// (the same, then the member ID as a string), with versions of
	// Chronik's own (Kafka's records of the consumer protocol have no
	// schema in kmsg) and JSON values. Readers skip key versions they do
	// not know, as this one skips Kafka's 3 to 8. One record per member
	// keeps a heartbeat's write to what it changed.
	consumerKeyVersion       = 100
	consumerMemberKeyVersion = 101
)

// memberKey is the key of member's record in group.
func memberKey(group, member string) []byte {
	k := kmsg.GroupMetadataKey{Version: consumerMemberKeyVersion, Group: group}
	b := k.AppendTo(nil)
	b = binary.BigEndian.AppendUint16(b, uint16(len(member)))
	return append(b, member...)
}

// parseMemberKey returns the group and member of a memberKey.
func parseMemberKey(key []byte) (group, member string, ok bool) {
	var k kmsg.GroupMetadataKey
	if k.ReadFrom(key) != nil {
		return "", "", false
	}
	rest := key[2+2+len(k.Group):]
	if len(rest) < 2 || int(binary.BigEndian.Uint16(rest)) != len(rest)-2 {
		return "", "", false
	}
	return k.Group, string(rest[2:]), true
}

// cgState is a KIP-848 group's epochs as written to the log.
type cgState struct {
	Epoch       int32  `json:"epoch"`
	AssignEpoch int32  `json:"assign_epoch"`
	MetaSig     string `json:"meta_sig,omitempty"`
}

// cgMemberState is one member's state as written to the log.
type cgMemberState struct {
	InstanceID         string    `json:"instance_id,omitempty"`
	RackID             string    `json:"rack_id,omitempty"`
	ClientID           string    `json:"client_id,omitempty"`
	ClientHost         string    `json:"client_host,omitempty"`
	Epoch              int32     `json:"epoch"`
	PrevEpoch          int32     `json:"prev_epoch"`
	Topics             []string  `json:"topics,omitempty"`
	Regex              string    `json:"regex,omitempty"`
	Assignor           string    `json:"assignor,omitempty"`
	RebalanceTimeoutMs int64     `json:"rebalance_timeout_ms"`
	Assigned           []tpState `json:"assigned,omitempty"`
	Revoking           []tpState `json:"revoking,omitempty"`
	Target             []tpState `json:"target,omitempty"`
	Left               bool      `json:"left,omitempty"`
}

type tpState struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
}

func tpStates(set map[topicPart]struct{}) []tpState {
	out := make([]tpState, 0, len(set))
	for tp := range set {
		out = append(out, tpState{tp.topic, tp.partition})
	}
	slices.SortFunc(out, func(a, b tpState) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

func tpSet(states []tpState) map[topicPart]struct{} {
	out := make(map[topicPart]struct{}, len(states))
	for _, s := range states {
		out[topicPart{s.Topic, s.Partition}] = struct{}{}
	}
	return out
}

// persistConsumerLocked writes what changed of g's KIP-848 state since
// the last write: the group's epochs, and the records of members that
// changed, joined or left. Only m (the member a heartbeat was about, or
// nil) is checked unless the epochs or the member count changed: a
// retarget changes every member's target, and it moves the epoch. g.mu is
// held.
func (g *group) persistConsumerLocked(m *cgMember) {
	cg := g.cg
	if cg == nil {
		return
	}
	var recs []Record
	gs := cgState{Epoch: cg.epoch, AssignEpoch: cg.assignEpoch, MetaSig: cg.metaSig}
	all := false
	if pr := printOf(gs); pr != g.cgGroupPrint {
		value, _ := json.Marshal(gs)
		k := kmsg.GroupMetadataKey{Version: consumerKeyVersion, Group: g.name}
		recs = append(recs, Record{Key: k.AppendTo(nil), Value: value})
		g.cgGroupPrint, all = pr, true
	}
	if g.cgMemberPrint == nil {
		g.cgMemberPrint = map[string]uint64{}
		all = true
	}
	if len(g.cgMemberPrint) != len(cg.members) {
		all = true
	}
	check := func(m *cgMember) {
		st := memberState(m, cg.target[m.id])
		if pr := printOf(st); pr != g.cgMemberPrint[m.id] {
			value, _ := json.Marshal(st)
			recs = append(recs, Record{Key: memberKey(g.name, m.id), Value: value})
			g.cgMemberPrint[m.id] = pr
		}
	}
	if all {
		for _, m := range cg.members {
			check(m)
		}
		for id := range g.cgMemberPrint {
			if cg.members[id] == nil {
				recs = append(recs, Record{Key: memberKey(g.name, id)}) // gone
				delete(g.cgMemberPrint, id)
			}
		}
	} else if m != nil && cg.members[m.id] == m {
		check(m)
	}
	if len(recs) > 0 {
		g.persistLocked(recs...)
	}
}

func memberState(m *cgMember, target map[topicPart]struct{}) cgMemberState {
	st := cgMemberState{InstanceID: m.instanceID, RackID: m.rackID, ClientID: m.clientID, ClientHost: m.clientHost,
		Epoch: m.epoch, PrevEpoch: m.prevEpoch, Topics: m.topics, Assignor: m.assignor,
		RebalanceTimeoutMs: m.rebalanceTimeout.Milliseconds(), Assigned: tpStates(m.assigned), Revoking: tpStates(m.revoking),
		Target: tpStates(target), Left: m.left}
	if m.regex != nil {
		st.Regex = m.regex.String()
	}
	return st
}

// printOf fingerprints a state for the change check (never 0).
func printOf(v any) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%v", v)
	return h.Sum64() | 1
}

// loadedConsumer is a KIP-848 group's records met while loading.
type loadedConsumer struct {
	group   *cgState
	members map[string]cgMemberState
}

// replayConsumer applies one KIP-848 record (key version v) to what
// loading met of g.
func (g *group) replayConsumer(v int16, member string, value []byte) {
	if g.loadedCg == nil {
		g.loadedCg = &loadedConsumer{members: map[string]cgMemberState{}}
	}
	lc := g.loadedCg
	if v == consumerKeyVersion {
		lc.group = nil
		var gs cgState
		if value != nil && json.Unmarshal(value, &gs) == nil {
			lc.group = &gs
		}
		return
	}
	delete(lc.members, member)
	var ms cgMemberState
	if value != nil && json.Unmarshal(value, &ms) == nil {
		lc.members[member] = ms
	}
}

// restoreConsumerLocked rebuilds g's KIP-848 state from the log: members
// keep their epochs and partitions, with fresh session timers (and
// revocation timers for what they are revoking). g.mu is held (or g is not
// published yet).
func (g *group) restoreConsumerLocked(lc *loadedConsumer) {
	if lc.group == nil || len(lc.members) == 0 {
		return
	}
	cg := newConsumerGroup()
	cg.epoch, cg.assignEpoch, cg.metaSig = lc.group.Epoch, lc.group.AssignEpoch, lc.group.MetaSig
	for id, ms := range lc.members {
		m := &cgMember{id: id, instanceID: ms.InstanceID, rackID: ms.RackID, clientID: ms.ClientID, clientHost: ms.ClientHost,
			epoch: ms.Epoch, prevEpoch: ms.PrevEpoch, topics: ms.Topics, assignor: ms.Assignor,
			rebalanceTimeout: time.Duration(ms.RebalanceTimeoutMs) * time.Millisecond,
			assigned:         tpSet(ms.Assigned), revoking: tpSet(ms.Revoking), left: ms.Left}
		if ms.Regex != "" {
			re, err := regexp.Compile(ms.Regex) // as compiled from the request: anchored
			if err != nil {
				continue
			}
			m.regex = re
		}
		cg.members[id] = m
		if len(ms.Target) > 0 {
			cg.target[id] = tpSet(ms.Target)
		}
		if m.instanceID != "" {
			cg.static[m.instanceID] = id
		}
	}
	g.cg = cg
	// What was loaded is what the log holds: the next persist writes
	// changes only.
	g.cgGroupPrint = printOf(*lc.group)
	g.cgMemberPrint = map[string]uint64{}
	for id, m := range cg.members {
		g.cgMemberPrint[id] = printOf(memberState(m, cg.target[id]))
		g.c.resetConsumerSessionLocked(g, m)
		if len(m.revoking) > 0 {
			g.armRevokeTimerLocked(m)
		}
	}
}

// restoreLocked rebuilds g's membership from its metadata record: a group
// with members comes back Stable in its generation, each member's session
// timer armed afresh. g.mu is held (or g is not published yet).
func (g *group) restoreLocked(v *kmsg.GroupMetadataValue) {
	g.protocolType, g.generation = v.ProtocolType, v.Generation
	g.protocol, g.leader = "", ""
	if v.Protocol != nil {
		g.protocol = *v.Protocol
	}
	if v.Leader != nil {
		g.leader = *v.Leader
	}
	g.members = make(map[string]*member, len(v.Members))
	g.static = make(map[string]string)
	for _, vm := range v.Members {
		m := &member{
			id: vm.MemberID, clientID: vm.ClientID, clientHost: vm.ClientHost,
			protocolType:     v.ProtocolType,
			protocols:        []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}},
			sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
			rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
			assignment:       vm.Assignment,
		}
		if m.rebalanceTimeout <= 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		if vm.InstanceID != nil {
			m.instanceID = *vm.InstanceID
			g.static[m.instanceID] = m.id
		}
		g.members[m.id] = m
	}
	g.state = groupEmpty
	if len(g.members) > 0 && g.protocol != "" {
		g.state = groupStable
		for _, m := range g.members {
			g.resetSessionLocked(m)
		}
	} else {
		g.members = map[string]*member{}
		g.static = map[string]string{}
		g.leader, g.protocol = "", ""
	}
}
