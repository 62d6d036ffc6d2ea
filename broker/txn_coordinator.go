package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/broker/group"
	"github.com/chronik-go/chronik/broker/txn"
)

// The broker's side of the transaction coordinator (package txn): its
// state lives in __transaction_state, replicated like __consumer_offsets,
// and a transactional ID's coordinator is the leader of its partition
// (Kafka's hashing rule). Markers go to each partition's leader: appended
// here when this broker leads the partition, else sent as WriteTxnMarkers
// to its leader, which appends them (27_write_txn_markers.go).

const txnStateTopic = txn.StateTopic

// isInternalTopic reports whether name is a coordinator's internal topic:
// clients may not write, delete, trim or grow it.
func isInternalTopic(name string) bool { return name == offsetsTopic || name == txnStateTopic }

// txnStateInternal describes __transaction_state as Kafka creates it:
// transaction.state.log.num.partitions partitions, compacted, 100 MiB
// segments.
func (b *Broker) txnStateInternal() internalTopic {
	parts, rf := b.cfg.TransactionStateLogNumPartitions, b.cfg.TransactionStateLogReplicationFactor
	if parts <= 0 {
		parts = txn.DefaultPartitions
	}
	if rf <= 0 {
		rf = 3
	}
	return internalTopic{name: txnStateTopic, partitions: parts, replication: rf,
		configs:  txn.StateTopicConfigs(),
		creating: &b.txnStateCreating, raising: &b.txnStateRaising}
}

// startTxns starts the transaction coordinator after the group
// coordinator. Standalone it creates __transaction_state if needed and
// loads every transaction now; in a cluster it serves the partitions it
// leads, as syncCoordinator hands them over.
func (b *Broker) startTxns() (*txn.Coordinator, error) {
	if b.cfg.Cluster == nil && b.lookupTopic(txnStateTopic) == nil {
		it := b.txnStateInternal()
		b.adminMu.Lock()
		_, err := b.addTopicLocked(it.name, newTopicID(), it.partitions, it.configs)
		b.adminMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("broker: create %s: %w", txnStateTopic, err)
		}
	}
	b.markers = &txnMarkers{b: b}
	return txn.New(txn.Config{
		Cluster:            b.cfg.Cluster != nil,
		MaxTimeout:         b.cfg.TransactionMaxTimeout,
		AbortCheckInterval: b.cfg.TransactionAbortCheckInterval,
		IDExpiration:       b.cfg.TransactionalIDExpiration,
		Logger:             b.log,
	}, offsetsLog{b: b, topic: txnStateTopic}, b.markers, topicsView{b}, b.nextProducerID)
}

// offsetsPartitionOf returns the partition of __consumer_offsets that
// groupName's transactional offsets go to (false before the topic exists):
// AddOffsetsToTxn adds it to the transaction, so its marker reaches them.
func (b *Broker) offsetsPartitionOf(groupName string) (txn.TopicPartition, bool) {
	t := b.lookupTopic(offsetsTopic)
	if t == nil {
		if b.ctl != nil {
			b.ensureInternalTopicCluster(b.offsetsInternal()) // no group was looked up yet
		}
		return txn.TopicPartition{}, false
	}
	return txn.TopicPartition{Topic: offsetsTopic, Partition: group.Partition(groupName, b.topicPartitionCount(t))}, true
}

// txnMarkers implements txn.Markers.
type txnMarkers struct {
	b *Broker

	// hold, set only by tests, holds every Write until it is closed or
	// the Write's context ends: a coordinator that dies between a
	// transaction's decision and its markers.
	hold atomic.Pointer[chan struct{}]
}

