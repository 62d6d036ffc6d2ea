package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// CreateAcls: v0-3
//
// Behavior:
// * Adds each binding (literal or prefixed; ALLOW or DENY) to the
//   replicated ACLs; an invalid one gets INVALID_REQUEST with the reason,
//   the others are still added. Adding an existing binding succeeds.
// * Needs ALTER on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
// * Without CHRONIK_AUTHORIZER=acl: SECURITY_DISABLED.

func handleCreateACLs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.CreateACLsRequest)
	resp := r.ResponseKind().(*kmsg.CreateACLsResponse)
	resp.Results = make([]kmsg.CreateACLsResponseResult, len(r.Creations))
	failAll := func(code *kerr.Error, msg string) reply {
		for i := range resp.Results {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = code.Code, &msg
		}
		return now(resp)
	}
	if code, msg := c.aclChangeRefused("create ACLs"); code != nil {
		return failAll(code, msg)
	}
	if len(r.Creations) == 0 {
		return now(resp)
	}
	acls := make([]security.ACL, len(r.Creations))
	for i, cr := range r.Creations {
		acls[i] = security.ACL{
			ResourceType: cr.ResourceType, ResourceName: cr.ResourceName, PatternType: cr.ResourcePatternType,
			Principal: cr.Principal, Host: cr.Host, Operation: cr.Operation, Permission: cr.PermissionType,
		}
		if r.Version == 0 {
			acls[i].PatternType = kmsg.ACLResourcePatternTypeLiteral
		}
	}
	return func() kmsg.Response {
		res, err := c.b.changeSecurity(c.ctx, &replication.SecurityChange{CreateACLs: acls})
		if err != nil {
			return failAll(kafkaErr(err), *errMessage(err))()
		}
		for i := range resp.Results {
			if i < len(res.ACLErrors) && res.ACLErrors[i] != nil {
				e := res.ACLErrors[i]
				msg := e.Message
				resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = e.Code, &msg
			}
		}
		return resp
	}
}

// aclChangeRefused says why the connection may not change ACLs (to do
// what), or nil: without an authorizer there are none to change.
func (c *conn) aclChangeRefused(what string) (*kerr.Error, string) {
	switch {
	case c.b.cfg.Authorizer == nil:
		return kerr.SecurityDisabled, "no authorizer is configured: set CHRONIK_AUTHORIZER=acl"
	case !c.allowedCluster(kmsg.ACLOperationAlter):
		return kerr.ClusterAuthorizationFailed, "ALTER on the cluster is needed to " + what
	}
	return nil, ""
}
