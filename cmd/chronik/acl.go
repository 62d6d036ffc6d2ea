package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// ACLs, through CreateAcls, DescribeAcls and DeleteAcls, in the vocabulary
// of Kafka's kafka-acls.sh: the same flags, operations and conveniences
// (--producer, --consumer), so instructions written for Kafka carry over.

func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Add, list and remove ACLs",
		Long: `Manage the ACLs the broker checks when it runs with CHRONIK_AUTHORIZER=acl.
An ACL allows (or denies) a principal an operation on a resource, from a
host. Changing ACLs needs ALTER on the cluster, listing them DESCRIBE; the
first admin is a CHRONIK_SUPER_USERS principal.

Operations by resource (all applies to every resource):
  --topic             read, write, create, describe, delete, alter,
                      describe-configs, alter-configs
  --group             read, describe, delete
  --cluster           create, cluster-action, describe-configs, alter-configs,
                      idempotent-write, alter, describe
  --transactional-id  describe, write
Read, write, delete and alter imply describe; alter-configs implies
describe-configs.`,
	}
	cmd.AddCommand(newACLAddCmd(), newACLListCmd(), newACLRemoveCmd())
	return cmd
}

// aclResources are the resources named by --topic, --group, --cluster and
// --transactional-id.
type aclResources struct {
	topics, groups, txnIDs []string
	cluster                bool
}

// register adds the resource flags; filter selects the help of list and
// remove.
func (r *aclResources) register(fs *pflag.FlagSet, filter bool) {
	on := "a "
	if filter {
		on = "ACLs on this "
	}
	fs.StringArrayVar(&r.topics, "topic", nil, on+"topic (repeatable)")
	fs.StringArrayVar(&r.groups, "group", nil, on+"consumer group (repeatable)")
	fs.StringArrayVar(&r.txnIDs, "transactional-id", nil, on+"transactional id (repeatable)")
	if filter {
		fs.BoolVar(&r.cluster, "cluster", false, "ACLs on the cluster")
	} else {
		fs.BoolVar(&r.cluster, "cluster", false, "the cluster")
	}
}

func (r aclResources) empty() bool {
	return len(r.topics)+len(r.groups)+len(r.txnIDs) == 0 && !r.cluster
}

// each calls fn for every resource.
func (r aclResources) each(fn func(rt kmsg.ACLResourceType, name string)) {
	for _, t := range r.topics {
		fn(kmsg.ACLResourceTypeTopic, t)
	}
	for _, g := range r.groups {
		fn(kmsg.ACLResourceTypeGroup, g)
	}
	if r.cluster {
		fn(kmsg.ACLResourceTypeCluster, security.ClusterResourceName)
	}
	for _, x := range r.txnIDs {
		fn(kmsg.ACLResourceTypeTransactionalId, x)
	}
}

// builder is a kadm builder on the resources; with none, on every
// resource (filters only).
func (r aclResources) builder() *kadm.ACLBuilder {
	b := kadm.NewACLs()
	if r.empty() {
		return b.AnyResource()
	}
	return b.MaybeTopics(r.topics...).MaybeGroups(r.groups...).MaybeClusters(r.cluster).MaybeTransactionalIDs(r.txnIDs...)
}

// aclGrant is a set of operations on a set of resources.
type aclGrant struct {
	res aclResources
	ops []kmsg.ACLOperation
}

