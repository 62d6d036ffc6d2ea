package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/broker/group"
	"github.com/chronik-go/chronik/replication"
)

// ClusterConfig makes the broker a member of a cluster whose metadata
// (brokers, topics, assignments, leaders, ISRs) lives in the Raft controller
// (replication/). Nil runs the broker standalone.
type ClusterConfig struct {
	RaftAddr string             // the controller listener (CHRONIK_RAFT_ADDR)
	Peers    []replication.Peer // every controller voter, this node included
	// HeartbeatInterval and SessionTimeout: a broker silent for a session
	// is fenced and its partitions move (zero takes replication's defaults).
	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration
	// Recover forms a new controller quorum over data directories of a
	// cluster whose Raft state is lost on every node (CHRONIK_CONTROLLER_RECOVER).
	Recover bool
	// UncleanLeaderElection is the default of the topic config
	// unclean.leader.election.enable (CHRONIK_UNCLEAN_LEADER_ELECTION_ENABLE).
	UncleanLeaderElection bool
	// AutoLeaderRebalance moves partitions back to their preferred
	// replicas every LeaderImbalanceCheckInterval for brokers leading more
	// than LeaderImbalancePerBrokerPercentage % fewer of them than they are
	// preferred for (CHRONIK_AUTO_LEADER_REBALANCE_ENABLE,
	// CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS,
	// CHRONIK_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE). The controller
	// leader does it.
	AutoLeaderRebalance                bool
	LeaderImbalanceCheckInterval       time.Duration
	LeaderImbalancePerBrokerPercentage int
	// ControllerTLS, when set, makes the controller port mutual TLS: it
	// serves with ControllerTLS (which requires client certificates) and
	// dials the other nodes with the broker's ClientTLS. When
	// ControllerPrincipals is set, only peers whose certificate's principal
	// it lists are let in (the brokers').
	ControllerTLS        *tls.Config
	ControllerPrincipals []string
}

// In a cluster, the controller's state is the truth about topics; each
// broker keeps its local topics (partition logs, meta.json, which WAL
// recovery needs before the quorum answers) in step with it: the
// reconciler applies every change. Nothing is deleted because the
// controller does not know it: a local topic is deleted only when the
// controller's log records that topic ID's deletion; an unknown one is
// adopted (replication/adopt.go: a grown standalone broker's topics, a
// restored topic, a recovered quorum's), and one whose name the controller
// gave to another topic is parked on disk. Requests are checked against the state:
// a partition this broker does not lead, or any partition while its lease
// has lapsed (cut off from the quorum, or paused), gets
// NOT_LEADER_OR_FOLLOWER.
//
// Group coordination follows the leadership of __consumer_offsets, a
// replicated topic like any other (cluster_groups.go).

// startCluster opens the controller member and starts the reconciler. It
// runs after local recovery.
func (b *Broker) startCluster() error {
	cc := b.cfg.Cluster
	dataID, member := b.dataClusterID()
	rc := replication.Config{
		DataClusterID:         dataID,
		DataMember:            member,
		Recover:               cc.Recover,
		UncleanLeaderElection: cc.UncleanLeaderElection,

		AutoLeaderRebalance:                cc.AutoLeaderRebalance,
		LeaderImbalanceCheckInterval:       cc.LeaderImbalanceCheckInterval,
		LeaderImbalancePerBrokerPercentage: cc.LeaderImbalancePerBrokerPercentage,
		MaxPartitions:                      b.cfg.MaxPartitions,
		NodeID:                             b.cfg.NodeID,
		BindAddr:                           cc.RaftAddr,
		Peers:                              cc.Peers,
		Dir:                                filepath.Join(b.cfg.DataDir, "raft"),
		HeartbeatInterval:                  cc.HeartbeatInterval,
		SessionTimeout:                     cc.SessionTimeout,
		Logger:                             b.log,
	}
	if cc.ControllerTLS != nil {
		rc.ServerTLS, rc.ClientTLS = cc.ControllerTLS, b.cfg.ClientTLS
		if ps := cc.ControllerPrincipals; len(ps) > 0 {
			rc.AllowPeer = func(p string) bool { return slices.Contains(ps, p) }
		}
	}
	ctl, err := replication.Open(rc)
	if err != nil {
		return err
	}
	b.ctl = ctl
	b.reconciled = make(chan struct{})
	b.maintWG.Add(2)
	go b.reconcileLoop()
	go b.isrLoop()
	return nil
}