// Write writes the marker to every partition, those this broker leads
// here and the others through their leaders, all at once. It reports the
// partitions it could not write as txn.PartitionErrors, so only those are
// sent again.
func (m *txnMarkers) Write(ctx context.Context, producerID int64, epoch int16, coordinatorEpoch int32, commit bool, parts []txn.TopicPartition) error {
	if hold := m.hold.Load(); hold != nil {
		select {
		case <-*hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b := m.b
	var mu sync.Mutex
	failed := txn.PartitionErrors{}
	fail := func(tp txn.TopicPartition, err error) {
		mu.Lock()
		failed[tp] = err
		mu.Unlock()
	}
	remote := map[string][]txn.TopicPartition{}
	var local []txn.TopicPartition
	if b.ctl == nil {
		local = parts
	} else {
		st := b.ctl.State()
		for _, tp := range parts {
			ti := st.Topics[tp.Topic]
			if ti == nil || int(tp.Partition) >= len(ti.Partitions) {
				continue // deleted: nothing to mark
			}
			leader := ti.Partitions[tp.Partition].Leader
			bi := st.Brokers[leader]
			switch {
			case leader == b.cfg.NodeID:
				local = append(local, tp)
			case leader < 0 || bi == nil || bi.Fenced:
				fail(tp, kerrf(kerr.NotLeaderForPartition, "%s/%d has no leader", tp.Topic, tp.Partition))
			default:
				remote[bi.InternalAddr()] = append(remote[bi.InternalAddr()], tp)
			}
		}
	}
	var wg sync.WaitGroup
	for _, tp := range local {
		wg.Go(func() {
			err := b.writeMarker(ctx, tp.Topic, tp.Partition, producerID, epoch, commit, coordinatorEpoch)
			if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) { // deleted: nothing to mark
				fail(tp, err)
			}
		})
	}
	for addr, tps := range remote {
		wg.Go(func() {
			for tp, err := range m.send(ctx, addr, producerID, epoch, coordinatorEpoch, commit, tps) {
				fail(tp, err)
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 {
		return nil
	}
	return failed
}

// send asks the broker at addr to write the marker to tps, which it leads,
// and returns the partitions it did not write.
func (m *txnMarkers) send(ctx context.Context, addr string, producerID int64, epoch int16, coordinatorEpoch int32, commit bool, tps []txn.TopicPartition) txn.PartitionErrors {
	failed := txn.PartitionErrors{}
	failAll := func(err error) txn.PartitionErrors {
		for _, tp := range tps {
			failed[tp] = fmt.Errorf("write markers at %s: %w", addr, err)
		}
		return failed
	}
	cl, err := m.b.peers.client(addr)
	if err != nil {
		return failAll(err)
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	mk := kmsg.NewWriteTxnMarkersRequestMarker()
	mk.ProducerID, mk.ProducerEpoch, mk.Committed, mk.CoordinatorEpoch = producerID, epoch, commit, coordinatorEpoch
	byTopic := map[string]int{}
	for _, tp := range tps {
		k, ok := byTopic[tp.Topic]
		if !ok {
			k = len(mk.Topics)
			byTopic[tp.Topic] = k
			t := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			t.Topic = tp.Topic
			mk.Topics = append(mk.Topics, t)
		}
		mk.Topics[k].Partitions = append(mk.Topics[k].Partitions, tp.Partition)
	}
	req.Markers = append(req.Markers, mk)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return failAll(err)
	}
	answered := map[txn.TopicPartition]bool{}
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				tp := txn.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}
				answered[tp] = true
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil && err != kerr.UnknownTopicOrPartition {
					failed[tp] = fmt.Errorf("at %s: %w", addr, err)
				}
			}
		}
	}
	for _, tp := range tps {
		if !answered[tp] {
			failed[tp] = fmt.Errorf("write markers at %s: no answer for %s/%d", addr, tp.Topic, tp.Partition)
		}
	}
	return failed
}

// writeMarker appends a transaction marker to partition idx of topic name,
// which this broker must lead, and returns once it is durable (in a
// cluster: replicated to min.insync.replicas, as acks=all). A marker on
// __consumer_offsets then completes the group's transactional offsets.
func (b *Broker) writeMarker(ctx context.Context, name string, idx int32, producerID int64, epoch int16, commit bool, coordinatorEpoch int32) error {
	t := b.lookupTopic(name)
	p := b.partitionOf(t, idx)
	if p == nil {
		return kerr.UnknownTopicOrPartition
	}
	if _, lerr := b.leaderCheck(t, idx, -1); lerr != nil {
		return lerr
	}
	lepoch, isr, minISR, replicated, leads := p.leadershipForProduce()
	if replicated && !leads {
		return kerr.NotLeaderForPartition
	}
	if replicated && isr < minISR {
		return kerr.NotEnoughReplicas
	}
	out := p.appendMarker(ctx, b.wal, producerID, epoch, commit, coordinatorEpoch)
	if errors.Is(out.err, kerr.InvalidProducerEpoch) {
		return nil // a newer epoch of the producer wrote here since: nothing of this one is open
	}
	if out.err != nil {
		return out.err
	}
	select {
	case <-out.wait.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if out.wait.err != nil {
		return out.wait.err
	}
	if replicated {
		if err := p.replicationWait(ctx, out.baseOffset+1, lepoch); err != nil {
			return err
		}
	}
	if name == offsetsTopic {
		b.groups.CompleteTxn(idx, producerID, commit, out.baseOffset)
	}
	return nil
}

// verifyTxnPartition is KIP-890 part 1: before the first batch of a
// producer's transaction opens it on partition idx of topic, the
// transaction coordinator must confirm the partition is in the producer's
// ongoing transaction. It returns the produce error, or nil.
func (b *Broker) verifyTxnPartition(ctx context.Context, txnID *string, topic string, idx int32, h batchHeader, p *partition) *kerr.Error {
	p.mu.RLock()
	_, open := p.txns.open[h.ProducerID]
	p.mu.RUnlock()
	if open {
		return nil
	}
	if txnID == nil || *txnID == "" {
		return kerr.InvalidTxnState
	}
	tp := txn.TopicPartition{Topic: topic, Partition: idx}
	var err error
	local := b.ctl == nil
	var addr string
	if !local {
		bi, code := b.internalCoordinator(b.txnStateInternal(), *txnID)
		if code != nil {
			return kerr.NotEnoughReplicas
		}
		local, addr = bi.ID == b.cfg.NodeID, bi.InternalAddr()
	}
	if local {
		err = b.txns.Verify(*txnID, h.ProducerID, h.ProducerEpoch, tp)
	} else {
		err = b.markers.verify(ctx, addr, *txnID, h.ProducerID, h.ProducerEpoch, tp)
	}
	var ke *kerr.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ke):
		return kerr.NotEnoughReplicas // the coordinator did not answer
	case ke == kerr.ProducerFenced || ke == kerr.InvalidProducerEpoch:
		return kerr.InvalidProducerEpoch
	case ke == kerr.NotCoordinator || ke == kerr.CoordinatorLoadInProgress || ke == kerr.CoordinatorNotAvailable:
		return kerr.NotEnoughReplicas
	case ke == kerr.ConcurrentTransactions, ke == kerr.InvalidProducerIDMapping:
		return ke
	default:
		return kerr.InvalidTxnState
	}
}

