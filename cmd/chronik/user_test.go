package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestUserCommands creates, lists and deletes a SCRAM user on a broker
// with a SASL listener, and checks what the user can then do.
func TestUserCommands(t *testing.T) {
	b := newSASLBroker(t)
	alicePW := writeFile(t, "alice.pw", "alice-secret\n")
	alice := []string{"--brokers", b.addr, "--sasl-username", "alice", "--sasl-password-file", alicePW, "--timeout", "5s"}

	// From standard input, which is not a terminal: its first line.
	r := mustChronik(t, "alice-secret\nignored\n", append([]string{"user", "create", "alice"}, b.admin()...)...)
	if want := `set the SCRAM-SHA-512 credential of user "alice" (8192 iterations)`; !strings.Contains(r.stdout, want) {
		t.Errorf("create output %q lacks %q", r.stdout, want)
	}
	r = mustChronik(t, "", append([]string{"user", "list"}, b.admin()...)...)
	for _, want := range []string{`(?m)^NAME\s+MECHANISM\s+ITERATIONS$`, `(?m)^admin\s+SCRAM-SHA-512\s+8192$`, `(?m)^alice\s+SCRAM-SHA-512\s+8192$`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("list output lacks %s:\n%s", want, r.stdout)
		}
	}

	// alice authenticates, but may do nothing yet.
	wantErr(t, chronik(t, "", append([]string{"user", "list"}, alice...)...),
		"User:alice may not DESCRIBE the cluster: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:alice --operation describe --cluster`")
	wantErr(t, chronik(t, "x\n", append([]string{"user", "create", "mallory"}, alice...)...),
		"User:alice may not ALTER the cluster: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:alice --operation alter --cluster`")

	// A wrong password, and SCRAM-SHA-256, which alice has no credential for.
	wrong := writeFile(t, "wrong.pw", "not-her-password\n")
	wantErr(t, chronik(t, "", "topic", "list", "--brokers", b.addr, "--sasl-username", "alice", "--sasl-password-file", wrong),
		`authentication failed for user "alice" at `+b.addr+": check --sasl-username and the password; the user may not exist or have no SCRAM-SHA-512 credential")
	wantErr(t, chronik(t, "", append([]string{"topic", "list", "--sasl-mechanism", "SCRAM-SHA-256"}, alice...)...),
		"have no SCRAM-SHA-256 credential")

	// Upsert: a second mechanism and a new password from a file; the old
	// password stops working.
	newPW := writeFile(t, "alice-new.pw", "new-secret\n")
	r = mustChronik(t, "", append([]string{"user", "create", "alice", "--mechanism", "scram-sha-256,SCRAM-SHA-512", "--iterations", "4096", "--password-file", newPW}, b.admin()...)...)
	if want := `set the SCRAM-SHA-256 and SCRAM-SHA-512 credentials of user "alice" (4096 iterations)`; !strings.Contains(r.stdout, want) {
		t.Errorf("create output %q lacks %q", r.stdout, want)
	}
	r = mustChronik(t, "", append([]string{"user", "list", "alice"}, b.admin()...)...)
	if !regexp.MustCompile(`(?m)^alice\s+SCRAM-SHA-256\s+4096\nalice\s+SCRAM-SHA-512\s+4096$`).MatchString(r.stdout) || strings.Contains(r.stdout, "admin") {
		t.Errorf("list alice:\n%s", r.stdout)
	}
	wantErr(t, chronik(t, "", append([]string{"topic", "list"}, alice...)...), `authentication failed for user "alice"`)
	// PLAIN is checked against the SCRAM credentials.
	if r := chronikEnv(t, map[string]string{"CHRONIK_SASL_PASSWORD": "new-secret"}, "user", "list", "--brokers", b.addr, "--sasl-username", "alice", "--sasl-mechanism", "PLAIN"); !strings.Contains(r.stderr, "User:alice may not DESCRIBE the cluster") {
		t.Errorf("PLAIN login: exit %d, stderr %q; want alice authenticated and refused", r.code, r.stderr)
	}

	// Deleting one mechanism, then the rest.
	r = mustChronik(t, "", append([]string{"user", "delete", "alice", "--mechanism", "SCRAM-SHA-256"}, b.admin()...)...)
	if want := `deleted the SCRAM-SHA-256 credential of user "alice"`; !strings.Contains(r.stdout, want) {
		t.Errorf("delete output %q lacks %q", r.stdout, want)
	}
	r = mustChronik(t, "", append([]string{"user", "delete", "alice"}, b.admin()...)...)
	if want := `deleted the SCRAM-SHA-512 credential of user "alice"`; !strings.Contains(r.stdout, want) {
		t.Errorf("delete output %q lacks %q", r.stdout, want)
	}
	if r := chronikEnv(t, map[string]string{"CHRONIK_SASL_PASSWORD": "new-secret"}, "topic", "list", "--brokers", b.addr, "--sasl-username", "alice"); !strings.Contains(r.stderr, `authentication failed for user "alice"`) {
		t.Errorf("deleted user: exit %d, stderr %q; want the authentication failure", r.code, r.stderr)
	}
	r = mustChronik(t, "", append([]string{"user", "list"}, b.admin()...)...)
	if strings.Contains(r.stdout, "alice") {
		t.Errorf("deleted user still listed:\n%s", r.stdout)
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"list unknown user", "", []string{"user", "list", "bob"},
			`user "bob": RESOURCE_NOT_FOUND: no SCRAM credential for user bob: ` + "`chronik user list` shows the users and their mechanisms"},
		{"delete unknown user", "", []string{"user", "delete", "bob"}, `user "bob": RESOURCE_NOT_FOUND`},
		{"delete a mechanism the user lacks", "", []string{"user", "delete", "admin", "--mechanism", "SCRAM-SHA-256"}, `user "admin": RESOURCE_NOT_FOUND`},
		{"no password", "", []string{"user", "create", "bob"}, "no password on standard input: pipe it in (its first line is used) or give --password-file FILE"},
		{"too few iterations", "pw\n", []string{"user", "create", "bob", "--iterations", "1000"}, "--iterations 1000 is outside 4096 to 16384, the range Kafka accepts"},
		{"PLAIN mechanism", "pw\n", []string{"user", "create", "bob", "--mechanism", "PLAIN"}, "--mechanism PLAIN: users are stored as SCRAM credentials"},
		{"unknown mechanism", "pw\n", []string{"user", "create", "bob", "--mechanism", "SHA-1"}, `--mechanism "SHA-1" is not SCRAM-SHA-512 or SCRAM-SHA-256`},
		{"missing password file", "", []string{"user", "create", "bob", "--password-file", "/nonexistent/pw"}, `--password-file: "/nonexistent/pw" does not exist`},
		{"no name", "", []string{"user", "create"}, "accepts 1 arg(s), received 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, chronik(t, tc.stdin, append(tc.args, b.admin()...)...), tc.want)
		})
	}
}