// joinCluster registers this broker (its advertised Kafka address) with the
// controller; called once the Kafka listener is up.
func (b *Broker) joinCluster() {
	b.lnMu.Lock()
	first := b.lns[0]
	b.lnMu.Unlock()
	b.adminMu.Lock()
	info := replication.BrokerInfo{Host: first.host, Port: first.port, StorageID: b.meta.StorageID, Endpoints: b.endpoints()}
	b.adminMu.Unlock()
	internal := b.cfg.InternalAddr
	if ib := b.interBrokerListener(); internal == "" && ib != first.Name {
		internal = info.Endpoints[ib]
	}
	if a := internal; a != "" {
		h, p, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(p)
		if err == nil && perr == nil {
			info.InternalHost, info.InternalPort = h, int32(n)
		} else {
			b.log.Error("internal address is not host:port; the other brokers will dial the advertised one", "internal_addr", a)
		}
	}
	b.ctl.Start(info)
}

func (b *Broker) reconcileLoop() {
	defer b.maintWG.Done()
	tick := time.NewTicker(time.Second) // a safety net; changes nudge at once
	defer tick.Stop()
	for {
		select {
		case <-b.closing:
			return
		case <-b.ctl.Changed():
		case <-tick.C:
		}
		// Only a current broker's state is complete: after a restart Raft
		// holds nothing until the leader sends the log, and reconciling
		// against that would delete every local topic.
		if !b.ctl.Current() {
			continue
		}
		if hold := b.reconcileHold.Load(); hold != nil {
			select {
			case <-*hold:
			case <-b.closing:
				return
			}
		}
		st := b.ctl.State()
		if id, _ := b.dataClusterID(); st.ClusterID != id {
			// The quorum's log was replaced by another cluster's under
			// this broker: nothing of it is applied to this data.
			b.fail(fmt.Errorf("%w: the controller quorum now says cluster %s, but the data directory %s belongs to cluster %s",
				ErrOtherCluster, st.ClusterID, b.cfg.DataDir, id))
			return
		}
		// Leadership first and outside adminMu, which an admin request
		// may hold while it waits for the controller.
		b.syncReplication(st)
		b.adminMu.Lock()
		adopt := b.reconcileLocked(st)
		b.adminMu.Unlock()
		b.adoptTopics(adopt)
		b.syncReplication(st) // partitions the reconcile just created
		b.syncCoordinator(st)
		b.raiseOffsetsReplication(st)
		b.reconciledMu.Lock()
		if st.Index > b.reconciledIdx {
			b.reconciledIdx = st.Index
			close(b.reconciled)
			b.reconciled = make(chan struct{})
		}
		b.reconciledMu.Unlock()
	}
}