// aclGrants expands --operation, --producer and --consumer into grants,
// as kafka-acls does: a producer may WRITE, DESCRIBE and CREATE its topics
// (and WRITE and DESCRIBE its transactional ids), a consumer may READ and
// DESCRIBE its topics and READ its group. With none of them, forFilter
// selects every operation.
func aclGrants(res aclResources, ops []kmsg.ACLOperation, producer, consumer, forFilter bool) ([]aclGrant, error) {
	if !producer && !consumer {
		if len(ops) == 0 {
			if !forFilter {
				return nil, errors.New("no operation: give --operation (e.g. --operation read, repeatable), or --producer or --consumer")
			}
			ops = []kmsg.ACLOperation{kmsg.ACLOperationAny}
		}
		return []aclGrant{{res, ops}}, nil
	}
	switch {
	case len(ops) > 0:
		return nil, errors.New("--operation cannot be combined with --producer or --consumer: run the command twice")
	case len(res.topics) == 0:
		return nil, errors.New("--producer and --consumer need --topic")
	case res.cluster:
		return nil, errors.New("--cluster cannot be combined with --producer or --consumer")
	case consumer && len(res.groups) == 0:
		return nil, errors.New("--consumer needs --group: the consumer group that may read")
	case !consumer && len(res.groups) > 0:
		return nil, errors.New("--group goes with --consumer, not --producer alone")
	case !producer && len(res.txnIDs) > 0:
		return nil, errors.New("--transactional-id goes with --producer, not --consumer alone")
	}
	var gs []aclGrant
	topics := aclResources{topics: res.topics}
	if producer {
		gs = append(gs, aclGrant{topics, []kmsg.ACLOperation{kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe, kmsg.ACLOperationCreate}})
		if len(res.txnIDs) > 0 {
			gs = append(gs, aclGrant{aclResources{txnIDs: res.txnIDs}, []kmsg.ACLOperation{kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe}})
		}
	}
	if consumer {
		gs = append(gs,
			aclGrant{topics, []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationDescribe}},
			aclGrant{aclResources{groups: res.groups}, []kmsg.ACLOperation{kmsg.ACLOperationRead}})
	}
	return gs, nil
}

// aclPrincipals are --allow-principal, --deny-principal (and, to filter,
// --principal for either) with --host.
type aclPrincipals struct {
	allow, deny, either, hosts []string
}

func (p aclPrincipals) check() error {
	for _, set := range []struct {
		flag string
		vals []string
	}{{"allow-principal", p.allow}, {"deny-principal", p.deny}, {"principal", p.either}} {
		for _, v := range set.vals {
			if typ, name, ok := strings.Cut(v, ":"); !ok || typ == "" || name == "" {
				return fmt.Errorf("--%s %q is not Type:name: write e.g. User:%s", set.flag, v, strings.TrimPrefix(v, ":"))
			}
		}
	}
	for _, h := range p.hosts {
		if _, ok := security.CanonicalHost(h); !ok {
			return fmt.Errorf("--host %q is not an IP address or *: ACLs name hosts by address", h)
		}
	}
	return nil
}

// on sets the principals and hosts of b. For a filter, no principal means
// any, and no host any host.
func (p aclPrincipals) on(b *kadm.ACLBuilder) *kadm.ACLBuilder {
	allow := append(slices.Clone(p.either), p.allow...)
	deny := append(slices.Clone(p.either), p.deny...)
	if len(allow) == 0 && len(deny) == 0 {
		return b.Allow().AllowHosts(p.hosts...).Deny().DenyHosts(p.hosts...)
	}
	if len(allow) > 0 {
		b.Allow(allow...).AllowHosts(p.hosts...)
	}
	if len(deny) > 0 {
		b.Deny(deny...).DenyHosts(p.hosts...)
	}
	return b
}

func parseACLOperations(values []string, forFilter bool) ([]kmsg.ACLOperation, error) {
	var ops []kmsg.ACLOperation
	for _, v := range values {
		op, err := security.ParseOperation(strings.TrimSpace(v))
		if err != nil || op == kmsg.ACLOperationUnknown || (!forFilter && op == kmsg.ACLOperationAny) {
			return nil, fmt.Errorf("--operation %q is not one of all, read, write, create, delete, alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write", v)
		}
		if !slices.Contains(ops, op) {
			ops = append(ops, op)
		}
	}
	return ops, nil
}

