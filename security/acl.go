package security

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ClusterResourceName is the only name a CLUSTER resource has.
const ClusterResourceName = "kafka-cluster"

// Wildcards in bindings: every principal, every host, every resource name
// (literal bindings only).
const (
	WildcardPrincipal = "User:*"
	WildcardHost      = "*"
	WildcardResource  = "*"
)

// ACL is one binding (Kafka's AclBinding), stored in the controller state.
// ACLs are comparable: two bindings are the same binding when ==.
//
// The kmsg enums marshal to JSON as their names ("TOPIC", "READ"), so the
// stored state reads as Kafka's tools print it.
type ACL struct {
	ResourceType kmsg.ACLResourceType        `json:"resource_type"`
	ResourceName string                      `json:"resource_name"`
	PatternType  kmsg.ACLResourcePatternType `json:"pattern_type"` // Literal or Prefixed only
	Principal    string                      `json:"principal"`    // "User:alice" or "User:*"
	Host         string                      `json:"host"`         // an IP or "*"
	Operation    kmsg.ACLOperation           `json:"operation"`
	Permission   kmsg.ACLPermissionType      `json:"permission"` // Allow or Deny
}

// Error is a failure with the Kafka error code a response should carry.
type Error struct {
	Code    int16
	Message string // for the client, as the response's error message
}

func (e *Error) Error() string {
	name := "UNKNOWN_SERVER_ERROR"
	if k, ok := kerr.ErrorForCode(e.Code).(*kerr.Error); ok {
		name = k.Message
	}
	return "security: " + name + ": " + e.Message
}

func errorf(code *kerr.Error, format string, args ...any) *Error {
	return &Error{Code: code.Code, Message: fmt.Sprintf(format, args...)}
}

// supportedOperations is Kafka's AclEntry.supportedOperations: what a
// binding on a resource type may grant, and the operations
// AuthorizedOperations reports on. ALL is accepted on every type besides.
var supportedOperations = map[kmsg.ACLResourceType][]kmsg.ACLOperation{
	kmsg.ACLResourceTypeTopic: {
		kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs,
	},
	kmsg.ACLResourceTypeGroup: {
		kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete,
	},
	kmsg.ACLResourceTypeCluster: {
		kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe,
	},
	kmsg.ACLResourceTypeTransactionalId: {
		kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite,
	},
	kmsg.ACLResourceTypeDelegationToken: {
		kmsg.ACLOperationDescribe,
	},
	kmsg.ACLResourceTypeUser: {
		kmsg.ACLOperationCreateTokens, kmsg.ACLOperationDescribeTokens,
	},
}

func operationSupported(rt kmsg.ACLResourceType, op kmsg.ACLOperation) bool {
	if op == kmsg.ACLOperationAll {
		return true
	}
	for _, o := range supportedOperations[rt] {
		if o == op {
			return true
		}
	}
	return false
}

// Ranges of the enums' concrete values: Unknown (0) and Any (1) are never
// concrete; Match is a filter-only pattern type.
func concreteResourceType(rt kmsg.ACLResourceType) bool {
	return rt >= kmsg.ACLResourceTypeTopic && rt <= kmsg.ACLResourceTypeUser
}

func concreteOperation(op kmsg.ACLOperation) bool {
	return op >= kmsg.ACLOperationAll && op <= kmsg.ACLOperationDescribeTokens
}

func concretePermission(p kmsg.ACLPermissionType) bool {
	return p == kmsg.ACLPermissionTypeAllow || p == kmsg.ACLPermissionTypeDeny
}

func concretePatternType(p kmsg.ACLResourcePatternType) bool {
	return p == kmsg.ACLResourcePatternTypeLiteral || p == kmsg.ACLResourcePatternTypePrefixed
}

// Validate checks a binding for CreateAcls. The error's Code is
// INVALID_REQUEST for every problem: a filter-only or unknown enum value,
// an empty resource name, a CLUSTER not named "kafka-cluster", a principal
// that is not "Type:name", a host that is neither "*" nor an IP address,
// or an operation the resource type does not have (Kafka's
// AclEntry.supportedOperations; ALL fits every type).
//
// Like Kafka, any principal type is accepted ("Group:x" is valid, and
// inert, since Chronik's principals are all users).
func (a ACL) Validate() *Error {
	bad := func(format string, args ...any) *Error { return errorf(kerr.InvalidRequest, format, args...) }
	switch {
	case !concreteResourceType(a.ResourceType):
		return bad("invalid resource type %v for an ACL binding", a.ResourceType)
	case !concretePatternType(a.PatternType):
		return bad("invalid pattern type %v for an ACL binding: want LITERAL or PREFIXED", a.PatternType)
	case !concreteOperation(a.Operation):
		return bad("invalid operation %v for an ACL binding", a.Operation)
	case !concretePermission(a.Permission):
		return bad("invalid permission type %v for an ACL binding: want ALLOW or DENY", a.Permission)
	case a.ResourceName == "":
		return bad("invalid empty resource name")
	case a.ResourceType == kmsg.ACLResourceTypeCluster && a.ResourceName != ClusterResourceName:
		return bad("the only valid name for the CLUSTER resource is %s", ClusterResourceName)
	}
	if typ, name, ok := strings.Cut(a.Principal, ":"); !ok || typ == "" || name == "" {
		return bad("invalid principal %q: want Type:name, such as User:alice", a.Principal)
	}
	if _, ok := CanonicalHost(a.Host); !ok {
		return bad("invalid host %q: want an IP address or *", a.Host)
	}
	if !operationSupported(a.ResourceType, a.Operation) {
		return bad("operation %v does not apply to resource type %v", a.Operation, a.ResourceType)
	}
	return nil
}