// reconcileLocked makes the local topics match st and returns the local
// topics the controller does not know, to adopt. A local topic is deleted
// only when st records its deletion (by ID); one whose name the controller
// gave to another topic is parked: kept on disk, no longer served.
// adminMu must be held.
func (b *Broker) reconcileLocked(st *replication.State) (adopt []*topic) {
	for _, ti := range st.Topics {
		if err := b.syncTopicLocked(st, ti); err != nil {
			b.log.Error("apply topic from the controller failed; retrying", "topic", ti.Name, "err", err)
		}
	}
	for _, t := range b.snapshotTopics() {
		ti := st.Topics[t.name]
		switch _, deleted := st.Deleted[replication.TopicID(t.id)]; {
		case ti != nil && [16]byte(ti.ID) == t.id:
			if b.holdsUnassigned(ti, t) {
				adopt = append(adopt, t) // a recovered quorum learning who holds what
			}
		case deleted:
			if err := b.dropTopicLocked(t); err != nil {
				b.log.Error("delete topic removed by the controller failed; retrying", "topic", t.name, "err", err)
			}
		case ti != nil:
			b.parkTopicLocked(t, fmt.Sprintf("the controller has another topic named %q (%s)", t.name, ti.ID))
		default:
			adopt = append(adopt, t)
		}
	}
	return adopt
}

// holdsUnassigned reports whether this broker holds data of a partition of
// an adopted topic it is no replica of: it adopts that partition too.
func (b *Broker) holdsUnassigned(ti *replication.TopicInfo, t *topic) bool {
	b.mu.RLock()
	parts := t.partitions
	b.mu.RUnlock()
	for i, p := range parts {
		if i >= len(ti.Partitions) {
			break
		}
		ps := ti.Partitions[i]
		if ps.Adopted == nil || slices.Contains(ps.Replicas, b.cfg.NodeID) {
			continue
		}
		p.mu.RLock()
		holds := p.hw > 0
		p.mu.RUnlock()
		if holds {
			return true
		}
	}
	return false
}

// adoptTopics asks the controller to adopt local topics it does not know,
// each at most every few seconds. It runs on the reconciler, outside
// adminMu (the proposal waits for the log, not for the reconciler).
func (b *Broker) adoptTopics(ts []*topic) {
	now := time.Now()
	for _, t := range ts {
		if at, ok := b.adoptTried[t.id]; ok && now.Sub(at) < 3*time.Second {
			continue
		}
		b.adoptTried[t.id] = now
		configs := maps.Clone(b.topicConfigs(t))
		if _, ok := configs["min.insync.replicas"]; !ok && b.standaloneData {
			// A standalone broker's topic (or a restored one): one
			// replica holds it, and acks=all keeps working as it did
			// rather than failing on a cluster default above the replica
			// count. The operator raises both together (docs/cluster.md).
			// A recovered quorum's topics keep the cluster's default, so
			// acks=all waits for the replicas adopted after the first.
			if configs == nil {
				configs = map[string]string{}
			}
			configs["min.insync.replicas"] = "1"
		}
		req := &replication.AdoptTopicRequest{Broker: b.cfg.NodeID, Name: t.name, ID: replication.TopicID(t.id), Configs: configs}
		b.mu.RLock()
		parts := t.partitions
		b.mu.RUnlock()
		for _, p := range parts {
			req.Partitions = append(req.Partitions, p.holding())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := b.ctl.Propose(ctx, &replication.Request{AdoptTopic: req})
		cancel()
		var ce *replication.Error
		switch {
		case err == nil:
			b.log.Info("the controller adopted a topic this broker holds", "topic", t.name, "id", topicIDString(t.id), "partitions", len(parts))
		case errors.As(err, &ce):
			// Deleted meanwhile, or the name was taken: the next
			// reconcile deletes or parks it.
			b.log.Warn("the controller did not adopt a topic this broker holds", "topic", t.name, "id", topicIDString(t.id), "err", err)
		default:
			b.log.Debug("adopting a topic failed; retrying", "topic", t.name, "err", err)
		}
	}
}

// holding is what this broker holds of p, for adoption.
func (p *partition) holding() replication.Holding {
	p.mu.RLock()
	end := p.hw
	p.mu.RUnlock()
	epoch := p.lastEpoch()
	if m := p.arch.seen.Load(); m != nil {
		epoch = max(epoch, m.LeaderEpoch)
	}
	return replication.Holding{LogEnd: end, LastEpoch: epoch}
}

// syncTopicLocked creates, grows or reconfigures the local copy of ti.
// Idempotent. adminMu must be held.
func (b *Broker) syncTopicLocked(st *replication.State, ti *replication.TopicInfo) error {
	t := b.lookupTopic(ti.Name)
	if t != nil && t.id != [16]byte(ti.ID) {
		// Another topic under the same name: the old one was deleted (and
		// recorded so), or its data is parked.
		if _, deleted := st.Deleted[replication.TopicID(t.id)]; deleted {
			if err := b.dropTopicLocked(t); err != nil {
				return err
			}
		} else {
			b.parkTopicLocked(t, fmt.Sprintf("the controller has another topic named %q (%s)", t.name, ti.ID))
		}
		t = nil
	}
	configs := maps.Clone(ti.Configs)
	if configs == nil {
		configs = map[string]string{}
	}
	n := int32(len(ti.Partitions))
	if t == nil {
		_, err := b.addTopicLocked(ti.Name, [16]byte(ti.ID), n, configs)
		return err
	}
	if cur := int32(b.topicPartitionCount(t)); n > cur {
		if err := b.growTopicLocked(t, cur, n); err != nil {
			return err
		}
	}
	if !maps.Equal(b.topicConfigs(t), configs) {
		return b.applyConfigsLocked(t, configs)
	}
	return nil
}

// waitReconciled waits until the reconciler has applied index.
func (b *Broker) waitReconciled(ctx context.Context, index uint64) error {
	for {
		b.reconciledMu.Lock()
		done, ch := b.reconciledIdx >= index, b.reconciled
		b.reconciledMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return errors.New("broker closed")
		}
	}
}

