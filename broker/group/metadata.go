package group

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
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

// persistLocked writes rec, a snapshot of g's membership, in the
// background. Snapshots of one group are ordered by their sequence: one
// overtaken by a newer snapshot is dropped. g.mu is held.
func (g *group) persistLocked(rec Record) {
	g.metaSeq++
	seq := g.metaSeq
	c := g.c
	go func() {
		al := c.appendLock(g.name)
		al.Lock()
		g.mu.Lock()
		stale := g.metaSeq != seq || g.deleted || g.state == groupDead
		g.mu.Unlock()
		if stale {
			al.Unlock()
			return
		}
		p := c.partitionOf(g.name)
		c.mu.Lock()
		owned := p >= 0 && !c.closed && c.ownsLocked(p, g.gen)
		c.mu.Unlock()
		if !owned {
			al.Unlock()
			return // the partition moved; the new leader has what was durable
		}
		ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
		defer cancel()
		w, err := c.olog.Append(ctx, p, []Record{rec})
		al.Unlock()
		if err == nil {
			err = w.Wait(ctx)
		}
		if err != nil {
			c.log.Debug("writing group metadata failed; members rejoin if the group moves before the next write", "group", g.name, "err", err)
		}
	}()
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
	// consumerKeyVersion keys a KIP-848 group's state: a key laid out as
	// GroupMetadataKey, with a version of Chronik's own (Kafka's records
	// of the consumer protocol have no schema in kmsg), and a JSON value.
	// Readers skip key versions they do not know, as this one skips
	// Kafka's 3 to 8.
	consumerKeyVersion = 100
)

// cgState is a KIP-848 group's state as written to the log.
type cgState struct {
	Epoch       int32                `json:"epoch"`
	AssignEpoch int32                `json:"assign_epoch"`
	MetaSig     string               `json:"meta_sig,omitempty"`
	Members     []cgMemberState      `json:"members"`
	Target      map[string][]tpState `json:"target,omitempty"`
}

type cgMemberState struct {
	ID                 string    `json:"id"`
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

// persistConsumerLocked writes g's KIP-848 state when it changed since the
// last write. g.mu is held.
func (g *group) persistConsumerLocked() {
	cg := g.cg
	if cg == nil {
		return
	}
	st := cgState{Epoch: cg.epoch, AssignEpoch: cg.assignEpoch, MetaSig: cg.metaSig, Target: map[string][]tpState{}}
	for id, t := range cg.target {
		st.Target[id] = tpStates(t)
	}
	for _, m := range cg.members {
		ms := cgMemberState{ID: m.id, InstanceID: m.instanceID, RackID: m.rackID, ClientID: m.clientID, ClientHost: m.clientHost,
			Epoch: m.epoch, PrevEpoch: m.prevEpoch, Topics: m.topics, Assignor: m.assignor,
			RebalanceTimeoutMs: m.rebalanceTimeout.Milliseconds(), Assigned: tpStates(m.assigned), Revoking: tpStates(m.revoking), Left: m.left}
		if m.regex != nil {
			ms.Regex = m.regex.String()
		}
		st.Members = append(st.Members, ms)
	}
	slices.SortFunc(st.Members, func(a, b cgMemberState) int { return cmp.Compare(a.ID, b.ID) })
	value, err := json.Marshal(st)
	if err != nil || bytes.Equal(value, g.cgWritten) {
		return
	}
	g.cgWritten = value
	k := kmsg.GroupMetadataKey{Version: consumerKeyVersion, Group: g.name}
	g.persistLocked(Record{Key: k.AppendTo(nil), Value: value})
}

// restoreConsumerLocked rebuilds g's KIP-848 state from the log: members
// keep their epochs and partitions, with fresh session timers (and
// revocation timers for what they are revoking). g.mu is held (or g is not
// published yet).
func (g *group) restoreConsumerLocked(value []byte) {
	var st cgState
	if json.Unmarshal(value, &st) != nil || len(st.Members) == 0 {
		return
	}
	cg := newConsumerGroup()
	cg.epoch, cg.assignEpoch, cg.metaSig = st.Epoch, st.AssignEpoch, st.MetaSig
	for id, t := range st.Target {
		cg.target[id] = tpSet(t)
	}
	for _, ms := range st.Members {
		m := &cgMember{id: ms.ID, instanceID: ms.InstanceID, rackID: ms.RackID, clientID: ms.ClientID, clientHost: ms.ClientHost,
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
		cg.members[m.id] = m
		if m.instanceID != "" {
			cg.static[m.instanceID] = m.id
		}
	}
	g.cg = cg
	g.cgWritten = value
	for _, m := range cg.members {
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
