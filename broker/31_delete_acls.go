package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// DeleteAcls: v0-3
//
// Behavior:
// * Removes every binding matching each filter (Kafka's AclBindingFilter)
//   and returns, per filter, the bindings it matched; an invalid filter
//   gets INVALID_REQUEST and removes nothing.
// * Needs ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
// * Without CHRONIK_AUTHORIZER=acl: SECURITY_DISABLED.

func handleDeleteACLs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DeleteACLsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(r.Filters))
	failAll := func(code *kerr.Error, msg string) reply {
		for i := range resp.Results {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code.Code, &msg
		}
		return now(resp)
	}
	if code, msg := c.aclChangeRefused("delete ACLs"); code != nil {
		return failAll(code, msg)
	}
	if len(r.Filters) == 0 {
		return now(resp)
	}
	filters := make([]security.ACLFilter, len(r.Filters))
	for i, f := range r.Filters {
		filters[i] = security.ACLFilter{
			ResourceType: f.ResourceType, ResourceName: f.ResourceName, PatternType: f.ResourcePatternType,
			Principal: f.Principal, Host: f.Host, Operation: f.Operation, Permission: f.PermissionType,
		}
		if r.Version == 0 {
			filters[i].PatternType = kmsg.ACLResourcePatternTypeLiteral
		}
	}
	return func() kmsg.Response {
		res, err := c.b.changeSecurity(c.ctx, &replication.SecurityChange{DeleteACLs: filters})
		if err != nil {
			return failAll(kafkaErr(err), *errMessage(err))()
		}
		for i := range resp.Results {
			if i < len(res.ACLErrors) && res.ACLErrors[i] != nil {
				e := res.ACLErrors[i]
				msg := e.Message
				resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = e.Code, &msg
				continue
			}
			if i >= len(res.DeletedACL) {
				continue
			}
			for _, a := range res.DeletedACL[i] {
				m := kmsg.NewDeleteACLsResponseResultMatchingACL()
				m.ResourceType, m.ResourceName, m.ResourcePatternType = a.ResourceType, a.ResourceName, a.PatternType
				m.Principal, m.Host, m.Operation, m.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
				resp.Results[i].MatchingACLs = append(resp.Results[i].MatchingACLs, m)
			}
		}
		return resp
	}
}