// propose sends req to the controller and returns once this broker's local
// topics reflect the result. Errors carry Kafka codes.
func (b *Broker) propose(ctx context.Context, req *replication.Request) (replication.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := b.ctl.Propose(ctx, req)
	var ce *replication.Error
	switch {
	case errors.As(err, &ce):
		return res, kerrf(kerr.ErrorForCode(ce.Code).(*kerr.Error), "%s", ce.Message)
	case err != nil:
		return res, kerrf(kerr.RequestTimedOut, "controller: %v", err)
	}
	if err := b.waitReconciled(ctx, res.Index); err != nil {
		return res, kerrf(kerr.RequestTimedOut, "waiting for metadata to apply: %v", err)
	}
	return res, nil
}

// partitionState returns the controller's view of one partition, or false
// when the topic (by name and ID) or the partition is unknown to it.
func (b *Broker) partitionState(t *topic, partition int32) (replication.PartitionInfo, bool) {
	ti := b.ctl.State().Topics[t.name]
	if ti == nil || [16]byte(ti.ID) != t.id || partition < 0 || int(partition) >= len(ti.Partitions) {
		return replication.PartitionInfo{}, false
	}
	return ti.Partitions[partition], true
}

// leaderCheck says whether this broker may serve partition p of t as its
// leader, for a client that believes the leader epoch is epoch (-1 when it
// does not say). It returns the current leader epoch.
func (b *Broker) leaderCheck(t *topic, p int32, epoch int32) (int32, *kerr.Error) {
	if b.ctl == nil {
		if epoch > 0 {
			return 0, kerr.UnknownLeaderEpoch
		}
		return 0, nil
	}
	ps, ok := b.partitionState(t, p)
	switch {
	case !ok:
		return -1, kerr.UnknownTopicOrPartition
	case epoch >= 0 && epoch < ps.LeaderEpoch:
		return ps.LeaderEpoch, kerr.FencedLeaderEpoch
	case epoch > ps.LeaderEpoch:
		return ps.LeaderEpoch, kerr.UnknownLeaderEpoch
	case ps.Leader != b.cfg.NodeID || !b.ctl.Current():
		return ps.LeaderEpoch, kerr.NotLeaderForPartition
	}
	return ps.LeaderEpoch, nil
}

