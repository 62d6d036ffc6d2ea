package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreateTopics: v0-7
//
// Behavior:
// * Names are validated as Kafka does (INVALID_TOPIC_EXCEPTION); an existing
//   topic gets TOPIC_ALREADY_EXISTS; -1 partitions or replication factor
//   take the broker defaults; a replication factor above the live brokers
//   gets INVALID_REPLICATION_FACTOR; unknown or invalid configs get
//   INVALID_CONFIG. ValidateOnly checks without creating.
// * Partitions past CHRONIK_MAX_PARTITIONS, all topics together, get
//   POLICY_VIOLATION naming the limit; a count above it on its own gets
//   INVALID_PARTITIONS.
// * The topic is durable (metadata fsynced) before the response.
// * v5+ returns partitions, replication factor and the effective configs;
//   v7 returns the topic ID.
// * ACLs: CREATE on the cluster or on the topic, else
//   TOPIC_AUTHORIZATION_FAILED. A created topic's partitions, replication
//   factor and configs are returned only with DESCRIBE_CONFIGS on it
//   (else ConfigErrorCode TOPIC_AUTHORIZATION_FAILED), as Kafka.
//
// * In a cluster the request goes to the Raft controller (from whichever
//   broker took it), which places replicas on live brokers, spreading
//   preferred leaders; the answer comes once this broker applied it.
//
// Deviations:
// * Manual replica assignments are rejected with INVALID_REQUEST: the
//   controller places replicas.

func handleCreateTopics(c *conn, req *request) reply {
	r := req.Request.(*kmsg.CreateTopicsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := make(map[string]int, len(r.Topics))
	for _, rt := range r.Topics {
		seen[rt.Topic]++
	}
	clusterCreate := c.allowedCluster(kmsg.ACLOperationCreate)
	for _, rt := range r.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		var err error
		switch {
		case seen[rt.Topic] > 1:
			err = kerrf(kerr.InvalidRequest, "topic %q is named more than once in the request", rt.Topic)
		case !clusterCreate && !c.allowed(kmsg.ACLOperationCreate, kmsg.ACLResourceTypeTopic, rt.Topic):
			err = kerrf(kerr.TopicAuthorizationFailed, "not authorized to create topic %q", rt.Topic)
		case len(rt.ReplicaAssignment) > 0:
			err = kerrf(kerr.InvalidRequest, "manual replica assignment is not supported; give a partition count instead")
		default:
			configs := make(map[string]*string, len(rt.Configs))
			for _, cfg := range rt.Configs {
				configs[cfg.Name] = cfg.Value
			}
			var t *topic
			t, err = b.createTopic(rt.Topic, rt.NumPartitions, rt.ReplicationFactor, configs, r.ValidateOnly)
			if err == nil && !c.allowed(kmsg.ACLOperationDescribeConfigs, kmsg.ACLResourceTypeTopic, rt.Topic) {
				st.ConfigErrorCode = kerr.TopicAuthorizationFailed.Code
				if t != nil {
					st.TopicID = t.id
				}
			} else if err == nil {
				st.NumPartitions, st.ReplicationFactor = rt.NumPartitions, rt.ReplicationFactor
				if st.NumPartitions == -1 {
					st.NumPartitions = b.cfg.DefaultPartitions
				}
				if st.ReplicationFactor == -1 {
					st.ReplicationFactor = b.defaultReplicationFactor()
				}
				if t != nil {
					st.TopicID = t.id
					for _, name := range sortedConfigNames() {
						v, isDefault := b.effectiveConfig(t, name)
						rc := kmsg.NewCreateTopicsResponseTopicConfig()
						rc.Name, rc.Value = name, &v
						rc.Source = int8(kmsg.ConfigSourceDynamicTopicConfig)
						if isDefault {
							rc.Source = int8(kmsg.ConfigSourceDefaultConfig)
						}
						st.Configs = append(st.Configs, rc)
					}
				}
			}
		}
		if err != nil {
			st.ErrorCode, st.ErrorMessage = kafkaErr(err).Code, errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}
