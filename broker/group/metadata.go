package group

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Classic group metadata is kept in __consumer_offsets too, as Kafka keeps
// it: a kmsg.GroupMetadataKey v2 record whose value (GroupMetadataValue v3)
// is the group's generation, selected protocol, leader and members with
// their assignments, written when a rebalance completes (the leader's
// SyncGroup makes the group Stable), when a static member is replaced
// without one, and when the group empties; DeleteGroups tombstones it. A
// coordinator that loads the group (after a restart, or taking up its
// partition from a broker that died) restores the members with fresh
// session timers: they go on heartbeating and committing in their
// generation, with no rebalance. KIP-848 groups are not kept: their members
// rejoin at epoch 0 and resume from their committed offsets.

// persistMetadataLocked writes g's metadata in the background. Writes of
// one group are ordered by their sequence: one overtaken by a newer
// snapshot is dropped. g.mu is held.
func (g *group) persistMetadataLocked() {
	g.metaSeq++
	seq := g.metaSeq
	rec := g.metadataRecordLocked()
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
	k := kmsg.GroupMetadataKey{Version: 2, Group: g.name}
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

// metadataTombstone is the record that deletes name's metadata.
func metadataTombstone(name string) Record {
	k := kmsg.GroupMetadataKey{Version: 2, Group: name}
	return Record{Key: k.AppendTo(nil)}
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
