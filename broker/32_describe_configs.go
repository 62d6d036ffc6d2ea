package broker

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeConfigs: v0-4
//
// Behavior:
// * Topic resources: every topic config Chronik knows, with its value and
//   source (DYNAMIC_TOPIC_CONFIG when set on the topic, DEFAULT_CONFIG
//   otherwise), type (v3+), documentation (v3+ when asked) and synonyms
//   (v1+ when asked). ConfigNames filters.
// * Broker resources (name "" or this broker's ID): the broker settings that
//   shape topics, read-only (they come from flags, env or the config file).
// * Other resource types get INVALID_REQUEST.
// * ACLs: DESCRIBE_CONFIGS on the topic (else TOPIC_AUTHORIZATION_FAILED),
//   or on the cluster for broker, broker-logger and client-metrics
//   resources (else CLUSTER_AUTHORIZATION_FAILED), or on the group for
//   group resources (else GROUP_AUTHORIZATION_FAILED), per resource.

func handleDescribeConfigs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeConfigsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range r.Resources {
		rs := kmsg.NewDescribeConfigsResponseResource()
		rs.ResourceType, rs.ResourceName = rr.ResourceType, rr.ResourceName
		want := func(name string) bool {
			if rr.ConfigNames == nil {
				return true
			}
			for _, n := range rr.ConfigNames {
				if n == name {
					return true
				}
			}
			return false
		}
		add := func(name, value string, source kmsg.ConfigSource, readOnly bool, typ kmsg.ConfigType, doc string) {
			if !want(name) {
				return
			}
			cfg := kmsg.NewDescribeConfigsResponseResourceConfig()
			cfg.Name, cfg.Value, cfg.ReadOnly, cfg.Source, cfg.ConfigType = name, &value, readOnly, source, typ
			cfg.IsDefault = source == kmsg.ConfigSourceDefaultConfig
			if r.IncludeDocumentation {
				cfg.Documentation = &doc
			}
			if r.IncludeSynonyms {
				syn := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				syn.Name, syn.Value, syn.Source = name, &value, source
				cfg.ConfigSynonyms = append(cfg.ConfigSynonyms, syn)
			}
			rs.Configs = append(rs.Configs, cfg)
		}
		if code := c.configsDenied(kmsg.ACLOperationDescribeConfigs, rr.ResourceType, rr.ResourceName); code != nil {
			rs.ErrorCode = code.Code
			resp.Resources = append(resp.Resources, rs)
			continue
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t := b.lookupTopic(rr.ResourceName)
			if t == nil {
				rs.ErrorCode = kerr.UnknownTopicOrPartition.Code
				msg := "topic " + strconv.Quote(rr.ResourceName) + " does not exist"
				rs.ErrorMessage = &msg
				break
			}
			for _, name := range sortedConfigNames() {
				d := topicConfigDefs[name]
				v, isDefault := b.effectiveConfig(t, name)
				src := kmsg.ConfigSourceDynamicTopicConfig
				if isDefault {
					src = kmsg.ConfigSourceDefaultConfig
				}
				add(name, v, src, false, d.typ, d.doc)
			}
		case kmsg.ConfigResourceTypeBroker:
			if rr.ResourceName != "" && rr.ResourceName != strconv.Itoa(int(b.cfg.NodeID)) {
				rs.ErrorCode = kerr.InvalidRequest.Code
				msg := "this is broker " + strconv.Itoa(int(b.cfg.NodeID))
				rs.ErrorMessage = &msg
				break
			}
			for _, s := range b.brokerConfigs() {
				add(s.name, s.value, kmsg.ConfigSourceStaticBrokerConfig, true, s.typ, s.doc)
			}
		default:
			rs.ErrorCode = kerr.InvalidRequest.Code
			msg := "only topic and broker configs can be described"
			rs.ErrorMessage = &msg
		}
		resp.Resources = append(resp.Resources, rs)
	}
	return now(resp)
}

// configsDenied is the error of a config resource on which the principal
// may not perform op (DESCRIBE_CONFIGS or ALTER_CONFIGS), as Kafka checks
// it; nil when allowed, and for types no ACL covers.
func (c *conn) configsDenied(op kmsg.ACLOperation, typ kmsg.ConfigResourceType, name string) *kerr.Error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if !c.allowed(op, kmsg.ACLResourceTypeTopic, name) {
			return kerr.TopicAuthorizationFailed
		}
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger, kmsg.ConfigResourceTypeClientMetrics:
		if !c.allowedCluster(op) {
			return kerr.ClusterAuthorizationFailed
		}
	case kmsg.ConfigResourceTypeGroupConfig:
		if !c.allowed(op, kmsg.ACLResourceTypeGroup, name) {
			return kerr.GroupAuthorizationFailed
		}
	}
	return nil
}

type brokerConfig struct {
	name, value, doc string
	typ              kmsg.ConfigType
}

func (b *Broker) brokerConfigs() []brokerConfig {
	bs := func(v bool) string { return strconv.FormatBool(v) }
	return []brokerConfig{
		{"auto.create.topics.enable", bs(b.cfg.AutoCreateTopics), "CHRONIK_AUTO_CREATE_TOPICS", kmsg.ConfigTypeBoolean},
		{"broker.id", strconv.Itoa(int(b.cfg.NodeID)), "CHRONIK_NODE_ID", kmsg.ConfigTypeInt},
		{"default.replication.factor", strconv.Itoa(int(b.cfg.DefaultReplicationFactor)), "CHRONIK_DEFAULT_REPLICATION_FACTOR", kmsg.ConfigTypeInt},
		{"log.dirs", b.cfg.DataDir, "CHRONIK_DATA_DIR", kmsg.ConfigTypeString},
		{"log.message.timestamp.after.max.ms", strconv.FormatInt(b.cfg.MessageTimestampAfterMaxMs, 10), "CHRONIK_MESSAGE_TIMESTAMP_AFTER_MAX_MS", kmsg.ConfigTypeLong},
		{"log.message.timestamp.before.max.ms", strconv.FormatInt(b.cfg.MessageTimestampBeforeMaxMs, 10), "CHRONIK_MESSAGE_TIMESTAMP_BEFORE_MAX_MS", kmsg.ConfigTypeLong},
		{"message.max.bytes", strconv.Itoa(int(b.cfg.MessageMaxBytes)), "CHRONIK_MESSAGE_MAX_BYTES", kmsg.ConfigTypeInt},
		{"min.insync.replicas", strconv.Itoa(int(b.cfg.MinInsyncReplicas)), "CHRONIK_MIN_INSYNC_REPLICAS", kmsg.ConfigTypeInt},
		{"num.partitions", strconv.Itoa(int(b.cfg.DefaultPartitions)), "CHRONIK_DEFAULT_PARTITIONS", kmsg.ConfigTypeInt},
		{"producer.id.expiration.ms", strconv.FormatInt(b.cfg.ProducerIDExpiration.Milliseconds(), 10), "CHRONIK_PRODUCER_ID_EXPIRATION_MS", kmsg.ConfigTypeInt},
		{"socket.request.max.bytes", strconv.Itoa(int(b.cfg.MaxRequestBytes)), "CHRONIK_MAX_REQUEST_BYTES", kmsg.ConfigTypeInt},
	}
}
