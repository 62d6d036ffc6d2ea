package broker

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// AlterUserScramCredentials: v0
//
// Behavior:
// * Upserts and deletes SCRAM-SHA-256 and SCRAM-SHA-512 credentials
//   (KIP-554): the client sends the salt and salted password, the broker
//   keeps only the derived stored and server keys, in the controller state
//   (security.json standalone).
// * Per user: UNSUPPORTED_SASL_MECHANISM for an unknown mechanism,
//   UNACCEPTABLE_CREDENTIAL for an empty name or iterations outside
//   4096..16384, DUPLICATE_RESOURCE for a user altered twice in one
//   request, RESOURCE_NOT_FOUND for deleting a credential that is not there.
// * Needs ALTER on the cluster when an authorizer is set, else
//   CLUSTER_AUTHORIZATION_FAILED for every user.

func handleAlterUserSCRAMCredentials(c *conn, req *request) reply {
	r := req.Request.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := r.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	mech := func(code int8) string {
		if m, ok := security.MechanismName(code); ok {
			return m
		}
		return fmt.Sprintf("unknown mechanism %d", code)
	}
	ch := &replication.SecurityChange{}
	var users []string
	seen := map[string]bool{}
	note := func(u string) {
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	for _, d := range r.Deletions {
		ch.Deletions = append(ch.Deletions, security.ScramDeletion{User: d.Name, Mechanism: mech(d.Mechanism)})
		note(d.Name)
	}
	for _, u := range r.Upsertions {
		ch.Upserts = append(ch.Upserts, security.ScramUpsert{
			User: u.Name, Mechanism: mech(u.Mechanism), Iterations: u.Iterations, Salt: u.Salt, SaltedPassword: u.SaltedPassword,
		})
		note(u.Name)
	}
	failAll := func(code *kerr.Error, msg string) kmsg.Response {
		resp.Results = resp.Results[:0]
		for _, u := range users {
			res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			res.User, res.ErrorCode, res.ErrorMessage = u, code.Code, &msg
			resp.Results = append(resp.Results, res)
		}
		return resp
	}
	if !c.allowedCluster(kmsg.ACLOperationAlter) {
		return now(failAll(kerr.ClusterAuthorizationFailed, "ALTER on the cluster is needed to change SCRAM users"))
	}
	if len(users) == 0 {
		return now(resp)
	}
	return func() kmsg.Response {
		res, err := c.b.changeSecurity(c.ctx, ch)
		if err != nil {
			return failAll(kafkaErr(err), *errMessage(err))
		}
		for _, ur := range res.Users {
			out := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			out.User, out.ErrorCode = ur.User, ur.Code
			if ur.Code != 0 {
				msg := ur.Message
				out.ErrorMessage = &msg
			}
			resp.Results = append(resp.Results, out)
		}
		return resp
	}
}
