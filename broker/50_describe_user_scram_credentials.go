package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// DescribeUserScramCredentials: v0
//
// Behavior:
// * Lists each SCRAM user's mechanisms and iteration counts (never salts
//   or keys); null or empty users mean every user. An unknown user gets
//   RESOURCE_NOT_FOUND, a user named twice DUPLICATE_RESOURCE.
// * Needs DESCRIBE on the cluster when an authorizer is set, else
//   CLUSTER_AUTHORIZATION_FAILED.

func handleDescribeUserSCRAMCredentials(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !c.allowedCluster(kmsg.ACLOperationDescribe) {
		msg := "DESCRIBE on the cluster is needed to list SCRAM users"
		resp.ErrorCode, resp.ErrorMessage = kerr.ClusterAuthorizationFailed.Code, &msg
		return now(resp)
	}
	st := c.b.secState()
	var names []string
	if len(r.Users) == 0 {
		names = st.UserNames()
	} else {
		for _, u := range r.Users {
			names = append(names, u.Name)
		}
	}
	seen := map[string]int{}
	for _, n := range names {
		seen[n]++
	}
	done := map[string]bool{}
	for _, name := range names {
		if done[name] {
			continue
		}
		done[name] = true
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = name
		var mechs []string
		if st != nil {
			for m := range st.Users[name] {
				mechs = append(mechs, m)
			}
		}
		slices.Sort(mechs)
		switch {
		case seen[name] > 1:
			msg := "user " + name + " is named more than once"
			res.ErrorCode, res.ErrorMessage = kerr.DuplicateResource.Code, &msg
		case len(mechs) == 0:
			msg := "no SCRAM credential for user " + name
			res.ErrorCode, res.ErrorMessage = kerr.ResourceNotFound.Code, &msg
		}
		if res.ErrorCode == 0 {
			for _, m := range mechs {
				code, ok := security.MechanismCode(m)
				if !ok {
					continue
				}
				ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
				ci.Mechanism, ci.Iterations = code, st.Users[name][m].Iterations
				res.CredentialInfos = append(res.CredentialInfos, ci)
			}
		}
		resp.Results = append(resp.Results, res)
	}
	return now(resp)
}
