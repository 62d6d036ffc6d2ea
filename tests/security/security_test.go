// Package security_test runs Chronik with its Kafka security on (TLS and
// SASL listeners, SCRAM users, the ACL authorizer, mutual TLS between
// brokers and on the controller port) as real processes, and checks it over
// real TCP with unmodified clients: franz-go, sarama, confluent-kafka-go,
// kcat and kafka-python authenticate with SCRAM-SHA-512 and PLAIN and
// round-trip records; wrong passwords, missing ACLs, plaintext clients on a
// TLS port, the search API without credentials, and processes without a
// broker certificate on the controller port all get Kafka's exact refusal.
//
// Every certificate is made with package security in t.TempDir(); the users
// come from a CHRONIK_BOOTSTRAP_USERS_FILE.
//
//	go test ./tests/security -v
//	go test ./tests/security -run 'TestStandalone/clients/kcat'
//	CHRONIK_SECURITY_RECORDS=1000 go test ./tests/security   # records per client run (200)
//	CHRONIK_SECURITY_CLUSTER_RECORDS=10000 go test ./tests/security -run TestCluster  # (2000)
//
// kcat (Debian package kcat) and kafka-python (python3-kafka, run with
// /usr/bin/python3) are skipped when missing, except under CI=true.
package security_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/security"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// The users every broker bootstraps. alice gets ACLs on the sec- prefix,
// bob none; admin is a super user.
var passwords = map[string]string{
	"admin": "admin-secret",
	"alice": "alice-secret",
	"bob":   "bob-secret",
}

const (
	mechScram512 = "SCRAM-SHA-512"
	mechPlain    = "PLAIN"
)

// certPrincipal is the principal of a certificate issued by package
// security for name: the subject DN as Java prints it.
func certPrincipal(name string) string { return "User:CN=" + name + ",O=Chronik" }

// pki is a CA and the certificates it issued, in one directory.
type pki struct {
	dir    string
	caFile string
	pool   *x509.CertPool
}

// newPKI makes a CA, a server-and-client certificate for each broker name
// (valid for localhost and 127.0.0.1) and a client certificate for each
// client name.
func newPKI(t *testing.T, brokers, clients []string) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range brokers {
		req := security.CertRequest{Name: name, Hosts: []string{"localhost", "127.0.0.1"}, Server: true, Client: true}
		if _, _, err := ca.Issue(dir, req, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range clients {
		if _, _, err := ca.Issue(dir, security.CertRequest{Name: name, Client: true}, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &pki{dir: dir, caFile: ca.CertFile, pool: pool}
}

func (p *pki) certFile(name string) string { return filepath.Join(p.dir, name+".crt") }
func (p *pki) keyFile(name string) string  { return filepath.Join(p.dir, name+".key") }

// tls returns a client TLS config trusting the CA and presenting the
// certificate of name ("": none).
func (p *pki) tls(t *testing.T, name string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if name != "" {
		pair, err := tls.LoadX509KeyPair(p.certFile(name), p.keyFile(name))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// brokerEnv is the TLS identity of broker name.
func (p *pki) brokerEnv(name string) []string {
	return []string{"CHRONIK_TLS_CERT_FILE=" + p.certFile(name), "CHRONIK_TLS_KEY_FILE=" + p.keyFile(name), "CHRONIK_TLS_CA_FILE=" + p.caFile}
}

// writeUsersFile writes the bootstrap users (SCRAM-SHA-512) in kafka-storage's
// --add-scram form and returns its path.
func writeUsersFile(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, name := range []string{"admin", "alice", "bob"} {
		fmt.Fprintf(&b, "SCRAM-SHA-512=[name=%s,password=%s]\n", name, passwords[name])
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// saslMech is a franz-go SASL mechanism for user with password.
func saslMech(mech, user, password string) sasl.Mechanism {
	if mech == mechPlain {
		return plain.Auth{User: user, Pass: password}.AsMechanism()
	}
	return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
}

// newClient is a franz-go client closed when the test ends. tlsCfg nil is
// plain TCP; mech nil is no SASL.
func newClient(t *testing.T, seeds []string, tlsCfg *tls.Config, mech sasl.Mechanism, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("chronik-security-test")}
	if tlsCfg != nil {
		all = append(all, kgo.DialTLSConfig(tlsCfg))
	}
	if mech != nil {
		all = append(all, kgo.SASL(mech))
	}
	cl, err := kgo.NewClient(append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// waitForUser waits until user can authenticate: bootstrap users are
// created in the background once the broker (or the controller) is up.
func waitForUser(t *testing.T, seeds []string, tlsCfg *tls.Config, user string) {
	t.Helper()
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DialTLSConfig(tlsCfg),
			kgo.SASL(saslMech(mechScram512, user, passwords[user])))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cl.Request(ctx, kmsg.NewPtrMetadataRequest())
		if err != nil {
			return fmt.Errorf("%s cannot authenticate yet: %w", user, err)
		}
		return nil
	})
}

// createACLs creates the builder's ACLs as admin and fails on any error.
func createACLs(ctx context.Context, t *testing.T, adm *kadm.Client, b *kadm.ACLBuilder) {
	t.Helper()
	res, err := adm.CreateACLs(ctx, b)
	if err != nil {
		t.Fatalf("CreateAcls: %v", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("CreateAcls %s %v on %v %q: %v (%s)", r.Principal, r.Operation, r.Type, r.Name, r.Err, r.ErrMessage)
		}
	}
}

// createTopic creates topic through cl's admin client.
func createTopic(ctx context.Context, t *testing.T, adm *kadm.Client, topic string, partitions int32, rf int16, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("CreateTopics %q: %v (%s)", topic, err, resp.ErrMessage)
	}
}

// recordsPerRun is CHRONIK_SECURITY_RECORDS, else 200.
func recordsPerRun(t *testing.T) int { return intKnob(t, "CHRONIK_SECURITY_RECORDS", 200) }

func intKnob(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// requireKcat skips the test when kcat is missing, except in CI, where it
// must be installed.
func requireKcat(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		missing(t, "kcat is not installed (apt-get install kcat)", err)
	}
}

// python is the interpreter that has Debian's python3-kafka: the first
// python3 on PATH may be another one.
const python = "/usr/bin/python3"

// requirePython skips the test when /usr/bin/python3 cannot import module,
// except in CI, where it must.
func requirePython(t *testing.T, module, pkg string) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import "+module).CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("%s cannot import %s (apt-get install %s)", python, module, pkg), fmt.Errorf("%v: %s", err, out))
	}
}

func missing(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v", what, err)
	}
	t.Skipf("%s; skipping: %v", what, err)
}
