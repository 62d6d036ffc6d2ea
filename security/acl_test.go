package security

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// aclTestAllow is an ALLOW binding on a literal topic for User:alice from
// anywhere, for tests to modify.
func aclTestAllow(op kmsg.ACLOperation, topic string) ACL {
	return ACL{
		ResourceType: kmsg.ACLResourceTypeTopic,
		ResourceName: topic,
		PatternType:  kmsg.ACLResourcePatternTypeLiteral,
		Principal:    "User:alice",
		Host:         "*",
		Operation:    op,
		Permission:   kmsg.ACLPermissionTypeAllow,
	}
}

func aclTestPtr(s string) *string { return &s }

func TestACLValidate(t *testing.T) {
	base := aclTestAllow(kmsg.ACLOperationRead, "orders")
	with := func(f func(*ACL)) ACL {
		a := base
		f(&a)
		return a
	}
	for _, tc := range []struct {
		name    string
		acl     ACL
		wantErr string // substring of the message; "" = valid
	}{
		{"topic read", base, ""},
		{"prefixed deny", with(func(a *ACL) {
			a.PatternType = kmsg.ACLResourcePatternTypePrefixed
			a.Permission = kmsg.ACLPermissionTypeDeny
		}), ""},
		{"wildcards", with(func(a *ACL) { a.ResourceName, a.Principal = "*", "User:*" }), ""},
		{"ipv4 host", with(func(a *ACL) { a.Host = "10.0.0.1" }), ""},
		{"ipv6 host", with(func(a *ACL) { a.Host = "2001:db8::1" }), ""},
		{"other principal type", with(func(a *ACL) { a.Principal = "Group:admins" }), ""},
		{"principal name with colon", with(func(a *ACL) { a.Principal = "User:CN=x:y" }), ""},
		{"cluster", ACL{kmsg.ACLResourceTypeCluster, "kafka-cluster", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationIdempotentWrite, kmsg.ACLPermissionTypeAllow}, ""},
		{"group read", ACL{kmsg.ACLResourceTypeGroup, "g", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow}, ""},
		{"transactional id write", ACL{kmsg.ACLResourceTypeTransactionalId, "tx", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeAllow}, ""},
		{"delegation token describe", ACL{kmsg.ACLResourceTypeDelegationToken, "t", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationDescribe, kmsg.ACLPermissionTypeAllow}, ""},
		{"user create tokens", ACL{kmsg.ACLResourceTypeUser, "User:bob", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationCreateTokens, kmsg.ACLPermissionTypeAllow}, ""},
		{"all on group", ACL{kmsg.ACLResourceTypeGroup, "g", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationAll, kmsg.ACLPermissionTypeDeny}, ""},

		{"resource type any", with(func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeAny }), "invalid resource type ANY"},
		{"resource type unknown", with(func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeUnknown }), "invalid resource type"},
		{"resource type out of range", with(func(a *ACL) { a.ResourceType = 8 }), "invalid resource type"},
		{"pattern any", with(func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeAny }), "invalid pattern type ANY"},
		{"pattern match", with(func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeMatch }), "invalid pattern type MATCH"},
		{"pattern unknown", with(func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeUnknown }), "invalid pattern type"},
		{"operation any", with(func(a *ACL) { a.Operation = kmsg.ACLOperationAny }), "invalid operation ANY"},
		{"operation unknown", with(func(a *ACL) { a.Operation = kmsg.ACLOperationUnknown }), "invalid operation"},
		{"operation out of range", with(func(a *ACL) { a.Operation = 15 }), "invalid operation"},
		{"permission any", with(func(a *ACL) { a.Permission = kmsg.ACLPermissionTypeAny }), "invalid permission type ANY"},
		{"permission unknown", with(func(a *ACL) { a.Permission = kmsg.ACLPermissionTypeUnknown }), "invalid permission type"},
		{"empty name", with(func(a *ACL) { a.ResourceName = "" }), "empty resource name"},
		{"cluster misnamed", ACL{kmsg.ACLResourceTypeCluster, "mycluster", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationAlter, kmsg.ACLPermissionTypeAllow}, "kafka-cluster"},
		{"principal without type", with(func(a *ACL) { a.Principal = "alice" }), "invalid principal"},
		{"principal empty type", with(func(a *ACL) { a.Principal = ":alice" }), "invalid principal"},
		{"principal empty name", with(func(a *ACL) { a.Principal = "User:" }), "invalid principal"},
		{"principal empty", with(func(a *ACL) { a.Principal = "" }), "invalid principal"},
		{"host name", with(func(a *ACL) { a.Host = "broker.example.com" }), "invalid host"},
		{"host empty", with(func(a *ACL) { a.Host = "" }), "invalid host"},
		{"host cidr", with(func(a *ACL) { a.Host = "10.0.0.0/8" }), "invalid host"},
		{"topic cluster action", with(func(a *ACL) { a.Operation = kmsg.ACLOperationClusterAction }), "does not apply"},
		{"topic idempotent write", with(func(a *ACL) { a.Operation = kmsg.ACLOperationIdempotentWrite }), "does not apply"},
		{"group write", ACL{kmsg.ACLResourceTypeGroup, "g", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeAllow}, "does not apply"},
		{"cluster read", ACL{kmsg.ACLResourceTypeCluster, "kafka-cluster", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow}, "does not apply"},
		{"transactional id read", ACL{kmsg.ACLResourceTypeTransactionalId, "tx", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow}, "does not apply"},
		{"delegation token alter", ACL{kmsg.ACLResourceTypeDelegationToken, "t", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationAlter, kmsg.ACLPermissionTypeAllow}, "does not apply"},
		{"user describe", ACL{kmsg.ACLResourceTypeUser, "User:bob", kmsg.ACLResourcePatternTypeLiteral, "User:a", "*", kmsg.ACLOperationDescribe, kmsg.ACLPermissionTypeAllow}, "does not apply"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.acl.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.wantErr)
			}
			if err.Code != kerr.InvalidRequest.Code {
				t.Errorf("code %d, want INVALID_REQUEST", err.Code)
			}
			if !strings.Contains(err.Message, tc.wantErr) {
				t.Errorf("message %q does not contain %q", err.Message, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "security: INVALID_REQUEST: ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestACLFilterValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    ACLFilter
		ok   bool
	}{
		{"any everything", ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, true},
		{"match", ACLFilter{ResourceType: kmsg.ACLResourceTypeTopic, PatternType: kmsg.ACLResourcePatternTypeMatch, Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeDeny}, true},
		{"unknown resource type", ACLFilter{PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, false},
		{"unknown pattern", ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, false},
		{"pattern out of range", ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: 5, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, false},
		{"unknown operation", ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Permission: kmsg.ACLPermissionTypeAny}, false},
		{"unknown permission", ACLFilter{ResourceType: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny}, false},
		{"negative resource type", ACLFilter{ResourceType: -1, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}, false},
	} {
		err := tc.f.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && err.Code != kerr.InvalidRequest.Code {
			t.Errorf("%s: code %d, want INVALID_REQUEST", tc.name, err.Code)
		}
	}
}

