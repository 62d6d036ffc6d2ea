package security

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stateTestUpsert is a valid upsert of password pw.
func stateTestUpsert(t testing.TB, user, mech, pw string) ScramUpsert {
	t.Helper()
	salt := []byte("salt-of-" + user)
	salted, err := SaltPassword(mech, pw, salt, MinScramIterations)
	if err != nil {
		t.Fatal(err)
	}
	return ScramUpsert{User: user, Mechanism: mech, Iterations: MinScramIterations, Salt: salt, SaltedPassword: salted}
}

// stateTestMechs lists each user's mechanisms, to compare states briefly.
func stateTestMechs(s *State) map[string][]string {
	out := map[string][]string{}
	for _, u := range s.UserNames() {
		out[u] = s.Mechanisms(u)
	}
	return out
}

func TestAlterScram(t *testing.T) {
	const (
		s256 = MechanismScramSHA256
		s512 = MechanismScramSHA512
	)
	base, results := (*State)(nil).AlterScram([]ScramUpsert{
		stateTestUpsert(t, "alice", s256, "a"),
		stateTestUpsert(t, "alice", s512, "a"),
		stateTestUpsert(t, "bob", s256, "b"),
	}, nil)
	if diff := cmp.Diff([]UserResult{{User: "alice"}, {User: "bob"}}, results); diff != "" {
		t.Fatalf("setup results (-want +got):\n%s", diff)
	}
	baseMechs := map[string][]string{"alice": {s256, s512}, "bob": {s256}}
	if diff := cmp.Diff(baseMechs, stateTestMechs(base)); diff != "" {
		t.Fatalf("setup state (-want +got):\n%s", diff)
	}

	bad := func(u ScramUpsert, f func(*ScramUpsert)) ScramUpsert { f(&u); return u }
	var (
		dup        = kerr.DuplicateResource.Code
		unaccept   = kerr.UnacceptableCredential.Code
		unsupMech  = kerr.UnsupportedSaslMechanism.Code
		notFound   = kerr.ResourceNotFound.Code
		dupMessage = "A user credential cannot be altered twice in the same request"
	)
	for _, tc := range []struct {
		name      string
		upserts   []ScramUpsert
		deletions []ScramDeletion
		want      []UserResult
		wantMechs map[string][]string
	}{
		{
			name:      "nothing",
			want:      []UserResult{},
			wantMechs: baseMechs,
		},
		{
			name:      "add a user and replace a credential",
			upserts:   []ScramUpsert{stateTestUpsert(t, "carol", s512, "c"), stateTestUpsert(t, "bob", s256, "new")},
			want:      []UserResult{{User: "carol"}, {User: "bob"}},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s256}, "carol": {s512}},
		},
		{
			name:      "both mechanisms for one user in one request",
			upserts:   []ScramUpsert{stateTestUpsert(t, "carol", s256, "c"), stateTestUpsert(t, "carol", s512, "c")},
			want:      []UserResult{{User: "carol"}},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s256}, "carol": {s256, s512}},
		},
		{
			name:      "delete one mechanism, upsert another",
			upserts:   []ScramUpsert{stateTestUpsert(t, "bob", s512, "b")},
			deletions: []ScramDeletion{{"bob", s256}},
			want:      []UserResult{{User: "bob"}},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s512}},
		},
		{
			name:      "deleting the last credential removes the user",
			deletions: []ScramDeletion{{"bob", s256}, {"alice", s512}},
			want:      []UserResult{{User: "bob"}, {User: "alice"}},
			wantMechs: map[string][]string{"alice": {s256}},
		},
		{
			name:      "empty user name",
			upserts:   []ScramUpsert{stateTestUpsert(t, "", s256, "x"), stateTestUpsert(t, "carol", s256, "c")},
			want:      []UserResult{{User: "", Code: unaccept, Message: "Username must not be empty"}, {User: "carol"}},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s256}, "carol": {s256}},
		},
		{
			name:      "empty user name in a deletion",
			deletions: []ScramDeletion{{"", s256}},
			want:      []UserResult{{User: "", Code: unaccept, Message: "Username must not be empty"}},
			wantMechs: baseMechs,
		},
		{
			name:      "unknown mechanism",
			upserts:   []ScramUpsert{bad(stateTestUpsert(t, "carol", s256, "c"), func(u *ScramUpsert) { u.Mechanism = "SCRAM-SHA-1" })},
			deletions: []ScramDeletion{{"bob", "PLAIN"}},
			want: []UserResult{
				{User: "bob", Code: unsupMech, Message: "Unknown SCRAM mechanism"},
				{User: "carol", Code: unsupMech, Message: "Unknown SCRAM mechanism"},
			},
			wantMechs: baseMechs,
		},
		{
			name: "iterations out of bounds",
			upserts: []ScramUpsert{
				bad(stateTestUpsert(t, "carol", s256, "c"), func(u *ScramUpsert) { u.Iterations = MinScramIterations - 1 }),
				bad(stateTestUpsert(t, "dave", s256, "d"), func(u *ScramUpsert) { u.Iterations = MaxScramIterations + 1 }),
				bad(stateTestUpsert(t, "erin", s256, "e"), func(u *ScramUpsert) { u.Iterations = MaxScramIterations }),
			},
			want: []UserResult{
				{User: "carol", Code: unaccept, Message: "Too few iterations"},
				{User: "dave", Code: unaccept, Message: "Too many iterations"},
				{User: "erin"},
			},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s256}, "erin": {s256}},
		},
		{
			name: "salt or salted password unusable",
			upserts: []ScramUpsert{
				bad(stateTestUpsert(t, "carol", s256, "c"), func(u *ScramUpsert) { u.Salt = nil }),
				bad(stateTestUpsert(t, "dave", s512, "d"), func(u *ScramUpsert) { u.SaltedPassword = u.SaltedPassword[:32] }),
			},
			want: []UserResult{
				{User: "carol", Code: unaccept, Message: "security: invalid SCRAM credential: salt of 0 bytes, want 1 to 1024"},
				{User: "dave", Code: unaccept, Message: "security: invalid SCRAM credential: salted password of 32 bytes, SCRAM-SHA-512 needs 64"},
			},
			wantMechs: baseMechs,
		},
		{
			name:      "delete a credential that does not exist",
			deletions: []ScramDeletion{{"bob", s512}, {"zed", s256}, {"alice", s256}},
			want: []UserResult{
				{User: "bob", Code: notFound, Message: "Attempt to delete a user credential that does not exist"},
				{User: "zed", Code: notFound, Message: "Attempt to delete a user credential that does not exist"},
				{User: "alice"},
			},
			wantMechs: map[string][]string{"alice": {s512}, "bob": {s256}},
		},
		{
			name:      "deletion and upsert of the same mechanism",
			upserts:   []ScramUpsert{stateTestUpsert(t, "alice", s256, "new"), stateTestUpsert(t, "bob", s512, "b")},
			deletions: []ScramDeletion{{"alice", s256}},
			want:      []UserResult{{User: "alice", Code: dup, Message: dupMessage}, {User: "bob"}},
			wantMechs: map[string][]string{"alice": {s256, s512}, "bob": {s256, s512}},
		},
		{
			name:      "the same upsert twice",
			upserts:   []ScramUpsert{stateTestUpsert(t, "carol", s256, "c"), stateTestUpsert(t, "carol", s512, "c"), stateTestUpsert(t, "carol", s256, "c")},
			want:      []UserResult{{User: "carol", Code: dup, Message: dupMessage}},
			wantMechs: baseMechs,
		},
		{
			name:      "the same deletion twice",
			deletions: []ScramDeletion{{"alice", s512}, {"alice", s512}, {"bob", s256}},
			want:      []UserResult{{User: "alice", Code: dup, Message: dupMessage}, {User: "bob"}},
			wantMechs: map[string][]string{"alice": {s256, s512}},
		},
		{
			name:      "duplicate wins over other errors",
			upserts:   []ScramUpsert{bad(stateTestUpsert(t, "carol", s256, "c"), func(u *ScramUpsert) { u.Iterations = 1 }), stateTestUpsert(t, "carol", s256, "c")},
			want:      []UserResult{{User: "carol", Code: dup, Message: dupMessage}},
			wantMechs: baseMechs,
		},
		{
			name: "one bad alteration fails all of the user's",
			upserts: []ScramUpsert{
				stateTestUpsert(t, "alice", s256, "new"),
				bad(stateTestUpsert(t, "bob", s512, "b"), func(u *ScramUpsert) { u.Iterations = 1 }),
			},
			deletions: []ScramDeletion{{"alice", s512}, {"bob", s256}},
			want: []UserResult{
				{User: "alice"},
				{User: "bob", Code: unaccept, Message: "Too few iterations"},
			},
			wantMechs: map[string][]string{"alice": {s256}, "bob": {s256}},
		},
		{
			name:      "first error of a user is reported",
			upserts:   []ScramUpsert{bad(stateTestUpsert(t, "bob", s512, "b"), func(u *ScramUpsert) { u.Iterations = 1 })},
			deletions: []ScramDeletion{{"bob", "nope"}},
			want:      []UserResult{{User: "bob", Code: unsupMech, Message: "Unknown SCRAM mechanism"}},
			wantMechs: baseMechs,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := json.Marshal(base)
			next, got := base.AlterScram(tc.upserts, tc.deletions)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMechs, stateTestMechs(next)); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
			after, _ := json.Marshal(base)
			if !bytes.Equal(before, after) {
				t.Error("AlterScram modified the state it was called on")
			}
			if diff := cmp.Diff(base.ACLs, next.ACLs); diff != "" {
				t.Errorf("ACLs changed:\n%s", diff)
			}
		})
	}

	// Upserted credentials are the ones the password derives.
	next, _ := base.AlterScram([]ScramUpsert{stateTestUpsert(t, "bob", s256, "new-pw")}, nil)
	cred, ok := next.Credential("bob", s256)
	if !ok || !VerifyPassword(s256, cred, "new-pw") || VerifyPassword(s256, cred, "b") {
		t.Error("bob's new credential does not verify the new password alone")
	}
}

