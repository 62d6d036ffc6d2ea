package broker

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// IncrementalAlterConfigs: v0-1
//
// Behavior:
// * Topic resources: SET, DELETE (back to the default), APPEND and SUBTRACT
//   (list configs such as cleanup.policy) applied in order; any invalid
//   operation fails the whole resource and changes nothing. ValidateOnly
//   checks without changing. Durable before the response.
// * Broker resources get INVALID_REQUEST (static settings).
// * ACLs: ALTER_CONFIGS per resource, as AlterConfigs checks it.

func handleIncrementalAlterConfigs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.IncrementalAlterConfigsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range r.Resources {
		rs := kmsg.NewIncrementalAlterConfigsResponseResource()
		rs.ResourceType, rs.ResourceName = rr.ResourceType, rr.ResourceName
		if code := c.configsDenied(kmsg.ACLOperationAlterConfigs, rr.ResourceType, rr.ResourceName); code != nil {
			rs.ErrorCode = code.Code
			resp.Resources = append(resp.Resources, rs)
			continue
		}
		err := b.alterTopicConfigs(rr.ResourceType, rr.ResourceName, r.ValidateOnly, func(cur map[string]string) (map[string]string, error) {
			for _, op := range rr.Configs {
				if err := applyConfigOp(cur, op); err != nil {
					return nil, err
				}
			}
			return cur, nil
		})
		if err != nil {
			rs.ErrorCode, rs.ErrorMessage = kafkaErr(err).Code, errMessage(err)
		}
		resp.Resources = append(resp.Resources, rs)
	}
	return now(resp)
}

func applyConfigOp(cur map[string]string, op kmsg.IncrementalAlterConfigsRequestResourceConfig) error {
	d, ok := topicConfigDefs[op.Name]
	if !ok {
		return kerrf(kerr.InvalidConfig, "unknown topic config %q", op.Name)
	}
	listOp := op.Op == kmsg.IncrementalAlterConfigOpAppend || op.Op == kmsg.IncrementalAlterConfigOpSubtract
	if listOp && d.typ != kmsg.ConfigTypeList {
		return kerrf(kerr.InvalidConfig, "%s is not a list config; use SET", op.Name)
	}
	switch op.Op {
	case kmsg.IncrementalAlterConfigOpSet:
		if err := validateTopicConfig(op.Name, op.Value); err != nil {
			return kerrf(kerr.InvalidConfig, "%v", err)
		}
		cur[op.Name] = *op.Value
	case kmsg.IncrementalAlterConfigOpDelete:
		delete(cur, op.Name)
	case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
		if op.Value == nil {
			return kerrf(kerr.InvalidConfig, "%s: null value", op.Name)
		}
		v, ok := cur[op.Name]
		if !ok {
			v = d.def(nil)
		}
		items := splitList(v)
		for _, it := range splitList(*op.Value) {
			i := slices.Index(items, it)
			if op.Op == kmsg.IncrementalAlterConfigOpAppend && i < 0 {
				items = append(items, it)
			} else if op.Op == kmsg.IncrementalAlterConfigOpSubtract && i >= 0 {
				items = slices.Delete(items, i, i+1)
			}
		}
		joined := strings.Join(items, ",")
		if err := validateTopicConfig(op.Name, &joined); err != nil {
			return kerrf(kerr.InvalidConfig, "%v", err)
		}
		cur[op.Name] = joined
	default:
		return kerrf(kerr.InvalidRequest, "unknown config operation %d", op.Op)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
