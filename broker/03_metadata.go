package broker

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// Metadata: v0-12
//
// Behavior:
// * Standalone, this broker leads every partition with leader epoch 0;
//   replicas and ISR are [this broker].
// * In a cluster, brokers, leaders, leader epochs, replicas, ISRs and
//   offline replicas come from the controller's state; the controller ID is
//   the Raft leader. A broker without a current lease (cut off from the
//   quorum, or just resumed) answers LEADER_NOT_AVAILABLE with no leader for
//   every partition, so clients ask another broker instead of trusting
//   leadership that may have moved. The broker-local __consumer_offsets is
//   not listed.
// * Null topics (v1+) or an empty list (v0) mean every topic.
// * An unknown topic is created with the broker defaults when
//   CHRONIK_AUTO_CREATE_TOPICS is on and the request allows it (always for
//   v0-3, AllowAutoTopicCreation for v4+), as Kafka's
//   auto.create.topics.enable; otherwise UNKNOWN_TOPIC_OR_PARTITION. A
//   topic whose partitions would pass CHRONIK_MAX_PARTITIONS stays unknown
//   (UNKNOWN_TOPIC_OR_PARTITION).
// * v10+ topics may be named by ID; an unknown ID gets UNKNOWN_TOPIC_ID.
// * __consumer_offsets is marked internal.
// * ACLs: DESCRIBE on a topic, checked before it is looked up. Listing
//   every topic leaves out the ones denied; a named one gets
//   TOPIC_AUTHORIZATION_FAILED (by ID: with its ID, without its name).
//   Auto-creating also needs CREATE on the cluster or on the topic, else
//   TOPIC_AUTHORIZATION_FAILED. Authorized operations (v8+, the cluster's
//   v8-10) are filled when asked (the cluster's 0 without DESCRIBE on it),
//   every operation when no authorizer is set, as Kafka.

func handleMetadata(c *conn, req *request) reply {
	r := req.Request.(*kmsg.MetadataRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	cid := b.clusterID()
	resp.ClusterID = &cid
	if b.ctl != nil {
		st := b.ctl.State()
		for _, bi := range st.LiveBrokers() {
			br := kmsg.NewMetadataResponseBroker()
			br.NodeID = bi.ID
			br.Host, br.Port = endpoint(bi, c.ln.Name)
			resp.Brokers = append(resp.Brokers, br)
		}
		resp.ControllerID = b.ctl.LeaderID()
	} else {
		host, port := c.ln.host, c.ln.port
		br := kmsg.NewMetadataResponseBroker()
		br.NodeID, br.Host, br.Port = b.cfg.NodeID, host, port
		resp.Brokers = []kmsg.MetadataResponseBroker{br}
		resp.ControllerID = b.cfg.NodeID
	}

	// Topic and cluster authorized operations (KIP-430), when asked: v8+,
	// the cluster's only through v10.
	topicOps := r.Version >= 8 && r.IncludeTopicAuthorizedOperations
	if r.Version >= 8 && r.Version <= 10 && r.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = 0
		if c.allowedCluster(kmsg.ACLOperationDescribe) {
			resp.AuthorizedOperations = c.authorizedOperations(kmsg.ACLResourceTypeCluster, security.ClusterResourceName)
		}
	}
	add := func(st kmsg.MetadataResponseTopic, name string) {
		if topicOps {
			st.AuthorizedOperations = c.authorizedOperations(kmsg.ACLResourceTypeTopic, name)
		}
		resp.Topics = append(resp.Topics, st)
	}
	fail := func(name *string, id [16]byte, code *kerr.Error) {
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.TopicID, st.ErrorCode = name, id, code.Code
		resp.Topics = append(resp.Topics, st)
	}

	all := r.Topics == nil || (r.Version == 0 && len(r.Topics) == 0)
	if all {
		ts := b.snapshotTopics()
		sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
		for _, t := range ts {
			if c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t.name) {
				add(b.metadataTopic(t), t.name)
			}
		}
		return now(resp)
	}
	autoCreate := b.cfg.AutoCreateTopics && (r.Version < 4 || r.AllowAutoTopicCreation)
	clusterCreate := 0 // CREATE on the cluster: 0 not checked yet, 1 allowed, -1 denied
	mayCreate := func(name string) bool {
		if clusterCreate == 0 {
			clusterCreate = -1
			if c.allowedCluster(kmsg.ACLOperationCreate) {
				clusterCreate = 1
			}
		}
		return clusterCreate == 1 || c.allowed(kmsg.ACLOperationCreate, kmsg.ACLResourceTypeTopic, name)
	}
	for _, rt := range r.Topics {
		var t *topic
		if rt.Topic == nil {
			t = b.lookupTopicID(rt.TopicID)
			switch {
			case t == nil:
				fail(nil, rt.TopicID, kerr.UnknownTopicID)
				continue
			case !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t.name):
				// An ID is not secret; the name is.
				fail(nil, rt.TopicID, kerr.TopicAuthorizationFailed)
				continue
			}
		} else {
			name := *rt.Topic
			if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, name) {
				// Checked first, so a denied client cannot tell whether
				// the topic exists.
				fail(&name, [16]byte{}, kerr.TopicAuthorizationFailed)
				continue
			}
			t = b.lookupTopic(name)
			if t == nil && autoCreate {
				if !mayCreate(name) {
					fail(&name, [16]byte{}, kerr.TopicAuthorizationFailed)
					continue
				}
				var err error
				t, err = b.createTopic(name, -1, -1, nil, false)
				if err != nil && kafkaErr(err) == kerr.TopicAlreadyExists {
					t, err = b.lookupTopic(name), nil // created concurrently
				}
				if code := kafkaErr(err); code == kerr.PolicyViolation || code == kerr.InvalidPartitions {
					// Past CHRONIK_MAX_PARTITIONS: the topic stays unknown, as
					// with auto-creation off.
					b.log.Debug("topic not auto-created", "topic", name, "err", err)
					t, err = nil, nil
				}
				if err != nil {
					st := kmsg.NewMetadataResponseTopic()
					st.Topic, st.ErrorCode = &name, kafkaErr(err).Code
					add(st, name)
					continue
				}
			}
			if t == nil {
				st := kmsg.NewMetadataResponseTopic()
				st.Topic, st.ErrorCode = &name, kerr.UnknownTopicOrPartition.Code
				add(st, name)
				continue
			}
		}
		add(b.metadataTopic(t), t.name)
	}
	return now(resp)
}

