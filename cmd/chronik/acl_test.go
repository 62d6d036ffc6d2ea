package main

import (
	"regexp"
	"strings"
	"testing"
)

// wantRows fails unless out has a line matching each pattern, and no
// other rows than header and those when exact.
func wantRows(t *testing.T, what, out string, exact bool, rows ...string) {
	t.Helper()
	for _, row := range rows {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(out) {
			t.Errorf("%s lacks a row %s:\n%s", what, row, out)
		}
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); exact && len(lines) != len(rows)+1 {
		t.Errorf("%s has %d rows, want %d:\n%s", what, len(lines)-1, len(rows), out)
	}
}

// TestACLCommands grants a user what it needs, step by step, on a broker
// with the ACL authorizer, and removes it again.
func TestACLCommands(t *testing.T) {
	b := newSASLBroker(t)
	mustChronik(t, "alice-secret\n", append([]string{"user", "create", "alice"}, b.admin()...)...)
	alicePW := writeFile(t, "alice.pw", "alice-secret\n")
	alice := []string{"--brokers", b.addr, "--sasl-username", "alice", "--sasl-password-file", alicePW, "--timeout", "10s"}
	as := func(who []string, args ...string) []string { return append(args, who...) }

	// Nothing is allowed yet.
	wantErr(t, chronik(t, "", as(alice, "topic", "create", "orders", "--partitions", "1")...), `topic "orders": not authorized to create it`)

	r := mustChronik(t, "", as(b.admin(), "acl", "add", "--allow-principal", "User:alice", "--operation", "all", "--topic", "orders")...)
	wantRows(t, "acl add", r.stdout, true, `TOPIC\s+orders\s+LITERAL\s+User:alice\s+\*\s+ALL\s+ALLOW`)

	mustChronik(t, "", as(alice, "topic", "create", "orders", "--partitions", "1")...)
	mustChronik(t, "a\nb\n", as(alice, "produce", "--topic", "orders")...)
	wantErr(t, chronik(t, "c\n", as(alice, "produce", "--topic", "other")...),
		"User:alice may not WRITE topic \"other\": an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:alice --operation write --topic other`")
	// A group consumer also needs READ on its group.
	wantErr(t, chronik(t, "", as(alice, "consume", "--topic", "orders", "--group", "billing", "--count", "2")...),
		"User:alice may not READ the group: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:alice --operation read --group GROUP`")
	r = mustChronik(t, "", as(b.admin(), "acl", "add", "--allow-principal", "User:alice", "--operation", "read", "--group", "billing")...)
	wantRows(t, "acl add", r.stdout, true, `GROUP\s+billing\s+LITERAL\s+User:alice\s+\*\s+READ\s+ALLOW`)
	r = mustChronik(t, "", as(alice, "consume", "--topic", "orders", "--group", "billing", "--count", "2")...)
	if r.stdout != "a\nb\n" {
		t.Errorf("alice consumed %q, want a and b", r.stdout)
	}

	// Listing, whole and filtered.
	r = mustChronik(t, "", as(b.admin(), "acl", "list")...)
	wantRows(t, "acl list", r.stdout, true,
		`TOPIC\s+orders\s+LITERAL\s+User:alice\s+\*\s+ALL\s+ALLOW`,
		`GROUP\s+billing\s+LITERAL\s+User:alice\s+\*\s+READ\s+ALLOW`)
	if !strings.HasPrefix(r.stdout, "RESOURCE  NAME") {
		t.Errorf("acl list has no header:\n%s", r.stdout)
	}
	r = mustChronik(t, "", as(b.admin(), "acl", "list", "--topic", "orders")...)
	wantRows(t, "acl list --topic orders", r.stdout, true, `TOPIC\s+orders\s+LITERAL\s+User:alice\s+\*\s+ALL\s+ALLOW`)
	r = mustChronik(t, "", as(b.admin(), "acl", "list", "--principal", "User:bob")...)
	wantRows(t, "acl list --principal User:bob", r.stdout, true)

	// --producer, prefixed, and a deny from one host; match lists what
	// applies to a topic.
	r = mustChronik(t, "", as(b.admin(), "acl", "add", "--allow-principal", "User:etl", "--producer", "--topic", "events-", "--resource-pattern-type", "prefixed")...)
	wantRows(t, "acl add --producer", r.stdout, true,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+WRITE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+CREATE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+DESCRIBE\s+ALLOW`)
	mustChronik(t, "", as(b.admin(), "acl", "add", "--deny-principal", "User:etl", "--operation", "write", "--topic", "events-eu", "--host", "10.0.0.7")...)
	r = mustChronik(t, "", as(b.admin(), "acl", "list", "--topic", "events-eu", "--resource-pattern-type", "match")...)
	wantRows(t, "acl list --resource-pattern-type match", r.stdout, true,
		`TOPIC\s+events-eu\s+LITERAL\s+User:etl\s+10\.0\.0\.7\s+WRITE\s+DENY`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+WRITE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+CREATE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+DESCRIBE\s+ALLOW`)
	r = mustChronik(t, "", as(b.admin(), "acl", "remove", "--producer", "--topic", "events-", "--resource-pattern-type", "prefixed")...)
	wantRows(t, "acl remove --producer", r.stdout, true,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+WRITE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+CREATE\s+ALLOW`,
		`TOPIC\s+events-\s+PREFIXED\s+User:etl\s+\*\s+DESCRIBE\s+ALLOW`)
	r = mustChronik(t, "", as(b.admin(), "acl", "remove", "--principal", "User:etl")...)
	wantRows(t, "acl remove --principal", r.stdout, true, `TOPIC\s+events-eu\s+LITERAL\s+User:etl\s+10\.0\.0\.7\s+WRITE\s+DENY`)

	// Removing alice's topic ACL takes her write away again.
	r = mustChronik(t, "", as(b.admin(), "acl", "remove", "--allow-principal", "User:alice", "--operation", "all", "--topic", "orders")...)
	wantRows(t, "acl remove", r.stdout, true, `TOPIC\s+orders\s+LITERAL\s+User:alice\s+\*\s+ALL\s+ALLOW`)
	wantErr(t, chronik(t, "c\n", as(alice, "produce", "--topic", "orders")...), `User:alice may not WRITE topic "orders"`)
	r = mustChronik(t, "", as(b.admin(), "acl", "remove", "--topic", "orders")...)
	if !strings.Contains(r.stderr, "no ACL matched: nothing was removed") {
		t.Errorf("removing nothing: stderr %q", r.stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"remove without a filter", []string{"acl", "remove"}, "no filter: name a resource (--topic, --group, --cluster, --transactional-id), a principal, an operation or a host, or remove every ACL with --all --yes"},
		{"remove all unconfirmed", []string{"acl", "remove", "--all"}, "--all removes every ACL: add --yes to confirm"},
		{"remove all with a filter", []string{"acl", "remove", "--all", "--yes", "--topic", "orders"}, "--all removes every ACL and takes no filter"},
		{"operation of another resource", []string{"acl", "add", "--allow-principal", "User:alice", "--operation", "read", "--cluster"},
			"--cluster with --operation read: operation READ does not apply to resource type CLUSTER (the operations of each resource are in `chronik acl --help`)"},
		{"principal without a type", []string{"acl", "add", "--allow-principal", "alice", "--operation", "read", "--topic", "t"}, `--allow-principal "alice" is not Type:name: write e.g. User:alice`},
		{"bad host", []string{"acl", "add", "--allow-principal", "User:a", "--operation", "read", "--topic", "t", "--host", "example.com"}, `--host "example.com" is not an IP address or *`},
		{"no principal", []string{"acl", "add", "--operation", "read", "--topic", "t"}, "no principal: give --allow-principal or --deny-principal"},
		{"no resource", []string{"acl", "add", "--allow-principal", "User:a", "--operation", "read"}, "no resource: give --topic, --group, --cluster or --transactional-id"},
		{"no operation", []string{"acl", "add", "--allow-principal", "User:a", "--topic", "t"}, "no operation: give --operation"},
		{"any operation", []string{"acl", "add", "--allow-principal", "User:a", "--operation", "any", "--topic", "t"}, `--operation "any" is not one of all, read`},
		{"consumer without a group", []string{"acl", "add", "--allow-principal", "User:a", "--consumer", "--topic", "t"}, "--consumer needs --group"},
		{"producer with an operation", []string{"acl", "add", "--allow-principal", "User:a", "--producer", "--operation", "read", "--topic", "t"}, "--operation cannot be combined with --producer or --consumer"},
		{"match to add", []string{"acl", "add", "--allow-principal", "User:a", "--operation", "read", "--topic", "t", "--resource-pattern-type", "match"},
			`--resource-pattern-type "match" is not literal or prefixed`},
		{"alice may not list", as(alice, "acl", "list"), "User:alice may not DESCRIBE the cluster"},
		{"alice may not add", as(alice, "acl", "add", "--allow-principal", "User:alice", "--operation", "all", "--cluster"),
			"User:alice may not ALTER the cluster: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:alice --operation alter --cluster`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--brokers") {
				args = as(b.admin(), args...)
			}
			wantErr(t, chronik(t, "", args...), tc.want)
		})
	}

	r = mustChronik(t, "", as(b.admin(), "acl", "remove", "--all", "--yes")...)
	wantRows(t, "acl remove --all", r.stdout, true, `GROUP\s+billing\s+LITERAL\s+User:alice\s+\*\s+READ\s+ALLOW`)
	r = mustChronik(t, "", as(b.admin(), "acl", "list")...)
	wantRows(t, "acl list after remove --all", r.stdout, true)
}

func TestACLWithoutAuthorizer(t *testing.T) {
	addr := newBroker(t)
	wantErr(t, chronik(t, "", "acl", "list", "--brokers", addr),
		"the broker at "+addr+" has no authorizer, so it keeps no ACLs: start it with CHRONIK_AUTHORIZER=acl")
	wantErr(t, chronik(t, "", "acl", "add", "--brokers", addr, "--allow-principal", "User:a", "--operation", "read", "--topic", "t"),
		"has no authorizer")
}