func TestCreateACLs(t *testing.T) {
	read := aclTestAllow(kmsg.ACLOperationRead, "orders")
	write := aclTestAllow(kmsg.ACLOperationWrite, "orders")
	base, errs := (*State)(nil).CreateACLs([]ACL{read})
	if diff := cmp.Diff([]*Error{nil}, errs); diff != "" {
		t.Fatalf("setup (-want +got):\n%s", diff)
	}
	mapped := read
	mapped.Host = "::ffff:10.0.0.1"
	canonical := read
	canonical.Host = "10.0.0.1"
	invalid := read
	invalid.Operation = kmsg.ACLOperationAny

	next, errs := base.CreateACLs([]ACL{write, read, invalid, write, mapped, canonical})
	wantErrs := []*Error{nil, nil, invalid.Validate(), nil, nil, nil}
	if diff := cmp.Diff(wantErrs, errs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ACL{read, write, canonical}, next.ACLs); diff != "" {
		t.Errorf("ACLs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ACL{read}, base.ACLs); diff != "" {
		t.Errorf("old state changed (-want +got):\n%s", diff)
	}
	if !(&Authorizer{}).Authorize(next, "User:alice", "1.2.3.4", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "orders") {
		t.Error("new binding not in force")
	}
	if (&Authorizer{}).Authorize(base, "User:alice", "1.2.3.4", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "orders") {
		t.Error("new binding in force in the old state")
	}

	same, errs := next.CreateACLs([]ACL{read, invalid})
	if same != next || errs[0] != nil || errs[1] == nil {
		t.Errorf("nothing new: got state %p (want %p), errors %v", same, next, errs)
	}
}

func TestDeleteACLs(t *testing.T) {
	a := aclTestAllow(kmsg.ACLOperationRead, "orders")
	b := aclTestAllow(kmsg.ACLOperationWrite, "orders")
	c := aclTestAllow(kmsg.ACLOperationRead, "payments")
	c.PatternType = kmsg.ACLResourcePatternTypePrefixed
	d := aclTestAllow(kmsg.ACLOperationRead, "*")
	d.Principal = "User:bob"
	base := authzTestState(t, a, b, c, d)

	anyFilter := ACLFilter{
		ResourceType: kmsg.ACLResourceTypeAny,
		PatternType:  kmsg.ACLResourcePatternTypeAny,
		Operation:    kmsg.ACLOperationAny,
		Permission:   kmsg.ACLPermissionTypeAny,
	}
	reads := anyFilter
	reads.Operation = kmsg.ACLOperationRead
	ordersMatch := anyFilter
	ordersMatch.ResourceType = kmsg.ACLResourceTypeTopic
	ordersMatch.PatternType = kmsg.ACLResourcePatternTypeMatch
	ordersMatch.ResourceName = aclTestPtr("orders")
	invalid := anyFilter
	invalid.Permission = kmsg.ACLPermissionTypeUnknown
	nobody := anyFilter
	nobody.Principal = aclTestPtr("User:nobody")

	next, matched, errs := base.DeleteACLs([]ACLFilter{reads, invalid, ordersMatch, nobody})
	if diff := cmp.Diff([][]ACL{{a, c, d}, nil, {a, b, d}, nil}, matched); diff != "" {
		t.Errorf("matched (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*Error{nil, invalid.Validate(), nil, nil}, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if len(next.ACLs) != 0 {
		t.Errorf("left %v", next.ACLs)
	}
	if diff := cmp.Diff([]ACL{a, b, c, d}, base.ACLs); diff != "" {
		t.Errorf("old state changed (-want +got):\n%s", diff)
	}

	next, matched, _ = base.DeleteACLs([]ACLFilter{ordersMatch})
	if diff := cmp.Diff([][]ACL{{a, b, d}}, matched); diff != "" {
		t.Errorf("matched (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ACL{c}, next.ACLs); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}

	same, matched, _ := base.DeleteACLs([]ACLFilter{nobody})
	if same != base || matched[0] != nil {
		t.Errorf("deleting nothing: state %p (want %p), matched %v", same, base, matched)
	}
}

func TestDescribeACLs(t *testing.T) {
	a := aclTestAllow(kmsg.ACLOperationRead, "orders")
	b := aclTestAllow(kmsg.ACLOperationWrite, "payments")
	st := authzTestState(t, a, b)
	f := ACLFilter{
		ResourceType: kmsg.ACLResourceTypeTopic,
		PatternType:  kmsg.ACLResourcePatternTypeLiteral,
		Operation:    kmsg.ACLOperationAny,
		Permission:   kmsg.ACLPermissionTypeAllow,
	}
	if diff := cmp.Diff([]ACL{a, b}, st.DescribeACLs(f)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	f.ResourceName = aclTestPtr("payments")
	if diff := cmp.Diff([]ACL{b}, st.DescribeACLs(f)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	f.Operation = kmsg.ACLOperationUnknown
	if got := st.DescribeACLs(f); got != nil {
		t.Errorf("invalid filter matched %v", got)
	}
}

func TestNilState(t *testing.T) {
	var s *State
	if !s.Empty() {
		t.Error("nil state not empty")
	}
	if _, ok := s.Credential("alice", MechanismScramSHA256); ok {
		t.Error("nil state has a credential")
	}
	if got := s.UserNames(); len(got) != 0 {
		t.Errorf("UserNames = %v", got)
	}
	if got := s.Mechanisms("alice"); len(got) != 0 {
		t.Errorf("Mechanisms = %v", got)
	}
	all := ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	if got := s.DescribeACLs(all); got != nil {
		t.Errorf("DescribeACLs = %v", got)
	}
	next, matched, errs := s.DeleteACLs([]ACLFilter{all})
	if next == nil || !next.Empty() || matched[0] != nil || errs[0] != nil {
		t.Errorf("DeleteACLs = %v, %v, %v", next, matched, errs)
	}
	next, results := s.AlterScram(nil, []ScramDeletion{{"alice", MechanismScramSHA256}})
	if next == nil || !next.Empty() || len(results) != 1 || results[0].Code != kerr.ResourceNotFound.Code {
		t.Errorf("AlterScram = %v, %v", next, results)
	}
	if b, err := json.Marshal(&State{}); err != nil || string(b) != "{}" {
		t.Errorf("empty state JSON = %s, %v", b, err)
	}
}

// The controller replays changes on every node: the same inputs must give
// byte-identical state.
func TestStateDeterministic(t *testing.T) {
	build := func() []byte {
		var s *State
		var ups []ScramUpsert
		for _, u := range []string{"zed", "amy", "kim", "bo", "lu", "ed", "jo", "al"} {
			ups = append(ups, stateTestUpsert(t, u, MechanismScramSHA512, u), stateTestUpsert(t, u, MechanismScramSHA256, u))
		}
		s, _ = s.AlterScram(ups, nil)
		s, _ = s.AlterScram(nil, []ScramDeletion{{"kim", MechanismScramSHA512}, {"bo", MechanismScramSHA256}})
		var acls []ACL
		for _, name := range []string{"q", "b", "x", "a", "m"} {
			acls = append(acls, aclTestAllow(kmsg.ACLOperationRead, name), aclTestAllow(kmsg.ACLOperationWrite, name))
		}
		s, _ = s.CreateACLs(acls)
		writes := ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAny}
		s, _, _ = s.DeleteACLs([]ACLFilter{writes})
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := build()
	for range 5 {
		if again := build(); !bytes.Equal(first, again) {
			t.Fatalf("state differs between runs:\n%s\n%s", first, again)
		}
	}
	var back State
	if err := json.Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(&back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("JSON round trip changed the state:\n%s\n%s", first, again)
	}
}
