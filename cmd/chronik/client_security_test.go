package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chronik-go/chronik/broker"
	"github.com/chronik-go/chronik/indexer"
	"github.com/chronik-go/chronik/security"
)

// writeFile writes content to a new file in a test directory and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCerts is a CA with a certificate for 127.0.0.1 and localhost
// ("broker") and a client certificate ("alice").
type testCerts struct {
	dir, ca, brokerCert, brokerKey, aliceCert, aliceKey string
}

func newTestCerts(t *testing.T) testCerts {
	t.Helper()
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := testCerts{dir: dir, ca: ca.CertFile}
	if c.brokerCert, c.brokerKey, err = ca.Issue(dir, security.CertRequest{Name: "broker", Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if c.aliceCert, c.aliceKey, err = ca.Issue(dir, security.CertRequest{Name: "alice", Client: true}, time.Hour); err != nil {
		t.Fatal(err)
	}
	return c
}

// secureBroker is an in-process broker with one listener, the ACL
// authorizer, and a bootstrap super user admin (password admin-secret).
type secureBroker struct {
	addr      string
	adminPass string // a file holding admin's password
}

// admin is the connection flags of the super user.
func (b secureBroker) admin(extra ...string) []string {
	return append([]string{"--brokers", b.addr, "--sasl-username", "admin", "--sasl-password-file", b.adminPass}, extra...)
}

func newSecureBroker(t *testing.T, ln security.Listener, serverTLS *tls.Config) secureBroker {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.KafkaAddr = "127.0.0.1:0"
	cfg.GroupInitialRebalanceDelay = 0
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Listeners = []security.Listener{ln}
	cfg.ServerTLS = serverTLS
	cfg.Authorizer = &security.Authorizer{SuperUsers: []string{"User:admin"}}
	cfg.BootstrapUsers = []security.ScramUser{{Mechanism: security.MechanismScramSHA512, Name: "admin", Password: "admin-secret"}}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return secureBroker{addr: b.Addr().String(), adminPass: writeFile(t, "admin.pw", "admin-secret\n")}
}

// newSASLBroker is a secureBroker on SASL_PLAINTEXT whose admin exists.
func newSASLBroker(t *testing.T) secureBroker {
	t.Helper()
	b := newSecureBroker(t, security.Listener{Name: "SASL_PLAINTEXT", Protocol: security.SaslPlaintext, Host: "127.0.0.1"}, nil)
	// The bootstrap user is created in the background.
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if r := chronik(t, "", append([]string{"user", "list"}, b.admin("--timeout", "2s")...)...); r.code != 0 {
			return errors.New(r.stderr)
		}
		return nil
	})
	return b
}

