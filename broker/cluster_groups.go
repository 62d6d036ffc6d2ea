package broker

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// Group coordination in a cluster is Kafka's: __consumer_offsets is a
// replicated internal topic, and a group's coordinator is the leader of its
// partition, abs(javaStringHash(group)) % partitions (group.Partition). A
// commit is acknowledged once the partition's high watermark covers it
// (offsetsLog). The reconciler tells the coordinator which partitions this
// broker leads (syncCoordinator); it loads and drops their groups.

// internalTopic is one of the coordinators' replicated internal topics:
// __consumer_offsets or __transaction_state.
type internalTopic struct {
	name        string
	partitions  int32
	replication int16
	configs     map[string]string
	// creating: a proposal creating the topic is out; raising:
	// reassignments raising its replication are out.
	creating, raising *atomic.Bool
}

func (b *Broker) offsetsInternal() internalTopic {
	return internalTopic{name: offsetsTopic, partitions: b.offsetsTopicPartitions(), replication: b.offsetsTopicReplicationFactor(),
		configs: offsetsTopicConfigs(), creating: &b.offsetsCreating, raising: &b.offsetsRaising}
}

// syncCoordinator hands the coordinators the partitions of their internal
// topics this broker leads now, with their leader epochs: those the
// controller says it leads and that have taken up that leadership. It
// runs on the reconciler after syncReplication.
func (b *Broker) syncCoordinator(st *replication.State) {
	b.groups.SetLeadership(b.ledPartitions(st, offsetsTopic))
	if b.txns != nil {
		b.txns.SetLeadership(b.ledPartitions(st, txnStateTopic))
	}
}

// ledPartitions returns the partitions of topic name this broker leads and
// has taken up, with their leader epochs.
func (b *Broker) ledPartitions(st *replication.State, name string) map[int32]int32 {
	me := b.cfg.NodeID
	ti := st.Topics[name]
	t := b.lookupTopic(name)
	led := map[int32]int32{}
	if ti != nil && t != nil && [16]byte(ti.ID) == t.id {
		b.mu.RLock()
		parts := t.partitions
		b.mu.RUnlock()
		for i, ps := range ti.Partitions {
			if ps.Leader == me && i < len(parts) {
				if epoch, _, _, on, leads := parts[i].leadershipForProduce(); on && leads && epoch == ps.LeaderEpoch {
					led[int32(i)] = ps.LeaderEpoch
				}
			}
		}
	}
	return led
}

// ensureInternalTopicCluster asks the controller, in the background, to
// create an internal topic when its coordinator is first looked up: its
// partitions and replication factor (offsets.topic.* or
// transaction.state.log.*), the replicas capped by the live brokers
// (raiseInternalReplication adds the rest as brokers register). It waits
// until min.insync.replicas brokers are live: writes could not succeed
// before. A broker holding a local copy the controller does not know yet
// (a grown standalone broker) leaves it to adoption, which keeps its
// records.
func (b *Broker) ensureInternalTopicCluster(it internalTopic) {
	if b.lookupTopic(it.name) != nil || !it.creating.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer it.creating.Store(false)
		st := b.ctl.State()
		if st.Topics[it.name] != nil {
			return
		}
		live := len(st.LiveBrokers())
		rf := min(int(it.replication), live)
		if rf < int(b.cfg.MinInsyncReplicas) || rf < 1 {
			b.log.Info("waiting for min.insync.replicas live brokers before creating "+it.name, "live", live, "min_insync_replicas", b.cfg.MinInsyncReplicas)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := b.ctl.Propose(ctx, &replication.Request{CreateTopic: &replication.CreateTopicRequest{
			Name: it.name, ID: newTopicID(), Partitions: it.partitions, ReplicationFactor: int16(rf), Configs: it.configs,
		}})
		if err != nil {
			b.log.Warn("creating "+it.name+" failed; the next coordinator lookup retries", "err", err)
			return
		}
		b.log.Info("created "+it.name, "partitions", it.partitions, "replication_factor", rf)
	}()
}

// raiseOffsetsReplication raises the replication of both internal topics
// (raiseInternalReplication).
func (b *Broker) raiseOffsetsReplication(st *replication.State) {
	b.raiseInternalReplication(st, b.offsetsInternal())
	b.raiseInternalReplication(st, b.txnStateInternal())
}

// raiseInternalReplication reassigns partitions of an internal topic that
// have fewer replicas than its replication factor (created while few
// brokers were live, or adopted from a standalone broker) to as many as
// the live brokers allow, spreading the added replicas. It runs on the
// reconciler of the controller's leader; one pass is out at a time.
func (b *Broker) raiseInternalReplication(st *replication.State, it internalTopic) {
	ti := st.Topics[it.name]
	if ti == nil || b.ctl.LeaderID() != b.cfg.NodeID {
		return
	}
	live := st.LiveBrokers()
	want := min(int(it.replication), len(live))
	var moves []*replication.Reassign
	for i, ps := range ti.Partitions {
		if len(ps.Replicas) >= want || len(ps.Adding) > 0 || len(ps.Removing) > 0 {
			continue
		}
		target := slices.Clone(ps.Replicas)
		for k := range live {
			if len(target) == want {
				break
			}
			if id := live[(i+k)%len(live)].ID; !slices.Contains(target, id) {
				target = append(target, id)
			}
		}
		moves = append(moves, &replication.Reassign{TopicRef: replication.TopicRef{Name: ti.Name, ID: [16]byte(ti.ID)}, Partition: int32(i), Target: target})
	}
	if len(moves) == 0 || !it.raising.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer it.raising.Store(false)
		for _, r := range moves {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := b.ctl.Propose(ctx, &replication.Request{Reassign: r})
			cancel()
			if err != nil {
				b.log.Warn("raising the replication of "+it.name+" failed; the reconciler retries", "partition", r.Partition, "err", err)
				return
			}
		}
		b.log.Info("raising the replication of "+it.name, "partitions", len(moves), "replication_factor", want)
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
		case *kmsg.TxnOffsetCommitRequest:
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
		for i := range r.Topics {
			// v10 names topics by ID: the answer must too.
			out.Topics = append(out.Topics, offsetCommitTopicError(&r.Topics[i], code))
		}
	case *kmsg.TxnOffsetCommitRequest:
		*resp.(*kmsg.TxnOffsetCommitResponse) = *txnOffsetCommitError(r, func(string) *kerr.Error { return code })
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