func TestACLFilterMatches(t *testing.T) {
	lit := func(name string) ACL { return aclTestAllow(kmsg.ACLOperationRead, name) }
	pre := func(name string) ACL {
		a := lit(name)
		a.PatternType = kmsg.ACLResourcePatternTypePrefixed
		return a
	}
	group := lit("orders")
	group.ResourceType = kmsg.ACLResourceTypeGroup
	bindings := map[string]ACL{
		"literal orders":    lit("orders"),
		"literal ord":       lit("ord"),
		"literal *":         lit("*"),
		"prefixed ord":      pre("ord"),
		"prefixed orders":   pre("orders"),
		"prefixed ordersX":  pre("ordersX"),
		"prefixed pay":      pre("pay"),
		"group orders":      group,
		"deny write orders": {kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLResourcePatternTypeLiteral, "User:bob", "10.0.0.1", kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeDeny},
	}
	everything := ACLFilter{
		ResourceType: kmsg.ACLResourceTypeAny,
		PatternType:  kmsg.ACLResourcePatternTypeAny,
		Operation:    kmsg.ACLOperationAny,
		Permission:   kmsg.ACLPermissionTypeAny,
	}
	with := func(f func(*ACLFilter)) ACLFilter {
		c := everything
		f(&c)
		return c
	}
	topicsNamed := func(p kmsg.ACLResourcePatternType, name string) ACLFilter {
		return with(func(f *ACLFilter) {
			f.ResourceType = kmsg.ACLResourceTypeTopic
			f.PatternType = p
			f.ResourceName = aclTestPtr(name)
		})
	}
	for _, tc := range []struct {
		name   string
		filter ACLFilter
		want   []string
	}{
		{"everything", everything, []string{
			"deny write orders", "group orders", "literal *", "literal ord", "literal orders",
			"prefixed ord", "prefixed orders", "prefixed ordersX", "prefixed pay",
		}},
		{"match orders: what applies to topic orders", topicsNamed(kmsg.ACLResourcePatternTypeMatch, "orders"), []string{
			"deny write orders", "literal *", "literal orders", "prefixed ord", "prefixed orders",
		}},
		{"any orders: exact name, both patterns", topicsNamed(kmsg.ACLResourcePatternTypeAny, "orders"), []string{
			"deny write orders", "literal orders", "prefixed orders",
		}},
		{"literal orders", topicsNamed(kmsg.ACLResourcePatternTypeLiteral, "orders"), []string{
			"deny write orders", "literal orders",
		}},
		{"prefixed ord", topicsNamed(kmsg.ACLResourcePatternTypePrefixed, "ord"), []string{"prefixed ord"}},
		{"literal * is only the wildcard binding", topicsNamed(kmsg.ACLResourcePatternTypeLiteral, "*"), []string{"literal *"}},
		{"match * matches only the wildcard", topicsNamed(kmsg.ACLResourcePatternTypeMatch, "*"), []string{"literal *"}},
		{"match payments", topicsNamed(kmsg.ACLResourcePatternTypeMatch, "payments"), []string{"literal *", "prefixed pay"}},
		{"match pattern, no name", with(func(f *ACLFilter) { f.PatternType = kmsg.ACLResourcePatternTypeMatch }), []string{
			"deny write orders", "group orders", "literal *", "literal ord", "literal orders",
			"prefixed ord", "prefixed orders", "prefixed ordersX", "prefixed pay",
		}},
		{"prefixed pattern, no name", with(func(f *ACLFilter) { f.PatternType = kmsg.ACLResourcePatternTypePrefixed }), []string{
			"prefixed ord", "prefixed orders", "prefixed ordersX", "prefixed pay",
		}},
		{"groups", with(func(f *ACLFilter) { f.ResourceType = kmsg.ACLResourceTypeGroup }), []string{"group orders"}},
		{"principal", with(func(f *ACLFilter) { f.Principal = aclTestPtr("User:bob") }), []string{"deny write orders"}},
		{"principal is not a wildcard match", with(func(f *ACLFilter) { f.Principal = aclTestPtr("User:*") }), nil},
		{"host", with(func(f *ACLFilter) { f.Host = aclTestPtr("10.0.0.1") }), []string{"deny write orders"}},
		{"host, IPv4-mapped", with(func(f *ACLFilter) { f.Host = aclTestPtr("::ffff:10.0.0.1") }), []string{"deny write orders"}},
		{"operation", with(func(f *ACLFilter) { f.Operation = kmsg.ACLOperationWrite }), []string{"deny write orders"}},
		{"operation all matches only ALL bindings", with(func(f *ACLFilter) { f.Operation = kmsg.ACLOperationAll }), nil},
		{"permission", with(func(f *ACLFilter) { f.Permission = kmsg.ACLPermissionTypeDeny }), []string{"deny write orders"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for name, b := range bindings {
				if tc.filter.Matches(b) {
					got = append(got, name)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("matched (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"*", "*", true},
		{"10.0.0.1", "10.0.0.1", true},
		{"::ffff:10.0.0.1", "10.0.0.1", true},
		{"0:0:0:0:0:0:0:1", "::1", true},
		{"2001:DB8::1", "2001:db8::1", true},
		{"fe80::1%eth0", "fe80::1%eth0", true},
		{"", "", false},
		{"localhost", "", false},
		{"10.0.0.1:9092", "", false},
		{" 10.0.0.1", "", false},
	} {
		got, ok := CanonicalHost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseACLEnums(t *testing.T) {
	ops := map[string]kmsg.ACLOperation{
		"read":             kmsg.ACLOperationRead,
		"Read":             kmsg.ACLOperationRead,
		"WRITE":            kmsg.ACLOperationWrite,
		"all":              kmsg.ACLOperationAll,
		"any":              kmsg.ACLOperationAny,
		"describe-configs": kmsg.ACLOperationDescribeConfigs,
		"DescribeConfigs":  kmsg.ACLOperationDescribeConfigs,
		"DESCRIBE_CONFIGS": kmsg.ACLOperationDescribeConfigs,
		"AlterConfigs":     kmsg.ACLOperationAlterConfigs,
		"ClusterAction":    kmsg.ACLOperationClusterAction,
		"idempotent-write": kmsg.ACLOperationIdempotentWrite,
		"CreateTokens":     kmsg.ACLOperationCreateTokens,
		"describe_tokens":  kmsg.ACLOperationDescribeTokens,
	}
	for in, want := range ops {
		if got, err := ParseOperation(in); err != nil || got != want {
			t.Errorf("ParseOperation(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	types := map[string]kmsg.ACLResourceType{
		"topic":            kmsg.ACLResourceTypeTopic,
		"Group":            kmsg.ACLResourceTypeGroup,
		"CLUSTER":          kmsg.ACLResourceTypeCluster,
		"transactional-id": kmsg.ACLResourceTypeTransactionalId,
		"TransactionalId":  kmsg.ACLResourceTypeTransactionalId,
		"delegation-token": kmsg.ACLResourceTypeDelegationToken,
		"user":             kmsg.ACLResourceTypeUser,
		"any":              kmsg.ACLResourceTypeAny,
	}
	for in, want := range types {
		if got, err := ParseResourceType(in); err != nil || got != want {
			t.Errorf("ParseResourceType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	patterns := map[string]kmsg.ACLResourcePatternType{
		"literal":  kmsg.ACLResourcePatternTypeLiteral,
		"PREFIXED": kmsg.ACLResourcePatternTypePrefixed,
		"Match":    kmsg.ACLResourcePatternTypeMatch,
		"any":      kmsg.ACLResourcePatternTypeAny,
	}
	for in, want := range patterns {
		if got, err := ParsePatternType(in); err != nil || got != want {
			t.Errorf("ParsePatternType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	perms := map[string]kmsg.ACLPermissionType{
		"allow": kmsg.ACLPermissionTypeAllow,
		"Deny":  kmsg.ACLPermissionTypeDeny,
		"ANY":   kmsg.ACLPermissionTypeAny,
	}
	for in, want := range perms {
		if got, err := ParsePermission(in); err != nil || got != want {
			t.Errorf("ParsePermission(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "unknown", "reed", "topics"} {
		if _, err := ParseOperation(bad); err == nil || !strings.HasPrefix(err.Error(), "security: ") {
			t.Errorf("ParseOperation(%q): err = %v", bad, err)
		}
		if _, err := ParseResourceType(bad); err == nil {
			t.Errorf("ParseResourceType(%q) succeeded", bad)
		}
		if _, err := ParsePatternType(bad); err == nil {
			t.Errorf("ParsePatternType(%q) succeeded", bad)
		}
		if _, err := ParsePermission(bad); err == nil {
			t.Errorf("ParsePermission(%q) succeeded", bad)
		}
	}
}

func TestFormatACL(t *testing.T) {
	a := aclTestAllow(kmsg.ACLOperationDescribeConfigs, "orders")
	a.PatternType = kmsg.ACLResourcePatternTypePrefixed
	want := "ResourcePattern(resourceType=TOPIC, name=orders, patternType=PREFIXED): (principal=User:alice, host=*, operation=DESCRIBE_CONFIGS, permissionType=ALLOW)"
	if got := FormatACL(a); got != want {
		t.Errorf("FormatACL = %q\nwant        %q", got, want)
	}
}

// The stored form spells enums out; it must read back to the same binding.
func TestACLJSON(t *testing.T) {
	a := ACL{kmsg.ACLResourceTypeTransactionalId, "tx-", kmsg.ACLResourcePatternTypePrefixed, "User:*", "10.1.2.3", kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeDeny}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resource_type":"TRANSACTIONAL_ID","resource_name":"tx-","pattern_type":"PREFIXED","principal":"User:*","host":"10.1.2.3","operation":"WRITE","permission":"DENY"}`
	if string(b) != want {
		t.Errorf("json = %s\nwant   %s", b, want)
	}
	var back ACL
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