// CanonicalHost returns host as bindings store it and as Authorize must be
// given it: "*", or the IP address in net/netip's form with an IPv4-mapped
// IPv6 address reduced to IPv4, so that "::ffff:10.0.0.1", "10.0.0.1" and
// a connection's RemoteAddr all agree. ok is false for anything else.
func CanonicalHost(host string) (string, bool) {
	if host == WildcardHost {
		return host, true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", false
	}
	return ip.Unmap().String(), true
}

// ACLFilter is Kafka's AclBindingFilter (DescribeAcls, DeleteAcls). A nil
// string or an Any enum matches everything. PatternType Match matches the
// literal bindings named ResourceName, the literal wildcard "*" and the
// prefixed bindings whose name is a prefix of ResourceName: the bindings
// that apply to that resource. PatternType Any matches literal and
// prefixed bindings named exactly ResourceName.
type ACLFilter struct {
	ResourceType kmsg.ACLResourceType
	ResourceName *string
	PatternType  kmsg.ACLResourcePatternType
	Principal    *string
	Host         *string
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
}

// Validate rejects a filter with an Unknown (or out of range) enum value
// with INVALID_REQUEST.
func (f ACLFilter) Validate() *Error {
	bad := func(format string, args ...any) *Error { return errorf(kerr.InvalidRequest, format, args...) }
	switch {
	case f.ResourceType != kmsg.ACLResourceTypeAny && !concreteResourceType(f.ResourceType):
		return bad("invalid resource type %v in an ACL filter", f.ResourceType)
	case f.PatternType < kmsg.ACLResourcePatternTypeAny || f.PatternType > kmsg.ACLResourcePatternTypePrefixed:
		return bad("invalid pattern type %v in an ACL filter", f.PatternType)
	case f.Operation != kmsg.ACLOperationAny && !concreteOperation(f.Operation):
		return bad("invalid operation %v in an ACL filter", f.Operation)
	case f.Permission != kmsg.ACLPermissionTypeAny && !concretePermission(f.Permission):
		return bad("invalid permission type %v in an ACL filter", f.Permission)
	}
	return nil
}

// Matches reports whether a is one of the bindings f selects (Kafka's
// ResourcePatternFilter and AccessControlEntryFilter). A filter's host is
// compared in its canonical form when it is an IP address.
func (f ACLFilter) Matches(a ACL) bool {
	return f.matchesResource(a) && f.matchesEntry(a)
}

func (f ACLFilter) matchesResource(a ACL) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != a.ResourceType {
		return false
	}
	if f.PatternType != kmsg.ACLResourcePatternTypeAny && f.PatternType != kmsg.ACLResourcePatternTypeMatch &&
		f.PatternType != a.PatternType {
		return false
	}
	if f.ResourceName == nil {
		return true
	}
	name := *f.ResourceName
	if f.PatternType != kmsg.ACLResourcePatternTypeMatch {
		return name == a.ResourceName
	}
	switch a.PatternType {
	case kmsg.ACLResourcePatternTypeLiteral:
		return name == a.ResourceName || a.ResourceName == WildcardResource
	case kmsg.ACLResourcePatternTypePrefixed:
		return strings.HasPrefix(name, a.ResourceName)
	}
	return false
}

func (f ACLFilter) matchesEntry(a ACL) bool {
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil {
		h := *f.Host
		if c, ok := CanonicalHost(h); ok {
			h = c
		}
		if h != a.Host {
			return false
		}
	}
	if f.Operation != kmsg.ACLOperationAny && f.Operation != a.Operation {
		return false
	}
	return f.Permission == kmsg.ACLPermissionTypeAny || f.Permission == a.Permission
}

// ParseResourceType parses a resource type as Kafka's tools spell it, in
// any case, with or without '-' or '_' ("topic", "transactional-id",
// "TransactionalId", "DELEGATION_TOKEN"). "any" parses, for filters.
func ParseResourceType(s string) (kmsg.ACLResourceType, error) {
	v, err := kmsg.ParseACLResourceType(s)
	if err != nil {
		return 0, fmt.Errorf("security: unknown resource type %q", s)
	}
	return v, nil
}

// ParsePatternType parses "literal", "prefixed", and for filters "any" and
// "match", in any case.
func ParsePatternType(s string) (kmsg.ACLResourcePatternType, error) {
	v, err := kmsg.ParseACLResourcePatternType(s)
	if err != nil {
		return 0, fmt.Errorf("security: unknown resource pattern type %q", s)
	}
	return v, nil
}

// ParseOperation parses an operation as Kafka's tools spell it ("read",
// "describe-configs", "DescribeConfigs", "DESCRIBE_CONFIGS", "all"; "any"
// for filters).
func ParseOperation(s string) (kmsg.ACLOperation, error) {
	v, err := kmsg.ParseACLOperation(s)
	if err != nil {
		return 0, fmt.Errorf("security: unknown ACL operation %q", s)
	}
	return v, nil
}

// ParsePermission parses "allow", "deny", and for filters "any", in any
// case.
func ParsePermission(s string) (kmsg.ACLPermissionType, error) {
	v, err := kmsg.ParseACLPermissionType(s)
	if err != nil {
		return 0, fmt.Errorf("security: unknown ACL permission type %q", s)
	}
	return v, nil
}

// FormatACL renders a binding on one line the way kafka-acls prints its
// parts; the format is stable, for listings and tests.
//
//	ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL): (principal=User:alice, host=*, operation=READ, permissionType=ALLOW)
func FormatACL(a ACL) string {
	return fmt.Sprintf("ResourcePattern(resourceType=%v, name=%s, patternType=%v): (principal=%s, host=%s, operation=%v, permissionType=%v)",
		a.ResourceType, a.ResourceName, a.PatternType, a.Principal, a.Host, a.Operation, a.Permission)
}
