package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// DescribeAcls: v0-3
//
// Behavior:
// * Lists the bindings matching the filter (Kafka's AclBindingFilter:
//   ANY and MATCH pattern types, null name, principal and host match
//   everything), grouped by resource.
// * Needs DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
// * Without CHRONIK_AUTHORIZER=acl: SECURITY_DISABLED, as Kafka with no
//   authorizer.

func handleDescribeACLs(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeACLsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeACLsResponse)
	fail := func(code *kerr.Error, msg string) reply {
		resp.ErrorCode, resp.ErrorMessage = code.Code, &msg
		return now(resp)
	}
	if c.b.cfg.Authorizer == nil {
		return fail(kerr.SecurityDisabled, "no authorizer is configured: set CHRONIK_AUTHORIZER=acl")
	}
	if !c.allowedCluster(kmsg.ACLOperationDescribe) {
		return fail(kerr.ClusterAuthorizationFailed, "DESCRIBE on the cluster is needed to list ACLs")
	}
	f := security.ACLFilter{
		ResourceType: r.ResourceType, ResourceName: r.ResourceName, PatternType: r.ResourcePatternType,
		Principal: r.Principal, Host: r.Host, Operation: r.Operation, Permission: r.PermissionType,
	}
	if r.Version == 0 {
		f.PatternType = kmsg.ACLResourcePatternTypeLiteral
	}
	if err := f.Validate(); err != nil {
		return fail(kerr.ErrorForCode(err.Code).(*kerr.Error), err.Message)
	}
	type resKey struct {
		rt   kmsg.ACLResourceType
		name string
		pt   kmsg.ACLResourcePatternType
	}
	index := map[resKey]int{}
	for _, a := range c.b.secState().DescribeACLs(f) {
		k := resKey{a.ResourceType, a.ResourceName, a.PatternType}
		i, ok := index[k]
		if !ok {
			res := kmsg.NewDescribeACLsResponseResource()
			res.ResourceType, res.ResourceName, res.ResourcePatternType = k.rt, k.name, k.pt
			resp.Resources = append(resp.Resources, res)
			i = len(resp.Resources) - 1
			index[k] = i
		}
		acl := kmsg.NewDescribeACLsResponseResourceACL()
		acl.Principal, acl.Host, acl.Operation, acl.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, acl)
	}
	return now(resp)
}
