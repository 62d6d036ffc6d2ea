package security

import (
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// authzTestBinding builds a binding tersely: pattern "lit" or "pre", perm
// "allow" or "deny".
func authzTestBinding(rt kmsg.ACLResourceType, pattern, name, principal, host string, op kmsg.ACLOperation, perm string) ACL {
	a := ACL{
		ResourceType: rt,
		ResourceName: name,
		PatternType:  kmsg.ACLResourcePatternTypeLiteral,
		Principal:    principal,
		Host:         host,
		Operation:    op,
		Permission:   kmsg.ACLPermissionTypeAllow,
	}
	if pattern == "pre" {
		a.PatternType = kmsg.ACLResourcePatternTypePrefixed
	}
	if perm == "deny" {
		a.Permission = kmsg.ACLPermissionTypeDeny
	}
	return a
}

func authzTestTopic(pattern, name, principal, host string, op kmsg.ACLOperation, perm string) ACL {
	return authzTestBinding(kmsg.ACLResourceTypeTopic, pattern, name, principal, host, op, perm)
}

func authzTestState(t testing.TB, acls ...ACL) *State {
	t.Helper()
	st, errs := (*State)(nil).CreateACLs(acls)
	for i, e := range errs {
		if e != nil {
			t.Fatalf("binding %d (%s): %v", i, FormatACL(acls[i]), e)
		}
	}
	return st
}

func TestAuthorize(t *testing.T) {
	const (
		alice = "User:alice"
		bob   = "User:bob"
		ip    = "10.0.0.1"
	)
	var (
		topic   = kmsg.ACLResourceTypeTopic
		group   = kmsg.ACLResourceTypeGroup
		cluster = kmsg.ACLResourceTypeCluster
		read    = kmsg.ACLOperationRead
		write   = kmsg.ACLOperationWrite
		descr   = kmsg.ACLOperationDescribe
		all     = kmsg.ACLOperationAll
	)
	type req struct {
		principal, host string
		op              kmsg.ACLOperation
		rt              kmsg.ACLResourceType
		name            string
	}
	aliceReads := req{alice, ip, read, topic, "orders"}
	for _, tc := range []struct {
		name  string
		acls  []ACL
		authz Authorizer
		req   req
		want  bool
	}{
		{"no ACLs: denied by default", nil, Authorizer{}, aliceReads, false},
		{"no ACLs: allowed if no ACL", nil, Authorizer{AllowIfNoACL: true}, aliceReads, true},
		{"ACLs for other resources only: AllowIfNoACL decides",
			[]ACL{authzTestTopic("lit", "payments", bob, "*", read, "allow")},
			Authorizer{AllowIfNoACL: true}, aliceReads, true},
		{"an ACL on the resource for someone else: denied despite AllowIfNoACL",
			[]ACL{authzTestTopic("lit", "orders", bob, "*", read, "allow")},
			Authorizer{AllowIfNoACL: true}, aliceReads, false},
		{"a DENY for someone else also counts as an ACL on the resource",
			[]ACL{authzTestTopic("lit", "orders", bob, "*", write, "deny")},
			Authorizer{AllowIfNoACL: true}, aliceReads, false},
		{"literal allow", []ACL{authzTestTopic("lit", "orders", alice, "*", read, "allow")}, Authorizer{}, aliceReads, true},
		{"literal allow, other name", []ACL{authzTestTopic("lit", "orders2", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"literal allow, other operation", []ACL{authzTestTopic("lit", "orders", alice, "*", write, "allow")}, Authorizer{}, aliceReads, false},
		{"literal allow, other principal", []ACL{authzTestTopic("lit", "orders", bob, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"principal match is exact", []ACL{authzTestTopic("lit", "orders", "User:Alice", "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"deny wins over allow",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("lit", "orders", alice, "*", read, "deny"),
			}, Authorizer{}, aliceReads, false},
		{"deny ALL wins over allow READ",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("pre", "ord", "User:*", ip, all, "deny"),
			}, Authorizer{}, aliceReads, false},
		{"deny from another host does not apply",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("lit", "orders", alice, "10.0.0.2", read, "deny"),
			}, Authorizer{}, aliceReads, true},
		{"deny of another operation does not apply",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("lit", "orders", alice, "*", write, "deny"),
			}, Authorizer{}, aliceReads, true},
		{"allow ALL", []ACL{authzTestTopic("lit", "orders", alice, "*", all, "allow")}, Authorizer{}, req{alice, ip, kmsg.ACLOperationAlterConfigs, topic, "orders"}, true},
		{"asking for ALL needs a binding of ALL",
			[]ACL{authzTestTopic("lit", "orders", alice, "*", read, "allow")}, Authorizer{}, req{alice, ip, all, topic, "orders"}, false},
		{"asking for ALL with ALL granted",
			[]ACL{authzTestTopic("lit", "orders", alice, "*", all, "allow")}, Authorizer{}, req{alice, ip, all, topic, "orders"}, true},

		{"READ implies DESCRIBE", []ACL{authzTestTopic("lit", "orders", alice, "*", read, "allow")}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, true},
		{"WRITE implies DESCRIBE", []ACL{authzTestTopic("lit", "orders", alice, "*", write, "allow")}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, true},
		{"DELETE implies DESCRIBE", []ACL{authzTestTopic("lit", "orders", alice, "*", kmsg.ACLOperationDelete, "allow")}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, true},
		{"ALTER implies DESCRIBE", []ACL{authzTestTopic("lit", "orders", alice, "*", kmsg.ACLOperationAlter, "allow")}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, true},
		{"CREATE does not imply DESCRIBE", []ACL{authzTestTopic("lit", "orders", alice, "*", kmsg.ACLOperationCreate, "allow")}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, false},
		{"DESCRIBE does not imply READ", []ACL{authzTestTopic("lit", "orders", alice, "*", descr, "allow")}, Authorizer{}, aliceReads, false},
		{"ALTER_CONFIGS implies DESCRIBE_CONFIGS", []ACL{authzTestTopic("lit", "orders", alice, "*", kmsg.ACLOperationAlterConfigs, "allow")}, Authorizer{}, req{alice, ip, kmsg.ACLOperationDescribeConfigs, topic, "orders"}, true},
		{"ALTER does not imply DESCRIBE_CONFIGS", []ACL{authzTestTopic("lit", "orders", alice, "*", kmsg.ACLOperationAlter, "allow")}, Authorizer{}, req{alice, ip, kmsg.ACLOperationDescribeConfigs, topic, "orders"}, false},
		{"DENY READ does not deny DESCRIBE",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", write, "allow"),
				authzTestTopic("lit", "orders", alice, "*", read, "deny"),
			}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, true},
		{"DENY DESCRIBE beats implied DESCRIBE",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("lit", "orders", alice, "*", descr, "deny"),
			}, Authorizer{}, req{alice, ip, descr, topic, "orders"}, false},

		{"prefixed allow", []ACL{authzTestTopic("pre", "ord", alice, "*", read, "allow")}, Authorizer{}, aliceReads, true},
		{"prefixed with the full name", []ACL{authzTestTopic("pre", "orders", alice, "*", read, "allow")}, Authorizer{}, aliceReads, true},
		{"prefixed longer than the name", []ACL{authzTestTopic("pre", "orders-eu", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"prefixed not a prefix", []ACL{authzTestTopic("pre", "rders", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"literal is not a prefix", []ACL{authzTestTopic("lit", "ord", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"prefixed deny beats literal allow",
			[]ACL{
				authzTestTopic("lit", "orders", alice, "*", read, "allow"),
				authzTestTopic("pre", "o", alice, "*", read, "deny"),
			}, Authorizer{}, aliceReads, false},
		{"prefixed bindings of several lengths",
			[]ACL{
				authzTestTopic("pre", "x", bob, "*", read, "allow"),
				authzTestTopic("pre", "orde", bob, "*", read, "allow"),
				authzTestTopic("pre", "orders-", alice, "*", read, "allow"),
				authzTestTopic("pre", "or", alice, "*", read, "allow"),
			}, Authorizer{}, aliceReads, true},
		{"prefixed * is a literal prefix, not a wildcard", []ACL{authzTestTopic("pre", "*", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},

		{"wildcard resource", []ACL{authzTestTopic("lit", "*", alice, "*", read, "allow")}, Authorizer{}, aliceReads, true},
		{"wildcard principal", []ACL{authzTestTopic("lit", "orders", "User:*", "*", read, "allow")}, Authorizer{}, aliceReads, true},
		{"wildcard principal of another type does not match", []ACL{authzTestTopic("lit", "orders", "Group:*", "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"host match", []ACL{authzTestTopic("lit", "orders", alice, ip, read, "allow")}, Authorizer{}, aliceReads, true},
		{"host mismatch", []ACL{authzTestTopic("lit", "orders", alice, "10.0.0.2", read, "allow")}, Authorizer{}, aliceReads, false},
		{"host stored canonical", []ACL{authzTestTopic("lit", "orders", alice, "::ffff:10.0.0.1", read, "allow")}, Authorizer{}, aliceReads, true},
		{"wildcard everything", []ACL{authzTestTopic("lit", "*", "User:*", "*", all, "allow")}, Authorizer{}, req{bob, "::1", write, topic, "anything"}, true},
		{"wildcard deny for everyone beats a specific allow",
			[]ACL{
				authzTestTopic("lit", "orders", alice, ip, read, "allow"),
				authzTestTopic("lit", "*", "User:*", "*", read, "deny"),
			}, Authorizer{}, aliceReads, false},

		{"binding for another resource type does not apply",
			[]ACL{authzTestBinding(group, "lit", "orders", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"binding for another resource type is not an ACL on this one",
			[]ACL{authzTestBinding(group, "lit", "orders", alice, "*", read, "deny")}, Authorizer{AllowIfNoACL: true}, aliceReads, true},
		{"wildcard of another resource type does not apply",
			[]ACL{authzTestBinding(group, "lit", "*", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"prefixed of another resource type does not apply",
			[]ACL{authzTestBinding(group, "pre", "ord", alice, "*", read, "allow")}, Authorizer{}, aliceReads, false},
		{"cluster",
			[]ACL{authzTestBinding(cluster, "lit", ClusterResourceName, alice, "*", kmsg.ACLOperationIdempotentWrite, "allow")},
			Authorizer{}, req{alice, ip, kmsg.ACLOperationIdempotentWrite, cluster, ClusterResourceName}, true},

		{"super user", nil, Authorizer{SuperUsers: []string{bob, alice}}, aliceReads, true},
		{"super user despite deny",
			[]ACL{authzTestTopic("lit", "orders", alice, "*", all, "deny")},
			Authorizer{SuperUsers: []string{alice}}, aliceReads, true},
		{"someone else's super user status",
			[]ACL{authzTestTopic("lit", "orders", alice, "*", all, "deny")},
			Authorizer{SuperUsers: []string{bob}}, aliceReads, false},
		{"operation ANY is refused", nil, Authorizer{AllowIfNoACL: true}, req{alice, ip, kmsg.ACLOperationAny, topic, "orders"}, false},
		{"operation UNKNOWN is refused", nil, Authorizer{SuperUsers: []string{alice}}, req{alice, ip, kmsg.ACLOperationUnknown, topic, "orders"}, false},
		{"resource type ANY is refused", nil, Authorizer{AllowIfNoACL: true}, req{alice, ip, read, kmsg.ACLResourceTypeAny, "orders"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := authzTestState(t, tc.acls...)
			r := tc.req
			if got := tc.authz.Authorize(st, r.principal, r.host, r.op, r.rt, r.name); got != tc.want {
				t.Errorf("Authorize(%s from %s: %v %v %q) = %v, want %v", r.principal, r.host, r.op, r.rt, r.name, got, tc.want)
			}
		})
	}
}

func TestAuthorizeNilStateAndAuthorizer(t *testing.T) {
	var nilAuthz *Authorizer
	if nilAuthz.Authorize(nil, "User:a", "::1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "t") {
		t.Error("nil Authorizer allowed with no ACLs")
	}
	a := &Authorizer{AllowIfNoACL: true}
	if !a.Authorize(nil, "User:a", "::1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "t") {
		t.Error("nil State: AllowIfNoACL not honoured")
	}
	if got := nilAuthz.AuthorizedOperations(nil, "User:a", "::1", kmsg.ACLResourceTypeTopic, "t"); got != 0 {
		t.Errorf("AuthorizedOperations = %b, want 0", got)
	}
}

func TestAuthorizedOperations(t *testing.T) {
	bit := func(ops ...kmsg.ACLOperation) int32 {
		var b int32
		for _, op := range ops {
			b |= 1 << op
		}
		return b
	}
	topicOps := bit(kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs)
	st := authzTestState(t,
		authzTestTopic("lit", "orders", "User:alice", "*", kmsg.ACLOperationRead, "allow"),
		authzTestTopic("lit", "orders", "User:alice", "*", kmsg.ACLOperationAlterConfigs, "allow"),
		authzTestTopic("lit", "orders", "User:alice", "*", kmsg.ACLOperationWrite, "deny"),
		authzTestTopic("lit", "everything", "User:alice", "*", kmsg.ACLOperationAll, "allow"),
		authzTestBinding(kmsg.ACLResourceTypeGroup, "lit", "g", "User:alice", "*", kmsg.ACLOperationRead, "allow"),
		authzTestBinding(kmsg.ACLResourceTypeCluster, "lit", ClusterResourceName, "User:alice", "*", kmsg.ACLOperationAll, "allow"),
	)
	for _, tc := range []struct {
		name  string
		authz Authorizer
		rt    kmsg.ACLResourceType
		res   string
		want  int32
	}{
		{"read and alter configs", Authorizer{}, kmsg.ACLResourceTypeTopic, "orders",
			bit(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationDescribeConfigs)},
		{"ALL gives every topic operation", Authorizer{}, kmsg.ACLResourceTypeTopic, "everything", topicOps},
		{"nothing", Authorizer{}, kmsg.ACLResourceTypeTopic, "other", 0},
		{"no ACL, allowed", Authorizer{AllowIfNoACL: true}, kmsg.ACLResourceTypeTopic, "other", topicOps},
		{"super user", Authorizer{SuperUsers: []string{"User:alice"}}, kmsg.ACLResourceTypeTopic, "orders", topicOps},
		{"group", Authorizer{}, kmsg.ACLResourceTypeGroup, "g", bit(kmsg.ACLOperationRead, kmsg.ACLOperationDescribe)},
		{"cluster", Authorizer{}, kmsg.ACLResourceTypeCluster, ClusterResourceName,
			bit(kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
				kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe)},
	} {
		got := tc.authz.AuthorizedOperations(st, "User:alice", "10.0.0.1", tc.rt, tc.res)
		if got != tc.want {
			t.Errorf("%s: AuthorizedOperations = %015b, want %015b", tc.name, got, tc.want)
		}
	}
}

// Many connections authorize against a State at once; the index must be
// built exactly once and safely (run with -race).
func TestAuthorizeConcurrentFirstUse(t *testing.T) {
	st := authzTestState(t, authzTestTopic("lit", "orders", "User:alice", "*", kmsg.ACLOperationRead, "allow"))
	a := &Authorizer{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				if !a.Authorize(st, "User:alice", "::1", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "orders") {
					t.Error("denied")
					return
				}
			}
		})
	}
	wg.Wait()
}

// authzTestBenchState has 1,000 bindings: for each of 330 users a literal
// topic, a prefixed topic and a group, and ten on every topic ("*").
func authzTestBenchState(b *testing.B) *State {
	var acls []ACL
	for i := range 330 {
		user := fmt.Sprintf("User:user-%d", i)
		acls = append(acls,
			authzTestTopic("lit", fmt.Sprintf("topic-%d", i), user, "*", kmsg.ACLOperationWrite, "allow"),
			authzTestTopic("pre", fmt.Sprintf("team-%d-", i), user, "*", kmsg.ACLOperationRead, "allow"),
			authzTestBinding(kmsg.ACLResourceTypeGroup, "lit", fmt.Sprintf("group-%d", i), user, "*", kmsg.ACLOperationRead, "allow"),
		)
	}
	for i := len(acls); i < 1000; i++ {
		acls = append(acls, authzTestTopic("lit", "*", fmt.Sprintf("User:ops-%d", i), "10.9.9.9", kmsg.ACLOperationDescribe, "allow"))
	}
	st := authzTestState(b, acls...)
	if len(st.ACLs) != 1000 {
		b.Fatalf("%d bindings", len(st.ACLs))
	}
	return st
}

func BenchmarkAuthorize(b *testing.B) {
	st := authzTestBenchState(b)
	a := &Authorizer{SuperUsers: []string{"User:admin"}}
	for _, bc := range []struct {
		name      string
		principal string
		op        kmsg.ACLOperation
		rt        kmsg.ACLResourceType
		res       string
		want      bool
	}{
		{"literal-hit", "User:user-200", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "topic-200", true},
		{"prefixed-hit", "User:user-200", kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "team-200-clicks", true},
		{"group-hit", "User:user-200", kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, "group-200", true},
		{"miss", "User:user-200", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "topic-201", false},
		{"super-user", "User:admin", kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "topic-201", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if got := a.Authorize(st, bc.principal, "10.0.0.1", bc.op, bc.rt, bc.res); got != bc.want {
				b.Fatalf("Authorize = %v, want %v", got, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				a.Authorize(st, bc.principal, "10.0.0.1", bc.op, bc.rt, bc.res)
			}
		})
	}
}
