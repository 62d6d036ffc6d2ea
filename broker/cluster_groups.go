package broker

import (
	"context"
	"strconv"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// Group coordination in a cluster is Kafka's: __consumer_offsets is a
// replicated internal topic, and a group's coordinator is the leader of its
// partition, abs(javaStringHash(group)) % partitions, so tools computing
// coordinators agree. A commit is acknowledged once the partition's high
// watermark covers it (min.insync.replicas holds as for any acks=all
// write). When the controller makes this broker leader of an offsets
// partition, the coordinator loads that partition's groups from its replica
// (requests for them get COORDINATOR_LOAD_IN_PROGRESS meanwhile) and
// serves them; when leadership moves away it unloads them, answering
// parked members NOT_COORDINATOR, and the new leader loads them from its
// own replica. Members rejoin there: group metadata (generations,
// assignments) is not kept in the log, committed offsets are.

// ownedPartition is a partition of __consumer_offsets this broker leads.
type ownedPartition struct {
	epoch  int32  // the leader epoch it was taken at
	gen    uint64 // unique per ownership: groups remember theirs
	loaded bool
}

// offsetsPartition is Kafka's coordinator rule: abs(hashCode(group)) %
// partitions, hashCode being Java's String.hashCode over UTF-16 code units
// and abs(MinInt32) taken as 0.
func offsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// syncCoordinator takes up and gives up partitions of __consumer_offsets as
// the controller's state says this broker leads them. It runs on the
// reconciler after syncReplication.
func (c *coordinator) syncCoordinator(st *replication.State) {
	b := c.b
	me := b.cfg.NodeID
	ti := st.Topics[offsetsTopic]
	t := b.lookupTopic(offsetsTopic)
	lead := map[int32]int32{} // partition -> leader epoch, for those led here
	if ti != nil && t != nil && [16]byte(ti.ID) == t.id {
		b.mu.RLock()
		parts := t.partitions
		b.mu.RUnlock()
		for i, ps := range ti.Partitions {
			if ps.Leader == me && i < len(parts) {
				if epoch, _, _, on, leads := parts[i].leadershipForProduce(); on && leads && epoch == ps.LeaderEpoch {
					lead[int32(i)] = ps.LeaderEpoch
				}
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for k, o := range c.owned {
		if epoch, ok := lead[k]; !ok || epoch != o.epoch {
			c.unloadLocked(k)
		}
	}
	for k, epoch := range lead {
		if c.owned[k] != nil {
			continue
		}
		c.ownSeq++
		o := &ownedPartition{epoch: epoch, gen: c.ownSeq}
		c.owned[k] = o
		p := b.partitionOf(t, k)
		go c.load(p, o)
	}
}

// load reads partition p's groups and serves them, unless the ownership o
// ended meanwhile. A failed read is retried while o lasts.
func (c *coordinator) load(p *partition, o *ownedPartition) {
	start := time.Now()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		groups := map[string]*group{}
		records, err := c.replayPartition(p, groups)
		c.mu.Lock()
		if c.closed || c.owned[p.index] != o {
			c.mu.Unlock()
			return
		}
		if err == nil {
			for name, g := range groups {
				g.gen = o.gen
				c.groups[name] = g
			}
			o.loaded = true
			c.mu.Unlock()
			c.b.log.Info("loaded the groups of an offsets partition", "partition", p.index, "leader_epoch", o.epoch,
				"groups", len(groups), "records", records, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		c.mu.Unlock()
		c.b.log.Warn("loading the groups of an offsets partition failed; retrying", "partition", p.index, "err", err)
		select {
		case <-c.b.closing:
			return
		case <-time.After(backoff):
		}
	}
}

// unloadLocked gives up partition k: its groups are dropped, their timers
// stopped and parked members answered NOT_COORDINATOR, so they find the
// new coordinator. Writes in flight for them are not applied here (the new
// leader reads them from the log). c.mu is held.
func (c *coordinator) unloadLocked(k int32) {
	delete(c.owned, k)
	n := 0
	for name, g := range c.groups {
		if g.part != k {
			continue
		}
		g.mu.Lock()
		g.stopGroupTimersLocked()
		for _, m := range g.members {
			if m.session != nil {
				m.session.Stop()
			}
			m.sessionSeq++
			g.failWaitersLocked(m, kerr.NotCoordinator)
		}
		if g.cg != nil {
			for _, m := range g.cg.members {
				stopCgMember(m)
			}
		}
		g.state = groupDead
		g.mu.Unlock()
		delete(c.groups, name)
		n++
	}
	c.b.log.Info("gave up an offsets partition; its groups move with its leadership", "partition", k, "groups", n)
}

// ensureOffsetsTopicCluster asks the controller, in the background, to
// create __consumer_offsets when a group coordinator is first looked up:
// offsets.topic.num.partitions partitions, offsets.topic.replication.factor
// replicas capped by the live brokers (raise it later with a partition
// reassignment). A broker holding a local __consumer_offsets the
// controller does not know yet (a grown standalone broker) leaves it to
// adoption, which keeps its committed offsets.
func (b *Broker) ensureOffsetsTopicCluster() {
	if b.lookupTopic(offsetsTopic) != nil || !b.offsetsCreating.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer b.offsetsCreating.Store(false)
		st := b.ctl.State()
		if st.Topics[offsetsTopic] != nil {
			return
		}
		live := 0
		for id := range st.Brokers {
			if st.Live(id) {
				live++
			}
		}
		rf := min(int(b.offsetsTopicReplicationFactor()), live)
		if rf < 1 {
			return
		}
		configs := offsetsTopicConfigs()
		if rf < int(b.cfg.MinInsyncReplicas) {
			// Fewer live brokers than the cluster's min.insync.replicas:
			// commits would fail until the topic is reassigned.
			configs["min.insync.replicas"] = strconv.Itoa(rf)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := b.ctl.Propose(ctx, &replication.Request{CreateTopic: &replication.CreateTopicRequest{
			Name: offsetsTopic, ID: newTopicID(), Partitions: b.offsetsTopicPartitions(), ReplicationFactor: int16(rf), Configs: configs,
		}})
		if err != nil {
			b.log.Warn("creating "+offsetsTopic+" failed; the next coordinator lookup retries", "err", err)
			return
		}
		b.log.Info("created "+offsetsTopic, "partitions", b.offsetsTopicPartitions(), "replication_factor", rf)
	}()
}

func (b *Broker) offsetsTopicReplicationFactor() int16 {
	if n := b.cfg.OffsetsTopicReplicationFactor; n > 0 {
		return n
	}
	return 3
}

// coordinated wraps a group API's handler: in a cluster, a request for a
// group this broker does not coordinate is answered NOT_COORDINATOR (or
// COORDINATOR_NOT_AVAILABLE while the coordinator is fenced or this broker
// is cut off) without touching local state; clients look the coordinator up
// again. A request naming several groups is run only when this broker
// coordinates all of them; otherwise each group gets the error of the first
// group it does not coordinate, and clients, which send one request per
// coordinator, retry after FindCoordinator.
func coordinated(h handler) handler {
	return func(c *conn, req *request) reply {
		b := c.b
		if b.ctl == nil {
			return h(c, req)
		}
		var groups []string
		switch r := req.Request.(type) {
		case *kmsg.OffsetCommitRequest:
			groups = []string{r.Group}
		case *kmsg.OffsetFetchRequest:
			if r.Version >= 8 {
				for _, g := range r.Groups {
					groups = append(groups, g.Group)
				}
			} else {
				groups = []string{r.Group}
			}
		case *kmsg.JoinGroupRequest:
			groups = []string{r.Group}
		case *kmsg.HeartbeatRequest:
			groups = []string{r.Group}
		case *kmsg.LeaveGroupRequest:
			groups = []string{r.Group}
		case *kmsg.SyncGroupRequest:
			groups = []string{r.Group}
		case *kmsg.DescribeGroupsRequest:
			groups = r.Groups
		case *kmsg.DeleteGroupsRequest:
			groups = r.Groups
		case *kmsg.OffsetDeleteRequest:
			groups = []string{r.Group}
		case *kmsg.ConsumerGroupHeartbeatRequest:
			groups = []string{r.Group}
		case *kmsg.ConsumerGroupDescribeRequest:
			groups = r.Groups
		}
		var code *kerr.Error
		for _, g := range groups {
			if code = b.coordinates(g); code != nil {
				break
			}
		}
		if code == nil {
			return h(c, req)
		}
		return now(notCoordinatorResponse(req.Request, code))
	}
}

// notCoordinatorResponse answers every group and partition of r with code.
func notCoordinatorResponse(r kmsg.Request, code *kerr.Error) kmsg.Response {
	resp := r.ResponseKind()
	switch r := r.(type) {
	case *kmsg.OffsetCommitRequest:
		out := resp.(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code.Code
				st.Partitions = append(st.Partitions, sp)
			}
			out.Topics = append(out.Topics, st)
		}
	case *kmsg.OffsetFetchRequest:
		out := resp.(*kmsg.OffsetFetchResponse)
		out.ErrorCode = code.Code
		for _, g := range r.Groups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.JoinGroupRequest:
		resp.(*kmsg.JoinGroupResponse).ErrorCode = code.Code
	case *kmsg.HeartbeatRequest:
		resp.(*kmsg.HeartbeatResponse).ErrorCode = code.Code
	case *kmsg.LeaveGroupRequest:
		resp.(*kmsg.LeaveGroupResponse).ErrorCode = code.Code
	case *kmsg.SyncGroupRequest:
		resp.(*kmsg.SyncGroupResponse).ErrorCode = code.Code
	case *kmsg.DescribeGroupsRequest:
		out := resp.(*kmsg.DescribeGroupsResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.DeleteGroupsRequest:
		out := resp.(*kmsg.DeleteGroupsResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.OffsetDeleteRequest:
		resp.(*kmsg.OffsetDeleteResponse).ErrorCode = code.Code
	case *kmsg.ConsumerGroupHeartbeatRequest:
		resp.(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode = code.Code
	case *kmsg.ConsumerGroupDescribeRequest:
		out := resp.(*kmsg.ConsumerGroupDescribeResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewConsumerGroupDescribeResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	}
	resp.SetVersion(r.GetVersion())
	return resp
}