// missingPartitionCode is the error for a produce or fetch of a partition
// this broker does not hold (byID: the request named the topic by ID). A
// cluster broker without a current lease (just restarted, cut off) may
// simply not have caught up with the metadata: its clients get the
// retriable NOT_LEADER_OR_FOLLOWER and ask another broker, rather than an
// unknown topic, which clients give up on after a few metadata refreshes.
func (b *Broker) missingPartitionCode(name string, id [16]byte, partition int32, byID bool) *kerr.Error {
	switch {
	case b.ctl != nil && !b.ctl.Current():
		return kerr.NotLeaderForPartition
	case b.ctl != nil && clusterHasPartition(b.ctl.State(), name, id, partition, byID):
		// The cluster has it; this broker does not serve it yet (a
		// restarted or wiped broker still creating its local topics).
		// UNKNOWN_TOPIC_OR_PARTITION would make clients give up on the
		// records after a few tries; this sends them to the leader.
		return kerr.NotLeaderForPartition
	case byID:
		return kerr.UnknownTopicID
	}
	return kerr.UnknownTopicOrPartition
}

// clusterHasPartition reports whether st has partition p of the topic
// named name (by ID when byID).
func clusterHasPartition(st *replication.State, name string, id [16]byte, p int32, byID bool) bool {
	for _, ti := range st.Topics {
		if (byID && [16]byte(ti.ID) == id || !byID && ti.Name == name) && p >= 0 && int(p) < len(ti.Partitions) {
			return true
		}
	}
	return false
}

// leads reports whether this broker may serve partition p of t as leader.
func (b *Broker) leads(t *topic, p int32) bool {
	_, err := b.leaderCheck(t, p, -1)
	return err == nil
}

// isReplica reports whether this broker holds a replica of partition p of t.
func (b *Broker) isReplica(t *topic, p int32) bool {
	ps, ok := b.partitionState(t, p)
	return ok && slices.Contains(ps.Replicas, b.cfg.NodeID)
}

// groupCoordinator returns the broker coordinating group, in a cluster: the
// leader of the group's partition of __consumer_offsets (cluster_groups.go).
// The topic is created on the first lookup.
func (b *Broker) groupCoordinator(name string) (*replication.BrokerInfo, *kerr.Error) {
	return b.internalCoordinator(b.offsetsInternal(), name)
}

// internalCoordinator returns the leader of key's partition of internal
// topic it (Kafka's hashing rule, group.Partition), creating the topic on
// the first lookup.
func (b *Broker) internalCoordinator(it internalTopic, key string) (*replication.BrokerInfo, *kerr.Error) {
	if !b.ctl.Current() {
		return nil, kerr.CoordinatorNotAvailable
	}
	st := b.ctl.State()
	ti := st.Topics[it.name]
	if ti == nil || len(ti.Partitions) == 0 {
		b.ensureInternalTopicCluster(it)
		return nil, kerr.CoordinatorNotAvailable
	}
	ps := ti.Partitions[group.Partition(key, len(ti.Partitions))]
	bi := st.Brokers[ps.Leader]
	if ps.Leader < 0 || bi == nil || bi.Fenced {
		return nil, kerr.CoordinatorNotAvailable
	}
	return bi, nil
}

// coordinates reports whether this broker serves group name now (always, when
// standalone): NOT_COORDINATOR when it does not lead the group's partition
// of __consumer_offsets, COORDINATOR_LOAD_IN_PROGRESS while it loads it.
func (b *Broker) coordinates(name string) *kerr.Error {
	if code := b.leadsInternal(offsetsTopic, name); code != nil {
		return code
	}
	return b.groups.Unavailable(name)
}