// verify asks the coordinator at addr whether tp is in transactionalID's
// ongoing transaction (AddPartitionsToTxn v4+, VerifyOnly).
func (m *txnMarkers) verify(ctx context.Context, addr, transactionalID string, producerID int64, epoch int16, tp txn.TopicPartition) error {
	cl, err := m.b.peers.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	rt := kmsg.NewAddPartitionsToTxnRequestTransaction()
	rt.TransactionalID, rt.ProducerID, rt.ProducerEpoch, rt.VerifyOnly = transactionalID, producerID, epoch, true
	top := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
	top.Topic, top.Partitions = tp.Topic, []int32{tp.Partition}
	rt.Topics = append(rt.Topics, top)
	req.Transactions = append(req.Transactions, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, t := range resp.Transactions {
		for _, top := range t.Topics {
			for _, p := range top.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// verifyTxnOffsets verifies a TxnOffsetCommit's producer with its
// transaction coordinator (verifyTxnPartition), the group's partition of
// __consumer_offsets standing for the partition written.
func (b *Broker) verifyTxnOffsets(ctx context.Context, r *kmsg.TxnOffsetCommitRequest) *kerr.Error {
	tp, ok := b.offsetsPartitionOf(r.Group)
	if !ok {
		return kerr.CoordinatorNotAvailable
	}
	p := b.partitionOf(b.lookupTopic(offsetsTopic), tp.Partition)
	if p == nil {
		return kerr.CoordinatorNotAvailable
	}
	id := r.TransactionalID
	code := b.verifyTxnPartition(ctx, &id, offsetsTopic, tp.Partition, batchHeader{ProducerID: r.ProducerID, ProducerEpoch: r.ProducerEpoch}, p)
	if code == kerr.NotEnoughReplicas {
		return kerr.CoordinatorLoadInProgress // what a TxnOffsetCommit client retries
	}
	return code
}
