package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
)

// maxPartitions bounds one topic; every partition costs memory.
const maxPartitions = 100_000

var legalTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

func validateTopicName(name string) error {
	switch {
	case name == "":
		return kerrf(kerr.InvalidTopicException, "topic name is empty")
	case name == "." || name == "..":
		return kerrf(kerr.InvalidTopicException, "topic name %q is reserved", name)
	case len(name) > 249:
		return kerrf(kerr.InvalidTopicException, "topic name is %d characters; the limit is 249", len(name))
	case !legalTopicName.MatchString(name):
		return kerrf(kerr.InvalidTopicException, "topic name %q may only hold ASCII letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

// kerrf is a Kafka error with a message for the client (v1+ error messages).
func kerrf(code *kerr.Error, format string, args ...any) error {
	return &errBatch{code: code, msg: fmt.Sprintf(format, args...)}
}

func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	if be, ok := err.(*errBatch); ok {
		return &be.msg
	}
	s := err.Error()
	return &s
}

// createTopic validates and, unless validateOnly, creates a topic: in a
// cluster through the controller, standalone by persisting it here.
func (b *Broker) createTopic(name string, partitions int32, rf int16, configs map[string]*string, validateOnly bool) (*topic, error) {
	if err := validateTopicName(name); err != nil {
		return nil, err
	}
	if isInternalTopic(name) && b.ctl != nil {
		return nil, kerrf(kerr.InvalidTopicException, "%s is internal", name)
	}
	if partitions == -1 {
		partitions = b.cfg.DefaultPartitions
	}
	if partitions < 1 || partitions > maxPartitions {
		return nil, kerrf(kerr.InvalidPartitions, "partition count %d must be between 1 and %d", partitions, maxPartitions)
	}
	if partitions > b.cfg.MaxPartitions {
		return nil, kerrf(kerr.InvalidPartitions, "%d partitions exceed the cluster's limit of %d (CHRONIK_MAX_PARTITIONS)", partitions, b.cfg.MaxPartitions)
	}
	if rf == -1 {
		rf = b.defaultReplicationFactor()
	}
	if b.ctl == nil && rf != 1 {
		return nil, kerrf(kerr.InvalidReplicationFactor, "replication factor %d is larger than the 1 available broker", rf)
	}
	set := make(map[string]string, len(configs))
	for k, v := range configs {
		if err := validateTopicConfig(k, v); err != nil {
			return nil, kerrf(kerr.InvalidConfig, "%v", err)
		}
		set[k] = *v
	}
	if b.ctl != nil {
		id := newTopicID()
		_, err := b.propose(context.Background(), &replication.Request{CreateTopic: &replication.CreateTopicRequest{
			Name: name, ID: id, Partitions: partitions, ReplicationFactor: rf, Configs: set, ValidateOnly: validateOnly,
		}})
		if err != nil || validateOnly {
			return nil, err
		}
		t := b.lookupTopic(name)
		if t == nil || t.id != id {
			return nil, kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted while being created", name)
		}
		b.log.Info("created topic", "topic", name, "partitions", partitions, "replication_factor", rf, "id", topicIDString(id))
		b.awaitTopicOnBrokers(name, int(partitions))
		return t, nil
	}

	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.lookupTopic(name) != nil {
		return nil, kerrf(kerr.TopicAlreadyExists, "topic %q already exists", name)
	}
	if err := b.checkPartitionLimitLocked(partitions); err != nil {
		return nil, err
	}
	if validateOnly {
		return nil, nil
	}
	t, err := b.addTopicLocked(name, newTopicID(), partitions, set)
	if err != nil {
		return nil, err
	}
	b.log.Info("created topic", "topic", name, "partitions", partitions, "id", topicIDString(t.id))
	return t, nil
}

// addTopicLocked persists and publishes a new local topic. adminMu must be
// held.
func (b *Broker) addTopicLocked(name string, id [16]byte, partitions int32, configs map[string]string) (*topic, error) {
	st := b.meta
	st.Topics = append(append([]metaTopic(nil), st.Topics...), metaTopic{Name: name, ID: topicIDString(id), Partitions: partitions, Configs: configs})
	if err := saveMeta(b.fs, b.cfg.DataDir, &st); err != nil {
		b.log.Error("persist topic failed", "topic", name, "err", err)
		return nil, kerrf(kerr.KafkaStorageError, "persist topic: %v", err)
	}
	b.meta = st
	t := b.newTopic(name, id, partitions, configs, 0)
	b.mu.Lock()
	b.topics[name] = t
	b.topicsByID[id] = t
	b.mu.Unlock()
	return t, nil
}

// updateMetaTopic rewrites t's entry in the metadata file via fn. adminMu
// must be held.
func (b *Broker) updateMetaTopicLocked(t *topic, fn func(*metaTopic)) error {
	st := b.meta
	st.Topics = append([]metaTopic(nil), st.Topics...)
	found := false
	for i := range st.Topics {
		if st.Topics[i].ID == topicIDString(t.id) {
			fn(&st.Topics[i])
			found = true
		}
	}
	if !found {
		return kerrf(kerr.UnknownTopicOrPartition, "topic %q was deleted", t.name)
	}
	if err := saveMeta(b.fs, b.cfg.DataDir, &st); err != nil {
		return kerrf(kerr.KafkaStorageError, "persist metadata: %v", err)
	}
	b.meta = st
	return nil
}

func (b *Broker) deleteTopic(t *topic) error {
	if b.ctl != nil {
		_, err := b.propose(context.Background(), &replication.Request{DeleteTopic: &replication.TopicRef{Name: t.name, ID: t.id}})
		if err == nil {
			b.log.Info("deleted topic", "topic", t.name)
		}
		return err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if err := b.dropTopicLocked(t); err != nil {
		return err
	}
	b.log.Info("deleted topic", "topic", t.name)
	return nil
}

// dropTopicLocked removes a local topic whose deletion is recorded (a
// DeleteTopics standalone, the controller's log in a cluster): the ID goes
// into meta.json's deleted topics, and its data goes in the background.
// adminMu must be held.
func (b *Broker) dropTopicLocked(t *topic) error {
	if err := b.forgetTopicLocked(t, func(st *metaState) {
		st.DeletedTopics = append(slices.DeleteFunc(slices.Clone(st.DeletedTopics), func(id string) bool { return id == topicIDString(t.id) }),
			topicIDString(t.id))
		if n := len(st.DeletedTopics); n > maxDeletedTopics {
			st.DeletedTopics = st.DeletedTopics[n-maxDeletedTopics:]
		}
	}); err != nil {
		return err
	}
	b.mu.RLock()
	parts := t.partitions
	b.mu.RUnlock()
	for _, p := range parts {
		p.markDeleted()
	}
	b.maintMu.Lock()
	b.deletedParts = append(b.deletedParts, parts...)
	b.maintMu.Unlock()
	select {
	case b.cleanKick <- struct{}{}:
	default:
	}
	return nil
}

// maxDeletedTopics bounds meta.json's deleted topics: the IDs whose
// directories cleanup may still find (the oldest are long gone).
const maxDeletedTopics = 10_000

// parkTopicLocked stops serving a local topic whose name the controller
// gave to another topic, without deleting anything: its partition
// directories stay on disk (they are named by topic ID) and meta.json
// lists it under parked_topics for the operator. adminMu must be held.
func (b *Broker) parkTopicLocked(t *topic, why string) {
	mt := metaTopic{Name: t.name, ID: topicIDString(t.id), Partitions: int32(b.topicPartitionCount(t)), Configs: b.topicConfigs(t)}
	if err := b.forgetTopicLocked(t, func(st *metaState) {
		st.Parked = append(slices.Clone(st.Parked), mt)
	}); err != nil {
		b.log.Error("parking a topic failed; retrying", "topic", t.name, "err", err)
		return
	}
	b.mu.RLock()
	parts := t.partitions
	b.mu.RUnlock()
	for _, p := range parts {
		p.markDeleted() // not served; nothing is removed
	}
	b.log.Error("parked a local topic: its data stays on disk, unserved", "topic", t.name, "id", topicIDString(t.id), "why", why,
		"dirs", filepath.Join(b.segRoot(), topicIDString(t.id)+"-*"))
}

// forgetTopicLocked removes t from meta.json (after edit) and from the
// topics served. adminMu must be held.
func (b *Broker) forgetTopicLocked(t *topic, edit func(*metaState)) error {
	st := b.meta
	st.Topics = nil
	for _, mt := range b.meta.Topics {
		if mt.ID != topicIDString(t.id) {
			st.Topics = append(st.Topics, mt)
		}
	}
	if len(st.Topics) == len(b.meta.Topics) {
		return kerrf(kerr.UnknownTopicOrPartition, "topic %q does not exist", t.name)
	}
	edit(&st)
	if err := saveMeta(b.fs, b.cfg.DataDir, &st); err != nil {
		return kerrf(kerr.KafkaStorageError, "persist metadata: %v", err)
	}
	b.meta = st
	b.mu.Lock()
	if b.topics[t.name] == t {
		delete(b.topics, t.name)
	}
	delete(b.topicsByID, t.id)
	b.mu.Unlock()
	return nil
}

func (b *Broker) createPartitions(t *topic, count int32, validateOnly bool) error {
	if count > maxPartitions {
		return kerrf(kerr.InvalidPartitions, "partition count %d exceeds the limit %d", count, maxPartitions)
	}
	if count > b.cfg.MaxPartitions {
		return kerrf(kerr.InvalidPartitions, "%d partitions exceed the cluster's limit of %d (CHRONIK_MAX_PARTITIONS)", count, b.cfg.MaxPartitions)
	}
	if b.ctl != nil {
		_, err := b.propose(context.Background(), &replication.Request{CreatePartitions: &replication.CreatePartitionsRequest{
			TopicRef: replication.TopicRef{Name: t.name, ID: t.id}, Count: count, ValidateOnly: validateOnly,
		}})
		if err == nil && !validateOnly {
			b.awaitTopicOnBrokers(t.name, int(count))
		}
		return err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	cur := int32(b.topicPartitionCount(t))
	if count <= cur {
		return kerrf(kerr.InvalidPartitions, "topic %q has %d partitions; the new count %d must be larger", t.name, cur, count)
	}
	if err := b.checkPartitionLimitLocked(count - cur); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	return b.growTopicLocked(t, cur, count)
}

// checkPartitionLimitLocked refuses adding n partitions past
// Config.MaxPartitions, counting every topic but the internal ones, which
// the broker creates itself. In a cluster the controller
// checks its own state instead (replication.Config.MaxPartitions).
// adminMu must be held, so concurrent creations cannot both fit.
func (b *Broker) checkPartitionLimitLocked(n int32) error {
	total := int64(0)
	b.mu.RLock()
	for _, t := range b.topics {
		if !isInternalTopic(t.name) {
			total += int64(len(t.partitions))
		}
	}
	b.mu.RUnlock()
	if limit := int64(b.cfg.MaxPartitions); total+int64(n) > limit {
		return kerrf(kerr.PolicyViolation, "adding %d partitions to the cluster's %d would pass its limit of %d (CHRONIK_MAX_PARTITIONS)", n, total, limit)
	}
	return nil
}

// growTopicLocked adds partitions [cur, count) locally. adminMu must be held.
func (b *Broker) growTopicLocked(t *topic, cur, count int32) error {
	if err := b.updateMetaTopicLocked(t, func(mt *metaTopic) { mt.Partitions = count }); err != nil {
		return err
	}
	b.mu.Lock()
	parts := append([]*partition(nil), t.partitions...)
	for i := cur; i < count; i++ {
		parts = append(parts, newPartition(t, i))
	}
	t.partitions = parts
	b.mu.Unlock()
	return nil
}

// setTopicConfigsLocked replaces t's explicit configs with next (already
// validated): in a cluster through the controller. adminMu must be held.
func (b *Broker) setTopicConfigsLocked(t *topic, next map[string]string) error {
	if b.ctl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// The reconciler needs adminMu, which the caller holds: wait only
		// for the log, then apply the change here.
		_, err := b.ctl.Propose(ctx, &replication.Request{SetConfigs: &replication.SetConfigs{
			TopicRef: replication.TopicRef{Name: t.name, ID: t.id}, Configs: next,
		}})
		if err != nil {
			var ce *replication.Error
			if errors.As(err, &ce) {
				return kerrf(kerr.ErrorForCode(ce.Code).(*kerr.Error), "%s", ce.Message)
			}
			return kerrf(kerr.RequestTimedOut, "controller: %v", err)
		}
	}
	return b.applyConfigsLocked(t, next)
}

// applyConfigsLocked sets t's configs locally. adminMu must be held.
func (b *Broker) applyConfigsLocked(t *topic, next map[string]string) error {
	if err := b.updateMetaTopicLocked(t, func(mt *metaTopic) { mt.Configs = maps.Clone(next) }); err != nil {
		return err
	}
	b.mu.Lock()
	t.configs = next
	b.mu.Unlock()
	b.applyTopicSettings(t)
	return nil
}

// topicPropagationWait bounds awaitTopicOnBrokers.
const topicPropagationWait = 3 * time.Second

// awaitTopicOnBrokers waits, at most topicPropagationWait, until every
// other live broker serves topic name with all of its partitions led: a
// client told the topic exists may ask any broker next, and one that has
// not applied the change yet answers UNKNOWN_TOPIC_OR_PARTITION or
// LEADER_NOT_AVAILABLE, after which clients back off for seconds (franz-go
// and librdkafka refresh metadata at most every 5 s once their quick
// retries are spent). A broker that does not answer (dead but not fenced
// yet, cut off) is not waited for, nor one that has not applied the change
// in time: the change is committed either way.
func (b *Broker) awaitTopicOnBrokers(name string, partitions int) {
	ctx, cancel := context.WithTimeout(context.Background(), topicPropagationWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, bi := range b.ctl.State().LiveBrokers() {
		if bi.ID == b.cfg.NodeID {
			continue
		}
		addr := bi.InternalAddr()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				serves, err := b.servesTopic(ctx, addr, name, partitions)
				if serves {
					return
				}
				if err != nil {
					// It does not answer (dead, not yet fenced, or cut
					// off): clients cannot ask it either.
					b.log.Debug("not waiting for a broker that does not answer to apply a topic change", "topic", name, "broker", bi.ID, "err", err)
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
			b.log.Debug("a broker has not applied a topic change in time; clients it answers will retry", "topic", name, "broker", bi.ID)
		}()
	}
	wg.Wait()
}

// servesTopic reports whether the broker at addr lists topic name with
// its partitions, each led; err is set when the broker did not answer.
func (b *Broker) servesTopic(ctx context.Context, addr, name string, partitions int) (bool, error) {
	cl, err := b.peers.client(addr)
	if err != nil {
		return false, err
	}
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false // asking, never creating
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(name)
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	// To that broker and no other: the client's own Request would route
	// a Metadata request to any broker it has learned of.
	kresp, err := cl.SeedBrokers()[0].Request(rctx, req)
	if err != nil {
		return false, err
	}
	resp := kresp.(*kmsg.MetadataResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) < partitions {
		return false, nil
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			return false, nil
		}
	}
	return true, nil
}
