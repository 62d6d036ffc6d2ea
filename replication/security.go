package replication

import "github.com/chronik-go/chronik/security"

// SecurityChange alters the SCRAM users or the ACLs (one kind per
// command). It is both a Request (proposed by the broker that took the
// client's AlterUserScramCredentials, CreateAcls or DeleteAcls) and the
// Command it becomes: the change functions in package security are
// deterministic, so every node applying it reaches the same State.
type SecurityChange struct {
	Upserts    []security.ScramUpsert   `json:"upserts,omitempty"`
	Deletions  []security.ScramDeletion `json:"deletions,omitempty"`
	CreateACLs []security.ACL           `json:"create_acls,omitempty"`
	DeleteACLs []security.ACLFilter     `json:"delete_acls,omitempty"`
	// CreateOnly applies only the upserts of credentials that do not exist
	// when the command applies: bootstrap users, which must never reset a
	// password changed since, whatever the proposing broker's view was.
	CreateOnly bool `json:"create_only,omitempty"`
	// Adopt takes in a standalone broker's users and ACLs when it grows
	// into a cluster: applied only while the cluster has none of its own.
	Adopt *security.State `json:"adopt,omitempty"`
}

// SecurityResult is what applying a SecurityChange returned, per item in
// the order of the change.
type SecurityResult struct {
	Users      []security.UserResult `json:"users,omitempty"`
	ACLErrors  []*security.Error     `json:"acl_errors,omitempty"`
	DeletedACL [][]security.ACL      `json:"deleted_acls,omitempty"`
	Adopted    bool                  `json:"adopted,omitempty"`
}

// Apply returns the security state after the change and its outcome;
// s is not modified. A standalone broker applies changes with it too.
func (c *SecurityChange) Apply(s *security.State) (*security.State, SecurityResult, *Error) {
	var res SecurityResult
	switch {
	case len(c.Upserts) > 0 || len(c.Deletions) > 0:
		upserts := c.Upserts
		if c.CreateOnly {
			upserts = nil
			for _, u := range c.Upserts {
				if _, ok := s.Credential(u.User, u.Mechanism); !ok {
					upserts = append(upserts, u)
				}
			}
			if len(upserts) == 0 && len(c.Deletions) == 0 {
				break
			}
		}
		s, res.Users = s.AlterScram(upserts, c.Deletions)
	case len(c.CreateACLs) > 0:
		s, res.ACLErrors = s.CreateACLs(c.CreateACLs)
	case len(c.DeleteACLs) > 0:
		s, res.DeletedACL, res.ACLErrors = s.DeleteACLs(c.DeleteACLs)
	case c.Adopt != nil:
		if s.Empty() && !c.Adopt.Empty() {
			s, res.Adopted = c.Adopt, true
		}
	default:
		return s, res, errorf(CodeInvalidRequest, "empty security change")
	}
	return s, res, nil
}

func applySecurity(s *State, c *SecurityChange) (*State, Result) {
	sec, res, err := c.Apply(s.Security)
	if err != nil {
		return s, Result{Err: err}
	}
	n := s
	if sec != s.Security {
		n = s.clone()
		n.Security = sec
	}
	return n, Result{Security: &res}
}
