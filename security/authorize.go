package security

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Authorizer decides Kafka ACL checks. A nil *Authorizer has no super users
// and denies when no ACL applies.
type Authorizer struct {
	SuperUsers   []string // principals allowed everything
	AllowIfNoACL bool     // Kafka's allow.everyone.if.no.acl.found (default false)
}

// Authorize reports whether principal, connecting from host, may perform
// op on the resource of type rt named name; the rules are in the package
// documentation. host must be in CanonicalHost's form, which is what
// netip.AddrPort.Addr().Unmap().String() gives for a connection. op must be
// a concrete operation (ALL asks for bindings granting ALL) and rt a
// concrete resource type; ANY or UNKNOWN is refused.
//
// It runs on every produce and fetch: a handful of map lookups, no
// allocation.
func (a *Authorizer) Authorize(st *State, principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !concreteOperation(op) || !concreteResourceType(rt) {
		return false
	}
	if a.isSuperUser(principal) {
		return true
	}
	var v verdict
	st.aclIndex().scan(&v, principal, host, op, rt, name)
	switch {
	case v.deny:
		return false
	case v.allow:
		return true
	case v.found:
		return false
	}
	return a != nil && a.AllowIfNoACL
}

// AuthorizedOperations returns Kafka's authorized-operations bitfield (bit
// i set when the operation with code i is allowed) over the operations
// Kafka defines for rt, for Metadata, DescribeGroups and DescribeCluster.
func (a *Authorizer) AuthorizedOperations(st *State, principal, host string, rt kmsg.ACLResourceType, name string) int32 {
	var bits int32
	for _, op := range supportedOperations[rt] {
		if a.Authorize(st, principal, host, op, rt, name) {
			bits |= 1 << op
		}
	}
	return bits
}

func (a *Authorizer) isSuperUser(principal string) bool {
	return a != nil && slices.Contains(a.SuperUsers, principal)
}

// verdict accumulates what the bindings that apply to one resource say
// about one request.
type verdict struct {
	found bool // some binding applies to the resource, whoever it names
	allow bool // a matching ALLOW
	deny  bool // a matching DENY
}

func (v *verdict) scan(bindings []ACL, principal, host string, op kmsg.ACLOperation) {
	if len(bindings) > 0 {
		v.found = true
	}
	for i := range bindings {
		b := &bindings[i]
		if b.Principal != principal && b.Principal != WildcardPrincipal {
			continue
		}
		if b.Host != host && b.Host != WildcardHost {
			continue
		}
		if !grants(b, op) {
			continue
		}
		if b.Permission == kmsg.ACLPermissionTypeDeny {
			v.deny = true
		} else {
			v.allow = true
		}
	}
}

// grants reports whether binding b, if it matches the principal and host,
// speaks about op: its own operation, ALL, or (for ALLOW only) an
// operation that implies op (Kafka's StandardAuthorizerData).
func grants(b *ACL, op kmsg.ACLOperation) bool {
	if b.Operation == op || b.Operation == kmsg.ACLOperationAll {
		return true
	}
	if b.Permission != kmsg.ACLPermissionTypeAllow {
		return false
	}
	switch op {
	case kmsg.ACLOperationDescribe:
		switch b.Operation {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return b.Operation == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// aclKey names a resource, or a prefix, of one type.
type aclKey struct {
	rt   kmsg.ACLResourceType
	name string
}

// aclIndex finds the bindings that apply to a resource without looking at
// the others. Built once per State and never modified.
type aclIndex struct {
	literal  map[aclKey][]ACL // literal bindings, "*" included, by type and name
	prefixed map[aclKey][]ACL // prefixed bindings by type and prefix
	// prefixLens holds per type the distinct prefix lengths in prefixed,
	// ascending: a lookup tries each length that fits the name, so its
	// cost grows with how many lengths there are, not how many bindings.
	prefixLens map[kmsg.ACLResourceType][]int
}

var emptyACLIndex = &aclIndex{}

func buildACLIndex(acls []ACL) *aclIndex {
	if len(acls) == 0 {
		return emptyACLIndex
	}
	idx := &aclIndex{
		literal:    make(map[aclKey][]ACL),
		prefixed:   make(map[aclKey][]ACL),
		prefixLens: make(map[kmsg.ACLResourceType][]int),
	}
	for _, b := range acls {
		k := aclKey{b.ResourceType, b.ResourceName}
		switch b.PatternType {
		case kmsg.ACLResourcePatternTypeLiteral:
			idx.literal[k] = append(idx.literal[k], b)
		case kmsg.ACLResourcePatternTypePrefixed:
			if _, seen := idx.prefixed[k]; !seen {
				idx.prefixLens[b.ResourceType] = append(idx.prefixLens[b.ResourceType], len(b.ResourceName))
			}
			idx.prefixed[k] = append(idx.prefixed[k], b)
		}
	}
	for rt, lens := range idx.prefixLens {
		slices.Sort(lens)
		idx.prefixLens[rt] = slices.Compact(lens)
	}
	return idx
}

// scan feeds v every binding that applies to the resource (rt, name).
func (idx *aclIndex) scan(v *verdict, principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) {
	if idx.literal == nil && idx.prefixed == nil {
		return
	}
	v.scan(idx.literal[aclKey{rt, name}], principal, host, op)
	if name != WildcardResource {
		v.scan(idx.literal[aclKey{rt, WildcardResource}], principal, host, op)
	}
	for _, n := range idx.prefixLens[rt] {
		if n > len(name) {
			break
		}
		v.scan(idx.prefixed[aclKey{rt, name[:n]}], principal, host, op)
	}
}