// allowAll answers authorizedOperations without an authorizer: Kafka then
// reports every operation the resource type has.
var allowAll = &security.Authorizer{AllowIfNoACL: true}

// authorizedOperations is the connection's authorized-operations bitfield
// on a resource (KIP-430), for Metadata, DescribeCluster, DescribeGroups
// and ConsumerGroupDescribe.
func (c *conn) authorizedOperations(rt kmsg.ACLResourceType, name string) int32 {
	if az := c.b.cfg.Authorizer; az != nil {
		return az.AuthorizedOperations(c.b.secState(), c.auth.principal, c.host, rt, name)
	}
	return allowAll.AuthorizedOperations(nil, "", "", rt, name)
}

func (b *Broker) metadataTopic(t *topic) kmsg.MetadataResponseTopic {
	st := kmsg.NewMetadataResponseTopic()
	name := t.name
	st.Topic, st.TopicID = &name, t.id
	st.IsInternal = isInternalTopic(name) // hidden by admin tools, as in Kafka
	if b.ctl != nil {
		return b.clusterMetadataTopic(t, st)
	}
	n := b.topicPartitionCount(t)
	st.Partitions = make([]kmsg.MetadataResponseTopicPartition, n)
	for i := range st.Partitions {
		sp := kmsg.NewMetadataResponseTopicPartition()
		sp.Partition, sp.Leader, sp.LeaderEpoch = int32(i), b.cfg.NodeID, 0
		sp.Replicas, sp.ISR = []int32{b.cfg.NodeID}, []int32{b.cfg.NodeID}
		st.Partitions[i] = sp
	}
	return st
}

func (b *Broker) clusterMetadataTopic(t *topic, st kmsg.MetadataResponseTopic) kmsg.MetadataResponseTopic {
	cs := b.ctl.State()
	ti := cs.Topics[t.name]
	if ti == nil || [16]byte(ti.ID) != t.id {
		st.ErrorCode = kerr.UnknownTopicOrPartition.Code
		return st
	}
	current := b.ctl.Current()
	st.Partitions = make([]kmsg.MetadataResponseTopicPartition, len(ti.Partitions))
	for i, ps := range ti.Partitions {
		sp := kmsg.NewMetadataResponseTopicPartition()
		sp.Partition, sp.Leader, sp.LeaderEpoch = int32(i), ps.Leader, ps.LeaderEpoch
		sp.Replicas, sp.ISR = ps.Replicas, ps.ISR
		_, sp.OfflineReplicas = liveReplicas(cs, ps)
		if !current || ps.Leader == -1 {
			sp.Leader, sp.ErrorCode = -1, kerr.LeaderNotAvailable.Code
		}
		st.Partitions[i] = sp
	}
	return st
}