// leadsInternal reports whether this broker leads key's partition of
// internal topic name (always, when standalone): NOT_COORDINATOR when it
// does not.
func (b *Broker) leadsInternal(name, key string) *kerr.Error {
	if b.ctl == nil {
		return nil
	}
	if !b.ctl.Current() {
		return kerr.CoordinatorNotAvailable
	}
	ti := b.ctl.State().Topics[name]
	if ti == nil || len(ti.Partitions) == 0 {
		return kerr.CoordinatorNotAvailable
	}
	if ti.Partitions[group.Partition(key, len(ti.Partitions))].Leader != b.cfg.NodeID {
		return kerr.NotCoordinator
	}
	return nil
}

// liveReplicas returns the replicas of ps that are registered and unfenced,
// and those that are not.
func liveReplicas(st *replication.State, ps replication.PartitionInfo) (live, offline []int32) {
	for _, r := range ps.Replicas {
		if st.Live(r) {
			live = append(live, r)
		} else {
			offline = append(offline, r)
		}
	}
	return live, offline
}

// defaultReplicationFactor is the replication factor of topics created
// without one (ops derives min(3, peers) unless configured).
func (b *Broker) defaultReplicationFactor() int16 {
	return max(b.cfg.DefaultReplicationFactor, 1)
}

// walFailed gives up this broker's leaderships once its write-ahead log
// failed for good (tier1's OnFailed): it can no longer write what it
// leads. The broker is fenced and stops heartbeating, so the controller
// moves its partitions to replicas that can; reads of what it holds go
// on. Only a restart (which recovers the log) lets it rejoin.
func (b *Broker) walFailed(err error) {
	if !b.walErr.CompareAndSwap(nil, &err) {
		return
	}
	if b.ctl == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if rerr := b.ctl.Resign(ctx); rerr != nil {
			b.log.Error("the write-ahead log failed and the controller could not be told; the session timeout fences this broker", "err", rerr)
			return
		}
		b.log.Error("the write-ahead log failed: this broker gave up its leaderships and stays fenced until it is restarted", "err", err)
	}()
}

// reportReplicaHealth tells the controller whether this broker's replica
// of p is damaged (it leaves the ISR and cannot lead while a whole replica
// can) or whole again, once this broker is registered. One goroutine per
// partition reports, in the background, the state p is in when it
// reports, until the controller has the latest, or refuses it for good
// (the topic is gone). A restart clears the controller's record of this
// broker's damage; its scrubber reports what is still damaged.
func (b *Broker) reportReplicaHealth(p *partition) {
	if b.ctl == nil || !p.healthReporting.CompareAndSwap(false, true) {
		return
	}
	b.maintWG.Add(1)
	go func() {
		defer b.maintWG.Done()
		for {
			reported, ok := b.sendReplicaHealth(p)
			p.healthReporting.Store(false)
			// A change after the last report, whose own call found this
			// goroutine still running, is this goroutine's to send.
			if !ok || p.healthDamaged.Load() == reported || !p.healthReporting.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// sendReplicaHealth reports p's current health until the controller takes
// it; it returns what it reported, or false when it gave up (the broker
// closing, the topic gone).
func (b *Broker) sendReplicaHealth(p *partition) (damaged, ok bool) {
	backoff := 100 * time.Millisecond
	for {
		if self := b.ctl.Self(); self != nil && b.ctl.Current() {
			damaged = p.healthDamaged.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := b.ctl.Propose(ctx, &replication.Request{MarkReplica: &replication.MarkReplica{
				TopicRef: replication.TopicRef{Name: p.topic.name, ID: p.topic.id}, Partition: p.index,
				Broker: b.cfg.NodeID, Incarnation: self.Incarnation, Damaged: damaged,
			}})
			cancel()
			var ce *replication.Error
			switch {
			case err == nil:
				return damaged, true
			case errors.As(err, &ce) && ce.Code == replication.CodeUnknownTopicOrPartition:
				return damaged, false
			}
			b.log.Debug("reporting a replica's health to the controller failed; retrying", "topic", p.topic.name, "partition", p.index, "err", err)
		}
		select {
		case <-b.closing:
			return damaged, false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