// parsePattern parses --resource-pattern-type. Filters default to literal
// when a resource is named (as kafka-acls) and to any otherwise.
func parsePattern(value string, forFilter, named bool) (kmsg.ACLResourcePatternType, error) {
	if value == "" {
		if forFilter && !named {
			return kmsg.ACLResourcePatternTypeAny, nil
		}
		return kmsg.ACLResourcePatternTypeLiteral, nil
	}
	pt, err := security.ParsePatternType(strings.TrimSpace(value))
	switch {
	case err == nil && forFilter && pt != kmsg.ACLResourcePatternTypeUnknown:
		return pt, nil
	case err == nil && (pt == kmsg.ACLResourcePatternTypeLiteral || pt == kmsg.ACLResourcePatternTypePrefixed):
		return pt, nil
	case forFilter:
		return 0, fmt.Errorf("--resource-pattern-type %q is not one of any, match, literal, prefixed", value)
	}
	return 0, fmt.Errorf("--resource-pattern-type %q is not literal or prefixed", value)
}

func newACLAddCmd() *cobra.Command {
	var (
		conn               connFlags
		res                aclResources
		who                aclPrincipals
		operations         []string
		pattern            string
		producer, consumer bool
	)
	cmd := &cobra.Command{
		Use:   "add (--allow-principal P | --deny-principal P)... (--operation OP... | --producer | --consumer) (--topic T | --group G | --cluster | --transactional-id X)... [--resource-pattern-type literal|prefixed] [--host H]...",
		Short: "Allow or deny principals operations on resources",
		Long: `Add ACLs: every principal, host, operation and resource given, combined.
A DENY wins over any ALLOW. Adding an ACL that exists succeeds.

--producer allows WRITE, DESCRIBE and CREATE on the topics (and WRITE and
DESCRIBE on --transactional-id); --consumer allows READ and DESCRIBE on the
topics and READ on --group.`,
		Example: `  chronik acl add --allow-principal User:alice --operation read --operation write --topic orders
  chronik acl add --allow-principal User:etl --producer --topic events- --resource-pattern-type prefixed
  chronik acl add --allow-principal User:billing --consumer --topic orders --group billing
  chronik acl add --deny-principal User:mallory --operation all --topic orders --host 10.0.0.7
  chronik acl add --allow-principal User:ops --operation describe --cluster`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(who.allow)+len(who.deny) == 0 {
				return errors.New("no principal: give --allow-principal or --deny-principal, e.g. --allow-principal User:alice")
			}
			if res.empty() {
				return errors.New("no resource: give --topic, --group, --cluster or --transactional-id")
			}
			if len(who.hosts) == 0 {
				who.hosts = []string{security.WildcardHost}
			}
			if err := who.check(); err != nil {
				return err
			}
			ops, err := parseACLOperations(operations, false)
			if err != nil {
				return err
			}
			pt, err := parsePattern(pattern, false, true)
			if err != nil {
				return err
			}
			grants, err := aclGrants(res, ops, producer, consumer, false)
			if err != nil {
				return err
			}
			if err := validateGrants(grants, who, pt); err != nil {
				return err
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			var added []security.ACL
			var errs []error
			for _, g := range grants {
				b := who.on(g.res.builder().Operations(g.ops...).ResourcePatternType(pt))
				results, err := adm.CreateACLs(ctx, b)
				if err != nil {
					return conn.explain(err, "")
				}
				for _, r := range results {
					a := security.ACL{ResourceType: r.Type, ResourceName: r.Name, PatternType: r.Pattern,
						Principal: r.Principal, Host: r.Host, Operation: r.Operation, Permission: r.Permission}
					if r.Err != nil {
						if e := aclRequestError(&conn, r.Err, r.ErrMessage, kmsg.ACLOperationAlter); e != nil {
							return e
						}
						errs = append(errs, fmt.Errorf("%s: %s", security.FormatACL(a), kafkaErrorText(r.Err, r.ErrMessage)))
						continue
					}
					added = append(added, a)
				}
			}
			if len(added) > 0 {
				if err := printACLs(cmd.OutOrStdout(), added); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	conn.register(f)
	res.register(f, false)
	f.StringArrayVar(&who.allow, "allow-principal", nil, "principal to allow, Type:name, e.g. User:alice or User:* (repeatable)")
	f.StringArrayVar(&who.deny, "deny-principal", nil, "principal to deny, Type:name (repeatable)")
	f.StringArrayVar(&who.hosts, "host", nil, "IP address the principals connect from (repeatable; default *, any host)")
	f.StringSliceVar(&operations, "operation", nil, "operation to allow or deny (repeatable or comma-separated): all, read, write, create, delete, alter, describe, cluster-action, describe-configs, alter-configs, idempotent-write")
	f.StringVar(&pattern, "resource-pattern-type", "literal", "literal (the names given) or prefixed (every name starting with them)")
	f.BoolVar(&producer, "producer", false, "allow what a producer needs on --topic (and --transactional-id)")
	f.BoolVar(&consumer, "consumer", false, "allow what a consumer needs on --topic and --group")
	return cmd
}

// validateGrants checks every binding the grants make as the broker will,
// so that a mistake is refused before anything is added.
func validateGrants(grants []aclGrant, who aclPrincipals, pt kmsg.ACLResourcePatternType) error {
	for _, g := range grants {
		var err error
		g.res.each(func(rt kmsg.ACLResourceType, name string) {
			for _, op := range g.ops {
				for _, perm := range []struct {
					principals []string
					perm       kmsg.ACLPermissionType
				}{{who.allow, kmsg.ACLPermissionTypeAllow}, {who.deny, kmsg.ACLPermissionTypeDeny}} {
					for _, p := range perm.principals {
						for _, h := range who.hosts {
							a := security.ACL{ResourceType: rt, ResourceName: name, PatternType: pt, Principal: p, Host: h, Operation: op, Permission: perm.perm}
							if e := a.Validate(); e != nil && err == nil {
								_, flag := resourcePhrase(rt, name)
								err = fmt.Errorf("%s with --operation %s: %s (the operations of each resource are in `chronik acl --help`)",
									flag, operationFlag(op), e.Message)
							}
						}
					}
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func newACLListCmd() *cobra.Command {
	var (
		conn    connFlags
		res     aclResources
		who     aclPrincipals
		pattern string
	)
	cmd := &cobra.Command{
		Use:   "list [--topic T | --group G | --cluster | --transactional-id X]... [--principal P]... [--resource-pattern-type any|match|literal|prefixed]",
		Short: "List ACLs",
		Long: `List ACLs, all of them or those on the resources and of the principals given.
With a resource, --resource-pattern-type is literal by default: the ACLs
on exactly that name. "match" lists every ACL that applies to it (literal,
the wildcard * and matching prefixes), "any" the literal and prefixed
ACLs on that name.`,
		Example: `  chronik acl list
  chronik acl list --topic orders --resource-pattern-type match
  chronik acl list --principal User:alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := who.check(); err != nil {
				return err
			}
			pt, err := parsePattern(pattern, true, !res.empty())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			acls, err := describeACLs(ctx, &conn, adm, who.on(res.builder().Operations().ResourcePatternType(pt)))
			if err != nil {
				return err
			}
			return printACLs(cmd.OutOrStdout(), acls)
		},
	}
	f := cmd.Flags()
	conn.register(f)
	res.register(f, true)
	f.StringArrayVar(&who.either, "principal", nil, "ACLs of this principal, Type:name (repeatable)")
	f.StringVar(&pattern, "resource-pattern-type", "", "any, match, literal or prefixed (default: literal with a resource, else any)")
	return cmd
}

func describeACLs(ctx context.Context, conn *connFlags, adm *kadm.Client, b *kadm.ACLBuilder) ([]security.ACL, error) {
	results, err := adm.DescribeACLs(ctx, b)
	if err != nil {
		return nil, conn.explain(err, "")
	}
	var acls []security.ACL
	for _, r := range results {
		if r.Err != nil {
			if e := aclRequestError(conn, r.Err, r.ErrMessage, kmsg.ACLOperationDescribe); e != nil {
				return nil, e
			}
			return nil, fmt.Errorf("listing ACLs: %s", kafkaErrorText(r.Err, r.ErrMessage))
		}
		for _, d := range r.Described {
			acls = append(acls, security.ACL{ResourceType: d.Type, ResourceName: d.Name, PatternType: d.Pattern,
				Principal: d.Principal, Host: d.Host, Operation: d.Operation, Permission: d.Permission})
		}
	}
	return acls, nil
}

func newACLRemoveCmd() *cobra.Command {
	var (
		conn               connFlags
		res                aclResources
		who                aclPrincipals
		operations         []string
		pattern            string
		producer, consumer bool
		all, yes           bool
	)
	cmd := &cobra.Command{
		Use:   "remove [--topic T | --group G | --cluster | --transactional-id X]... [--principal P | --allow-principal P | --deny-principal P]... [--operation OP]... [--host H]... [--producer] [--consumer] [--resource-pattern-type any|match|literal|prefixed] | --all --yes",
		Short: "Remove the ACLs matching a filter",
		Long: `Remove every ACL matching all the filters given: resources, principals
(--principal for allowed and denied ones, --allow-principal or
--deny-principal for one kind), operations and hosts. --producer and
--consumer remove what the same flags of "chronik acl add" added. With a
resource, --resource-pattern-type is literal by default, as for list.

A filter is required: removing every ACL takes --all --yes.`,
		Example: `  chronik acl remove --allow-principal User:alice --operation write --topic orders
  chronik acl remove --principal User:alice
  chronik acl remove --topic orders --resource-pattern-type any
  chronik acl remove --all --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filtered := !res.empty() || len(who.allow)+len(who.deny)+len(who.either)+len(who.hosts)+len(operations) > 0 || producer || consumer
			switch {
			case all && filtered:
				return errors.New("--all removes every ACL and takes no filter: drop --all, or the filters")
			case all && !yes:
				return errors.New("--all removes every ACL: add --yes to confirm")
			case !all && !filtered:
				return errors.New("no filter: name a resource (--topic, --group, --cluster, --transactional-id), a principal, an operation or a host, or remove every ACL with --all --yes")
			}
			if err := who.check(); err != nil {
				return err
			}
			ops, err := parseACLOperations(operations, true)
			if err != nil {
				return err
			}
			pt, err := parsePattern(pattern, true, !res.empty())
			if err != nil {
				return err
			}
			grants, err := aclGrants(res, ops, producer, consumer, true)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			var removed []security.ACL
			var errs []error
			for _, g := range grants {
				results, err := adm.DeleteACLs(ctx, who.on(g.res.builder().Operations(g.ops...).ResourcePatternType(pt)))
				if err != nil {
					return conn.explain(err, "")
				}
				for _, r := range results {
					if r.Err != nil {
						if e := aclRequestError(&conn, r.Err, r.ErrMessage, kmsg.ACLOperationAlter); e != nil {
							return e
						}
						errs = append(errs, fmt.Errorf("removing ACLs: %s", kafkaErrorText(r.Err, r.ErrMessage)))
						continue
					}
					for _, d := range r.Deleted {
						a := security.ACL{ResourceType: d.Type, ResourceName: d.Name, PatternType: d.Pattern,
							Principal: d.Principal, Host: d.Host, Operation: d.Operation, Permission: d.Permission}
						if d.Err != nil {
							errs = append(errs, fmt.Errorf("%s: %s", security.FormatACL(a), kafkaErrorText(d.Err, d.ErrMessage)))
							continue
						}
						removed = append(removed, a)
					}
				}
			}
			if len(removed) == 0 && len(errs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no ACL matched: nothing was removed (`chronik acl list` shows the ACLs)")
				return nil
			}
			if len(removed) > 0 {
				if err := printACLs(cmd.OutOrStdout(), removed); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	conn.register(f)
	res.register(f, true)
	f.StringArrayVar(&who.either, "principal", nil, "ACLs of this principal, allowed or denied, Type:name (repeatable)")
	f.StringArrayVar(&who.allow, "allow-principal", nil, "ALLOW ACLs of this principal (repeatable)")
	f.StringArrayVar(&who.deny, "deny-principal", nil, "DENY ACLs of this principal (repeatable)")
	f.StringArrayVar(&who.hosts, "host", nil, "ACLs for this host, an IP address or * (repeatable)")
	f.StringSliceVar(&operations, "operation", nil, "ACLs of this operation (repeatable or comma-separated)")
	f.StringVar(&pattern, "resource-pattern-type", "", "any, match, literal or prefixed (default: literal with a resource, else any)")
	f.BoolVar(&producer, "producer", false, "the ACLs that acl add --producer adds on --topic (and --transactional-id)")
	f.BoolVar(&consumer, "consumer", false, "the ACLs that acl add --consumer adds on --topic and --group")
	f.BoolVar(&all, "all", false, "remove every ACL (with --yes)")
	f.BoolVar(&yes, "yes", false, "confirm --all")
	return cmd
}

// aclRequestError explains the errors that refuse a whole ACL request: no
// authorizer, or no permission for op on the cluster. nil for others.
func aclRequestError(conn *connFlags, err error, msg string, op kmsg.ACLOperation) error {
	switch {
	case errors.Is(err, kerr.SecurityDisabled):
		return fmt.Errorf("the broker at %s has no authorizer, so it keeps no ACLs: start it with CHRONIK_AUTHORIZER=acl (%s)", conn.where(), kafkaErrorText(err, msg))
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		return conn.denied(err, op, kmsg.ACLResourceTypeCluster, "")
	}
	return nil
}

// kafkaErrorText is a Kafka error's name with the broker's message.
func kafkaErrorText(err error, msg string) string {
	text := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) {
		text = ke.Message
	}
	if msg != "" {
		text += ": " + msg
	}
	return text
}

// printACLs prints bindings as a table, sorted, each once.
func printACLs(w io.Writer, acls []security.ACL) error {
	acls = slices.Clone(acls)
	slices.SortFunc(acls, func(a, b security.ACL) int {
		return strings.Compare(aclSortKey(a), aclSortKey(b))
	})
	acls = slices.Compact(acls)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tNAME\tPATTERN\tPRINCIPAL\tHOST\tOPERATION\tPERMISSION")
	for _, a := range acls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ResourceType, a.ResourceName, a.PatternType, a.Principal, a.Host, a.Operation, a.Permission)
	}
	return tw.Flush()
}

func aclSortKey(a security.ACL) string {
	return fmt.Sprintf("%02d\x00%s\x00%02d\x00%s\x00%s\x00%02d\x00%02d", a.ResourceType, a.ResourceName, a.PatternType, a.Principal, a.Host, a.Operation, a.Permission)
}

// resourcePhrase names a resource in a sentence and as chronik acl flags.
func resourcePhrase(rt kmsg.ACLResourceType, name string) (what, flag string) {
	shown, arg := strconv.Quote(name), name
	if name == "" {
		shown, arg = "", strings.ToUpper(strings.ReplaceAll(aclResourceFlag(rt), "-", "_"))
	}
	switch rt {
	case kmsg.ACLResourceTypeCluster:
		return "the cluster", "--cluster"
	case kmsg.ACLResourceTypeTopic:
		what = "topic"
	case kmsg.ACLResourceTypeGroup:
		what = "group"
	case kmsg.ACLResourceTypeTransactionalId:
		what = "transactional id"
	default:
		what = strings.ToLower(rt.String())
	}
	if shown == "" {
		what = "the " + what
	} else {
		what += " " + shown
	}
	return what, "--" + aclResourceFlag(rt) + " " + arg
}

// aclResourceFlag is the chronik acl flag naming a resource of type rt.
func aclResourceFlag(rt kmsg.ACLResourceType) string {
	switch rt {
	case kmsg.ACLResourceTypeTopic:
		return "topic"
	case kmsg.ACLResourceTypeGroup:
		return "group"
	case kmsg.ACLResourceTypeCluster:
		return "cluster"
	case kmsg.ACLResourceTypeTransactionalId:
		return "transactional-id"
	}
	return strings.ToLower(strings.ReplaceAll(rt.String(), "_", "-"))
}

// operationFlag spells op as --operation takes it: "read",
// "describe-configs".
func operationFlag(op kmsg.ACLOperation) string {
	return strings.ToLower(strings.ReplaceAll(op.String(), "_", "-"))
}
