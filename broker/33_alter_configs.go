package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterConfigs: v0-2
//
// Behavior:
// * Topic resources: the given configs replace the topic's whole set
//   (configs not named return to their defaults), as Kafka's legacy
//   AlterConfigs. Unknown names or bad values get INVALID_CONFIG and change
//   nothing. ValidateOnly checks without changing. Changes are durable before
//   the response.
// * Broker resources get INVALID_REQUEST: broker settings are static (flags,
//   env, config file).
// * ACLs: ALTER_CONFIGS on the topic (else TOPIC_AUTHORIZATION_FAILED) or
//   on the cluster for broker resources (else CLUSTER_AUTHORIZATION_FAILED),
//   per resource, as DescribeConfigs checks DESCRIBE_CONFIGS.

func handleAlterConfigs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.AlterConfigsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range r.Resources {
		rs := kmsg.NewAlterConfigsResponseResource()
		rs.ResourceType, rs.ResourceName = rr.ResourceType, rr.ResourceName
		if code := c.configsDenied(kmsg.ACLOperationAlterConfigs, rr.ResourceType, rr.ResourceName); code != nil {
			rs.ErrorCode = code.Code
			resp.Resources = append(resp.Resources, rs)
			continue
		}
		err := b.alterTopicConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(map[string]string) (map[string]string, error) {
			next := make(map[string]string, len(rr.Configs))
			for _, cfg := range rr.Configs {
				if err := validateTopicConfig(cfg.Name, cfg.Value); err != nil {
					return nil, kerrf(kerr.InvalidConfig, "%v", err)
				}
				next[cfg.Name] = *cfg.Value
			}
			return next, nil
		})
		if err != nil {
			rs.ErrorCode, rs.ErrorMessage = kafkaErr(err).Code, errMessage(err)
		}
		resp.Resources = append(resp.Resources, rs)
	}
	return now(resp)
}

// alterTopicConfigs computes a topic's new configs with edit and persists
// them; edit gets a copy of the current explicit configs.
func (b *Broker) alterTopicConfigs(typ kmsg.ConfigResourceType, name string, validateOnly bool, edit func(cur map[string]string) (map[string]string, error)) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return kerrf(kerr.InvalidRequest, "broker configs are static: set them with flags, CHRONIK_* env or the config file and restart")
	default:
		return kerrf(kerr.InvalidRequest, "only topic configs can be altered")
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t := b.lookupTopic(name)
	if t == nil {
		return kerrf(kerr.UnknownTopicOrPartition, "topic %q does not exist", name)
	}
	cur := make(map[string]string)
	for k, v := range b.topicConfigs(t) {
		cur[k] = v
	}
	next, err := edit(cur)
	if err != nil || validateOnly {
		return err
	}
	return b.setTopicConfigsLocked(t, next)
}