func TestParseClientProperties(t *testing.T) {
	const scramJAAS = `org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="alice-secret";`
	type got struct {
		Protocol, Mechanism, Username, Password, CA, Cert, Key string
		SkipHostname                                           bool
		JAAS                                                   string
	}
	tests := []struct {
		name, in string
		want     got
		wantErr  string
	}{
		{name: "empty, comments and blank lines", in: "# a comment\n! another\n\n   \n"},
		{
			name: "librdkafka keys",
			in: "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=alice\nsasl.password=alice-secret\n" +
				"ssl.ca.location=/etc/ca.pem\nssl.certificate.location=/etc/alice.pem\nssl.key.location=/etc/alice.key\n" +
				"ssl.endpoint.identification.algorithm=none\n",
			want: got{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-256", Username: "alice", Password: "alice-secret",
				CA: "/etc/ca.pem", Cert: "/etc/alice.pem", Key: "/etc/alice.key", SkipHostname: true},
		},
		{
			name: "separators: colon, spaces, whitespace",
			in:   "security.protocol: SASL_PLAINTEXT\nsasl.mechanisms   =   PLAIN\nsasl.username alice\n  sasl.password=pass word \n",
			want: got{Protocol: "SASL_PLAINTEXT", Mechanism: "PLAIN", Username: "alice", Password: "pass word "},
		},
		{
			name: "escapes and a continued line",
			in:   "sasl.username=al\\\n    ice\nsasl.password=a\\=b\\:c\\\\d\\u0041\\t\nssl.ca.location=C:\\\\certs\\\\ca.pem\n",
			want: got{Username: "alice", Password: "a=b:c\\dA\t", CA: `C:\certs\ca.pem`},
		},
		{
			name: "Java JAAS SCRAM",
			in:   "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=" + scramJAAS + "\n",
			want: got{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-512", Username: "alice", Password: "alice-secret", JAAS: "SCRAM"},
		},
		{
			name: "Java JAAS PLAIN over two lines, escaped quote",
			in:   "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n  username=\"bob\" password=\"p\\\\\"w\";\n",
			want: got{Username: "bob", Password: `p"w`, JAAS: "PLAIN"},
		},
		{
			name: "JAAS unquoted values",
			in:   "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule optional username=carol password=c-pw;\n",
			want: got{Username: "carol", Password: "c-pw", JAAS: "SCRAM"},
		},
		{
			name: "Java trust and key stores in PEM",
			in:   "ssl.truststore.type=PEM\nssl.truststore.location=/etc/ca.pem\nssl.keystore.type=pem\nssl.keystore.location=/etc/alice.pem\nssl.endpoint.identification.algorithm=https\n",
			want: got{CA: "/etc/ca.pem", Cert: "/etc/alice.pem", Key: "/etc/alice.pem"},
		},
		{name: "empty algorithm skips the host name check", in: "ssl.endpoint.identification.algorithm=\n", want: got{SkipHostname: true}},
		{name: "later keys win", in: "sasl.username=a\nsasl.username=b\n", want: got{Username: "b"}},

		{name: "unknown key", in: "# x\nbootstrap.servers=x:9092\n", wantErr: "client.properties:2: bootstrap.servers: unknown key"},
		{name: "bad protocol", in: "security.protocol=TLS\n", wantErr: `client.properties:1: security.protocol: "TLS" is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL`},
		{name: "GSSAPI", in: "sasl.mechanism=GSSAPI\n", wantErr: "sasl.mechanism=GSSAPI in client.properties:1 is not supported by Chronik"},
		{name: "bad mechanism", in: "sasl.mechanism=SCRAM\n", wantErr: "is not one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"},
		{name: "JKS trust store", in: "ssl.truststore.type=JKS\nssl.truststore.location=/etc/ts.jks\n", wantErr: "client.properties:1: ssl.truststore.type=JKS: Chronik reads PEM files only"},
		{name: "PKCS12 key store", in: "ssl.keystore.type=PKCS12\n", wantErr: "ssl.keystore.type=PKCS12: Chronik reads PEM files only"},
		{name: "store password", in: "ssl.truststore.password=changeit\n", wantErr: "ssl.truststore.password: Chronik reads unencrypted PEM files, which have no password"},
		{name: "bad algorithm", in: "ssl.endpoint.identification.algorithm=dns\n", wantErr: `"dns" is not https, none or empty`},
		{name: "JAAS and username", in: "sasl.username=a\nsasl.jaas.config=" + scramJAAS + "\n", wantErr: "both sasl.jaas.config (Java) and sasl.username or sasl.password (librdkafka) are set"},
		{name: "JAAS module against mechanism", in: "sasl.mechanism=PLAIN\nsasl.jaas.config=" + scramJAAS + "\n",
			wantErr: "client.properties:2: sasl.jaas.config names ScramLoginModule, but sasl.mechanism=PLAIN in client.properties:1"},
		{name: "JAAS Kerberos", in: "sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;\n", wantErr: `login module "com.sun.security.auth.module.Krb5LoginModule" is not supported`},
		{name: "JAAS no password", in: "sasl.jaas.config=" + strings.Replace(scramJAAS, ` password="alice-secret"`, "", 1) + "\n", wantErr: `no password: add password="PASSWORD"`},
		{name: "JAAS no semicolon", in: "sasl.jaas.config=" + strings.TrimSuffix(scramJAAS, ";") + "\n", wantErr: "the entry does not end with ';'"},
		{name: "JAAS open quote", in: `sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice;` + "\n", wantErr: "a quoted value is not closed"},
		{name: "JAAS bad flag", in: "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule username=\"a\" password=\"b\";\n", wantErr: `"username" after the login module is not a control flag`},
		{name: "JAAS unknown option", in: "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"a\" password=\"b\" tokenauth=\"true\";\n", wantErr: `option "tokenauth" is not supported`},
		{name: "bad unicode escape", in: "sasl.password=\\u00zz\n", wantErr: `line 1: malformed \uXXXX escape`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseClientProperties(strings.NewReader(tt.in), "client.properties")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := got{p.protocol.value, p.mechanism.value, p.username.value, p.password.value,
				p.caFile.value, p.certFile.value, p.keyFile.value, p.skipHostnameCheck, p.jaasMechanism}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
		})
	}
}

