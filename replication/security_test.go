package replication

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// TestSecurityChangesApplyAndSurviveSnapshot applies user and ACL changes
// as the FSM does, checks their per-item results, and checks that a
// snapshot of the state carries them (what a restarted or new node
// restores).
func TestSecurityChangesApplyAndSurviveSnapshot(t *testing.T) {
	s := threeBrokers(t)
	salt := []byte("0123456789abcdef")
	salted, err := security.SaltPassword(security.MechanismScramSHA512, "alice-secret", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	n, res := apply(s, &Command{Security: &SecurityChange{Upserts: []security.ScramUpsert{
		{User: "alice", Mechanism: security.MechanismScramSHA512, Iterations: 4096, Salt: salt, SaltedPassword: salted},
		{User: "", Mechanism: security.MechanismScramSHA512, Iterations: 4096, Salt: salt, SaltedPassword: salted},
	}}})
	if res.Err != nil || res.Security == nil || len(res.Security.Users) != 2 {
		t.Fatalf("upsert result %+v", res)
	}
	if res.Security.Users[0].Code != 0 || res.Security.Users[1].Code == 0 {
		t.Fatalf("user results %+v: want alice accepted and the empty name refused", res.Security.Users)
	}
	if s.Security != nil {
		t.Fatal("applying modified the previous state")
	}
	acl := security.ACL{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "orders", PatternType: kmsg.ACLResourcePatternTypeLiteral,
		Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}
	n = mustApply(t, n, &Command{Security: &SecurityChange{CreateACLs: []security.ACL{acl}}})

	snap, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := unmarshalState(snap)
	if err != nil {
		t.Fatal(err)
	}
	cred, ok := restored.Security.Credential("alice", security.MechanismScramSHA512)
	if !ok || !security.VerifyPassword(security.MechanismScramSHA512, cred, "alice-secret") {
		t.Fatal("alice's credential did not survive the snapshot")
	}
	az := security.Authorizer{}
	if !az.Authorize(restored.Security, "User:alice", "10.0.0.1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "orders") {
		t.Fatal("alice's ACL did not survive the snapshot")
	}

	n, res = apply(n, &Command{Security: &SecurityChange{DeleteACLs: []security.ACLFilter{{
		ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny,
		Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny,
	}}}})
	if res.Err != nil || len(res.Security.DeletedACL) != 1 || len(res.Security.DeletedACL[0]) != 1 {
		t.Fatalf("delete result %+v", res)
	}
	if _, res := apply(n, &Command{Security: &SecurityChange{}}); res.Err == nil {
		t.Fatal("an empty security change applied")
	}
}

// A bootstrap upsert (CreateOnly) creates a missing credential and leaves
// an existing one alone, however stale the proposer's view was.
func TestSecurityCreateOnlyKeepsExistingPassword(t *testing.T) {
	upsert := func(password string) *SecurityChange {
		salt := []byte("salt-" + password)
		salted, err := security.SaltPassword(security.MechanismScramSHA512, password, salt, 4096)
		if err != nil {
			t.Fatal(err)
		}
		return &SecurityChange{CreateOnly: true, Upserts: []security.ScramUpsert{
			{User: "admin", Mechanism: security.MechanismScramSHA512, Iterations: 4096, Salt: salt, SaltedPassword: salted},
		}}
	}
	s := mustApply(t, NewState(), &Command{Security: upsert("first")})
	s, res := apply(s, &Command{Security: upsert("second")})
	if res.Err != nil || len(res.Security.Users) != 0 {
		t.Fatalf("second bootstrap: %+v, want nothing applied", res)
	}
	cred, _ := s.Security.Credential("admin", security.MechanismScramSHA512)
	if !security.VerifyPassword(security.MechanismScramSHA512, cred, "first") {
		t.Fatal("a bootstrap upsert replaced an existing password")
	}
}