func TestResolveClientSecurity(t *testing.T) {
	pw := writeFile(t, "pw", "from-file\r\nsecond line\n")
	emptyPW := writeFile(t, "empty.pw", "\n")
	props := writeFile(t, "client.properties", "security.protocol=SASL_SSL\nsasl.username=file-user\nsasl.password=file-pass\nssl.ca.location=/nonexistent/ca.pem\n")
	plainJAAS := writeFile(t, "plain.properties", "security.protocol=SASL_PLAINTEXT\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";\n")

	type want struct {
		Protocol, Mechanism, User, Password, CA string
	}
	tests := []struct {
		name    string
		flags   securityFlags
		env     map[string]string
		want    want
		wantErr string
	}{
		{name: "nothing is PLAINTEXT", want: want{Protocol: "PLAINTEXT"}},
		{name: "a user implies SASL_PLAINTEXT and SCRAM-SHA-512", flags: securityFlags{username: "alice", passwordFile: pw},
			want: want{Protocol: "SASL_PLAINTEXT", Mechanism: "SCRAM-SHA-512", User: "alice", Password: "from-file"}},
		{name: "a user and a CA imply SASL_SSL", flags: securityFlags{username: "alice", passwordFile: pw, caFile: "/ca.pem"},
			want: want{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-512", User: "alice", Password: "from-file", CA: "/ca.pem"}},
		{name: "a CA implies SSL", flags: securityFlags{caFile: "/ca.pem"}, want: want{Protocol: "SSL", CA: "/ca.pem"}},
		{name: "the environment's password", flags: securityFlags{username: "alice", mechanism: "scram-sha-256"}, env: map[string]string{"CHRONIK_SASL_PASSWORD": "from-env"},
			want: want{Protocol: "SASL_PLAINTEXT", Mechanism: "SCRAM-SHA-256", User: "alice", Password: "from-env"}},
		{name: "a password file beats the environment", flags: securityFlags{username: "alice", passwordFile: pw}, env: map[string]string{"CHRONIK_SASL_PASSWORD": "from-env"},
			want: want{Protocol: "SASL_PLAINTEXT", Mechanism: "SCRAM-SHA-512", User: "alice", Password: "from-file"}},
		{name: "the environment's password alone is ignored", env: map[string]string{"CHRONIK_SASL_PASSWORD": "from-env"}, want: want{Protocol: "PLAINTEXT", Password: "from-env"}},
		{name: "the file", flags: securityFlags{commandConfig: props},
			want: want{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-512", User: "file-user", Password: "file-pass", CA: "/nonexistent/ca.pem"}},
		{name: "flags and the environment over the file", flags: securityFlags{commandConfig: props, username: "flag-user", protocol: "sasl_ssl", caFile: "/flag/ca.pem"},
			env:  map[string]string{"CHRONIK_SASL_PASSWORD": "from-env"},
			want: want{Protocol: "SASL_SSL", Mechanism: "SCRAM-SHA-512", User: "flag-user", Password: "from-env", CA: "/flag/ca.pem"}},
		{name: "PlainLoginModule implies PLAIN", flags: securityFlags{commandConfig: plainJAAS},
			want: want{Protocol: "SASL_PLAINTEXT", Mechanism: "PLAIN", User: "u", Password: "p"}},

		{name: "SASL without a user", flags: securityFlags{protocol: "SASL_SSL"},
			wantErr: "--security-protocol SASL_SSL needs a user name: give --sasl-username NAME (or sasl.username in the --command-config file)"},
		{name: "SASL without a password", flags: securityFlags{username: "alice"},
			wantErr: `user "alice" (--sasl-username) needs a password: give --sasl-password-file FILE, set CHRONIK_SASL_PASSWORD, or put sasl.password in the --command-config file`},
		{name: "a user with SSL", flags: securityFlags{protocol: "SSL", username: "alice"},
			wantErr: "--sasl-username is set, but --security-protocol SSL does not use SASL: use SASL_PLAINTEXT or SASL_SSL, or drop --sasl-username"},
		{name: "a mechanism with PLAINTEXT", flags: securityFlags{mechanism: "PLAIN"},
			wantErr: "--sasl-mechanism is set, but PLAINTEXT (the default) does not use SASL"},
		{name: "a password file with PLAINTEXT", flags: securityFlags{protocol: "plaintext", passwordFile: pw},
			wantErr: "--sasl-password-file is set, but --security-protocol plaintext does not use SASL"},
		{name: "a CA with SASL_PLAINTEXT", flags: securityFlags{protocol: "SASL_PLAINTEXT", username: "a", passwordFile: pw, caFile: "/ca.pem"},
			wantErr: "--tls-ca-file is set, but --security-protocol SASL_PLAINTEXT does not use TLS: use SSL or SASL_SSL, or drop --tls-ca-file"},
		{name: "the file's CA with the flag's protocol", flags: securityFlags{commandConfig: props, protocol: "SASL_PLAINTEXT"},
			wantErr: "ssl.ca.location in " + props + ":4 is set, but --security-protocol SASL_PLAINTEXT does not use TLS"},
		{name: "a certificate without a key", flags: securityFlags{certFile: "/a.pem"},
			wantErr: "--tls-cert-file is set without a key: give --tls-key-file (ssl.key.location) too"},
		{name: "a key without a certificate", flags: securityFlags{keyFile: "/a.key"},
			wantErr: "--tls-key-file is set without a certificate"},
		{name: "an unknown protocol", flags: securityFlags{protocol: "TLS"}, wantErr: "--security-protocol TLS is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"},
		{name: "an unknown mechanism", flags: securityFlags{username: "a", passwordFile: pw, mechanism: "SCRAM-SHA-1"}, wantErr: "--sasl-mechanism SCRAM-SHA-1 is not one of"},
		{name: "a missing password file", flags: securityFlags{username: "a", passwordFile: "/nonexistent/pw"}, wantErr: `--sasl-password-file: "/nonexistent/pw" does not exist`},
		{name: "an empty password file", flags: securityFlags{username: "a", passwordFile: emptyPW}, wantErr: "starts with an empty line: put the password on its first line"},
		{name: "a missing properties file", flags: securityFlags{commandConfig: "/nonexistent/client.properties"},
			wantErr: `--command-config "/nonexistent/client.properties" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) string { return tt.env[k] }
			c, err := tt.flags.resolve(env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := want{string(c.protocol), c.mechanism.value, c.username.value, c.password, c.ca.value}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
		})
	}
}

// tlsServer accepts TLS connections with cfg until the test ends, and
// completes their handshakes.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestClientTLSConfig(t *testing.T) {
	certs := newTestCerts(t)
	srv, err := security.ServerConfig(security.TLSFiles{CertFile: certs.brokerCert, KeyFile: certs.brokerKey, CAFile: certs.ca, ClientAuth: security.ClientAuthRequested}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, srv)
	_, port, _ := net.SplitHostPort(addr)
	other := newTestCerts(t) // a CA the server's certificate is not from

	dial := func(host string, cfg *tls.Config) error {
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host // as kgo does
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", port), cfg)
		if err != nil {
			return err
		}
		return c.Close()
	}
	ca := setting{value: certs.ca, name: "--tls-ca-file"}
	none := setting{}
	tests := []struct {
		name     string
		ca       setting
		host     string
		verify   bool
		wantType any
	}{
		{"trusted CA, name in the certificate", ca, "localhost", true, nil},
		{"trusted CA, address in the certificate", ca, "127.0.0.1", true, nil},
		{"trusted CA, name not in the certificate", ca, "chronik.example", true, x509.HostnameError{}},
		{"trusted CA, name check off", ca, "chronik.example", false, nil},
		{"system roots", none, "localhost", true, x509.UnknownAuthorityError{}},
		{"another CA", setting{value: other.ca, name: "--tls-ca-file"}, "localhost", true, x509.UnknownAuthorityError{}},
		{"another CA, name check off", setting{value: other.ca, name: "--tls-ca-file"}, "chronik.example", false, x509.UnknownAuthorityError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := clientTLSConfig(tt.ca, none, none, tt.verify)
			if err != nil {
				t.Fatal(err)
			}
			err = dial(tt.host, cfg)
			switch want := tt.wantType.(type) {
			case nil:
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
			case x509.HostnameError:
				if !errors.As(err, &want) {
					t.Fatalf("dial: %v; want a host name error", err)
				}
			case x509.UnknownAuthorityError:
				if !errors.As(err, &want) {
					t.Fatalf("dial: %v; want an unknown authority error", err)
				}
			}
		})
	}

	t.Run("client certificate and its principal", func(t *testing.T) {
		cert := setting{value: certs.aliceCert, name: "--tls-cert-file"}
		key := setting{value: certs.aliceKey, name: "--tls-key-file"}
		cfg, err := clientTLSConfig(ca, cert, key, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := dial("localhost", cfg); err != nil {
			t.Fatal(err)
		}
		c := &clientSecurity{protocol: security.SSL, cert: cert, key: key}
		if got, want := c.principal(), "User:CN=alice,O=Chronik"; got != want {
			t.Errorf("principal %q, want %q", got, want)
		}
	})

	t.Run("files that are not PEM", func(t *testing.T) {
		jks := writeFile(t, "truststore.jks", "\xfe\xed\xfe\xed\x00\x00\x00\x02")
		der := writeFile(t, "ca.der", "\x30\x82\x01\x0a")
		for _, tc := range []struct {
			s    setting
			want string
		}{
			{setting{value: jks, name: "ssl.truststore.location", where: "c.properties:2"}, "ssl.truststore.location in c.properties:2: \"" + jks + "\" is a Java KeyStore (JKS); Chronik reads PEM: export it"},
			{setting{value: der, name: "--tls-ca-file"}, "--tls-ca-file: \"" + der + "\" is not PEM (a PKCS#12 or DER file?): convert it"},
			{setting{value: "/nonexistent/ca.pem", name: "--tls-ca-file"}, `--tls-ca-file: "/nonexistent/ca.pem" does not exist: fix the path`},
		} {
			_, err := clientTLSConfig(tc.s, none, none, true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v; want one containing %q", err, tc.want)
			}
		}
	})
}

// A listener that requires a client certificate (TLS 1.3 reports the
// refusal after the handshake, on the first read).
func TestTLSClientCertificateRequired(t *testing.T) {
	certs := newTestCerts(t)
	srv, err := security.ServerConfig(security.TLSFiles{CertFile: certs.brokerCert, KeyFile: certs.brokerKey, CAFile: certs.ca, ClientAuth: security.ClientAuthRequired}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, srv)
	wantErr(t, chronik(t, "", "topic", "list", "--brokers", addr, "--tls-ca-file", certs.ca, "--timeout", "5s"),
		"the broker at "+addr+" refused the TLS handshake: if it requires a client certificate (CHRONIK_TLS_CLIENT_AUTH), give --tls-cert-file and --tls-key-file signed by a CA it trusts (remote error: tls: certificate required)")
}

// TestTLSListener runs commands against a broker's SSL listener, and
// against listeners of the wrong kind, whose errors say which protocol to
// use.
func TestTLSListener(t *testing.T) {
	certs := newTestCerts(t)
	srv, err := security.ServerConfig(security.TLSFiles{CertFile: certs.brokerCert, KeyFile: certs.brokerKey, CAFile: certs.ca, ClientAuth: security.ClientAuthRequested}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newSecureBroker(t, security.Listener{Name: "SSL", Protocol: security.SSL, Host: "127.0.0.1"}, srv)
	_, port, _ := net.SplitHostPort(b.addr)
	local := "localhost:" + port
	plain := newBroker(t)
	tlsArgs := []string{"--tls-ca-file", certs.ca, "--timeout", "5s"}

	// alice is User:CN=alice,O=Chronik by her certificate; she may do
	// nothing yet.
	alice := append([]string{"--brokers", local, "--tls-cert-file", certs.aliceCert, "--tls-key-file", certs.aliceKey}, tlsArgs...)
	wantErr(t, chronik(t, "", append([]string{"user", "list"}, alice...)...),
		"User:CN=alice,O=Chronik may not DESCRIBE the cluster: an admin (a CHRONIK_SUPER_USERS principal) can allow it with `chronik acl add --allow-principal User:CN=alice,O=Chronik --operation describe --cluster`")
	// Without a certificate the principal is ANONYMOUS.
	wantErr(t, chronik(t, "", append([]string{"user", "list", "--brokers", local}, tlsArgs...)...), "User:ANONYMOUS may not DESCRIBE the cluster")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no CA", []string{"--brokers", local, "--security-protocol", "SSL", "--timeout", "5s"},
			"the certificate of the broker at " + local + " is not signed by a CA this client trusts: give the CA's PEM file with --tls-ca-file (ssl.ca.location)"},
		{"plaintext client on a TLS listener", []string{"--brokers", local, "--timeout", "5s"},
			"the broker at " + local + " closed the connection: the listener may need --security-protocol SSL, SASL_PLAINTEXT or SASL_SSL"},
		{"SASL_PLAINTEXT client on a TLS listener", []string{"--brokers", local, "--sasl-username", "admin", "--sasl-password-file", b.adminPass, "--timeout", "5s"},
			"the listener may need --security-protocol SASL_SSL"},
		{"TLS client on a plaintext listener", append([]string{"--brokers", plain}, tlsArgs...),
			"the listener at " + plain + " does not seem to speak TLS: it may need --security-protocol PLAINTEXT"},
		{"SASL_SSL client on a plaintext listener", append([]string{"--brokers", plain, "--sasl-username", "admin", "--sasl-password-file", b.adminPass}, tlsArgs...),
			"does not seem to speak TLS: it may need --security-protocol SASL_PLAINTEXT"},
		{"SASL client on a PLAINTEXT listener", []string{"--brokers", plain, "--sasl-username", "admin", "--sasl-password-file", b.adminPass, "--timeout", "5s"},
			"the listener at " + plain + " does not use SASL: connect with --security-protocol PLAINTEXT or SSL, or to the broker's SASL listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, chronik(t, "", append([]string{"topic", "list"}, tc.args...)...), tc.want)
		})
	}
}

// TestSearchServerAuth checks that chronik search --server sends basic
// credentials and trusts --tls-ca-file for https.
func TestSearchServerAuth(t *testing.T) {
	certs := newTestCerts(t)
	var gotUser, gotPass string
	var gotAuth bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUser, gotPass, gotAuth = r.BasicAuth()
		if gotPass != "alice-secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="chronik"`)
			http.Error(w, "authentication failed: invalid username or password", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(indexer.Result{})
	}))
	cert, err := tls.LoadX509KeyPair(certs.brokerCert, certs.brokerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	pw := writeFile(t, "alice.pw", "alice-secret\n")
	args := []string{"search", "--server", srv.URL, "--topic", "orders", "--tls-ca-file", certs.ca, "x"}
	mustChronik(t, "", append(args, "--sasl-username", "alice", "--sasl-password-file", pw)...)
	if !gotAuth || gotUser != "alice" || gotPass != "alice-secret" {
		t.Errorf("server saw basic auth %v %q %q; want alice", gotAuth, gotUser, gotPass)
	}
	r := chronikEnv(t, map[string]string{"CHRONIK_SASL_PASSWORD": "alice-secret"}, append(args, "--sasl-username", "alice")...)
	if r.code != 0 {
		t.Errorf("password from the environment: exit %d, stderr %q", r.code, r.stderr)
	}
	props := writeFile(t, "client.properties", "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";\nssl.ca.location="+certs.ca+"\n")
	mustChronik(t, "", "search", "--server", srv.URL, "--topic", "orders", "--command-config", props, "x")

	wantErr(t, chronik(t, "", args...),
		"401 Unauthorized: authentication failed: invalid username or password: give a SCRAM user's credentials with --sasl-username and --sasl-password-file (or CHRONIK_SASL_PASSWORD)")
	wantErr(t, chronik(t, "", append(args, "--sasl-username", "alice")...), `user "alice" (--sasl-username) needs a password`)
	wantErr(t, chronik(t, "", "search", "--server", srv.URL, "--topic", "orders", "x"), "certificate signed by unknown authority")
}
