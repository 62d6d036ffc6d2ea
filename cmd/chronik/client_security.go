package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/security"
)

// Client security: how the commands reach SSL, SASL_PLAINTEXT and SASL_SSL
// listeners. A setting comes from its flag, else (the password only) from
// CHRONIK_SASL_PASSWORD, else from the Kafka client properties file of
// --command-config, so a file written for Kafka's tools (Java key names) or
// for a librdkafka client works unchanged, as long as its files are PEM.
//
// Without --security-protocol (or security.protocol) the protocol follows
// from what is given: a SASL user name means SASL, a TLS file means TLS.
// A setting the protocol would ignore (a user name with SSL, a CA file with
// SASL_PLAINTEXT) is an error rather than silently unused.

// envSASLPassword is read when --sasl-password-file is not given: a secret
// kept out of the command line, where ps and shell history would show it.
const envSASLPassword = "CHRONIK_SASL_PASSWORD"

// defaultSASLMechanism is Kafka's usual SCRAM mechanism and the one
// `chronik user create` uses by default.
const defaultSASLMechanism = security.MechanismScramSHA512

// securityFlags are the security flags of connFlags.
type securityFlags struct {
	commandConfig string
	protocol      string
	mechanism     string
	username      string
	passwordFile  string
	caFile        string
	certFile      string
	keyFile       string

	resolved *clientSecurity // cached by resolve
}

func (s *securityFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.commandConfig, "command-config", "", "Kafka client properties file (security.protocol, sasl.mechanism, sasl.username, sasl.password, sasl.jaas.config, ssl.ca.location, ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm); flags override it")
	fs.StringVar(&s.protocol, "security-protocol", "", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: SASL_PLAINTEXT with --sasl-username, SSL with a --tls-* file, SASL_SSL with both, else PLAINTEXT)")
	fs.StringVar(&s.mechanism, "sasl-mechanism", "", "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (default SCRAM-SHA-512)")
	s.registerCredentials(fs)
}

// registerHTTP registers the flags that apply to a broker's HTTP API:
// basic authentication and TLS trust.
func (s *securityFlags) registerHTTP(fs *pflag.FlagSet) {
	fs.StringVar(&s.commandConfig, "command-config", "", "Kafka client properties file: its sasl.username, sasl.password (or sasl.jaas.config) and ssl.* files are used; flags override it")
	s.registerCredentials(fs)
}

func (s *securityFlags) registerCredentials(fs *pflag.FlagSet) {
	fs.StringVar(&s.username, "sasl-username", "", "SASL (SCRAM or PLAIN) user name")
	fs.StringVar(&s.passwordFile, "sasl-password-file", "", "file whose first line is the password of --sasl-username (else $"+envSASLPassword+")")
	fs.StringVar(&s.caFile, "tls-ca-file", "", "PEM file of the CA certificates to trust (default: the system's)")
	fs.StringVar(&s.certFile, "tls-cert-file", "", "PEM client certificate, for a listener that asks for one")
	fs.StringVar(&s.keyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
}

// setting is one value and where it came from, so that an error names it
// the way the operator wrote it.
type setting struct {
	value string
	name  string // "--sasl-username", "sasl.username" or "CHRONIK_SASL_PASSWORD"
	where string // "client.properties:3" for a key of a properties file
	note  string // why a value nobody gave was chosen, e.g. "implied by --sasl-username"
}

func (s setting) set() bool { return s.value != "" }

// origin names the setting without its value (passwords).
func (s setting) origin() string {
	if s.where != "" {
		return s.name + " in " + s.where
	}
	return s.name
}

// String names the setting with its value.
func (s setting) String() string {
	switch {
	case s.note != "":
		return s.value + " (" + s.note + ")"
	case s.where != "":
		return s.name + "=" + s.value + " in " + s.where
	case strings.HasPrefix(s.name, "--"):
		return s.name + " " + s.value
	}
	return s.name + "=" + s.value
}

func flagSetting(name, value string) setting { return setting{value: value, name: "--" + name} }

// either is the flag when given, else the file's setting.
func either(flag setting, file setting) setting {
	if flag.set() {
		return flag
	}
	return file
}

// clientSecurity is the resolved security of a client.
type clientSecurity struct {
	protocol  security.Protocol
	protoFrom setting
	mechanism setting // SASL only
	username  setting // SASL only
	password  string
	passFrom  setting
	ca        setting // TLS only; empty: the system's roots
	cert, key setting // TLS only; both or neither
	// verifyHostname is false when ssl.endpoint.identification.algorithm
	// is empty or none: the chain is checked, the name is not.
	verifyHostname bool
}

// resolve merges the flags, the environment and the properties file. The
// result is cached: every connection of a command uses the same settings.
func (s *securityFlags) resolve(env ops.Env) (*clientSecurity, error) {
	if s.resolved != nil {
		return s.resolved, nil
	}
	p, err := s.loadProps()
	if err != nil {
		return nil, err
	}
	c := &clientSecurity{
		mechanism:      either(flagSetting("sasl-mechanism", s.mechanism), p.mechanism),
		username:       either(flagSetting("sasl-username", s.username), p.username),
		ca:             either(flagSetting("tls-ca-file", s.caFile), p.caFile),
		cert:           either(flagSetting("tls-cert-file", s.certFile), p.certFile),
		key:            either(flagSetting("tls-key-file", s.keyFile), p.keyFile),
		verifyHostname: !p.skipHostnameCheck,
	}
	if c.password, c.passFrom, err = s.password(env, p); err != nil {
		return nil, err
	}
	if c.protoFrom = either(flagSetting("security-protocol", s.protocol), p.protocol); c.protoFrom.set() {
		proto, ok := parseSecurityProtocol(c.protoFrom.value)
		if !ok {
			return nil, fmt.Errorf("%s is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL", c.protoFrom)
		}
		c.protocol = proto
	} else {
		c.protocol, c.protoFrom = c.impliedProtocol()
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.protocol.SASL() {
		if !c.mechanism.set() {
			c.mechanism = setting{value: defaultSASLMechanism, note: "the default"}
			if p.jaasMechanism == security.MechanismPlain {
				c.mechanism = setting{value: security.MechanismPlain, note: "implied by PlainLoginModule in " + p.jaasWhere}
			}
		}
		m, err := parseSASLMechanism(c.mechanism)
		if err != nil {
			return nil, err
		}
		c.mechanism.value = m
	}
	s.resolved = c
	return c, nil
}

func (s *securityFlags) loadProps() (clientProps, error) {
	if s.commandConfig == "" {
		return clientProps{}, nil
	}
	f, err := os.Open(s.commandConfig)
	if errors.Is(err, fs.ErrNotExist) {
		return clientProps{}, fmt.Errorf("--command-config %q does not exist: give the path of a Kafka client properties file", s.commandConfig)
	}
	if err != nil {
		return clientProps{}, fmt.Errorf("--command-config: %w", err)
	}
	defer f.Close()
	return parseClientProperties(f, s.commandConfig)
}

// password is --sasl-password-file's first line, else CHRONIK_SASL_PASSWORD,
// else the properties file's.
func (s *securityFlags) password(env ops.Env, p clientProps) (string, setting, error) {
	if s.passwordFile != "" {
		from := flagSetting("sasl-password-file", s.passwordFile)
		pw, err := readPasswordFile(s.passwordFile)
		if err != nil {
			return "", from, fmt.Errorf("--sasl-password-file: %w", err)
		}
		return pw, from, nil
	}
	if env != nil {
		if pw := env(envSASLPassword); pw != "" {
			return pw, setting{value: "set", name: envSASLPassword}, nil
		}
	}
	return p.password.value, p.password, nil
}

// readPasswordFile returns the first line of file, without its line end.
func readPasswordFile(file string) (string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%q does not exist: give a file whose first line is the password", file)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%q starts with an empty line: put the password on its first line", file)
	}
	return line, nil
}

// impliedProtocol is the protocol when none is given: SASL with a user
// name, TLS with a TLS file.
func (c *clientSecurity) impliedProtocol() (security.Protocol, setting) {
	var by []string
	for _, s := range []setting{c.username, c.ca, c.cert, c.key} {
		if s.set() {
			by = append(by, s.origin())
		}
	}
	useSASL := c.username.set()
	useTLS := c.ca.set() || c.cert.set() || c.key.set()
	p := security.Plaintext
	switch {
	case useSASL && useTLS:
		p = security.SaslSSL
	case useSASL:
		p = security.SaslPlaintext
	case useTLS:
		p = security.SSL
	}
	note := "the default"
	if len(by) > 0 {
		note = "implied by " + strings.Join(by, " and ")
	}
	return p, setting{value: string(p), name: "--security-protocol", note: note}
}

// check refuses settings the protocol would not use, and missing ones it
// needs.
func (c *clientSecurity) check() error {
	if !c.protocol.SASL() {
		for _, s := range []setting{c.username, c.mechanism} {
			if s.set() {
				return fmt.Errorf("%s is set, but %s does not use SASL: use SASL_PLAINTEXT or SASL_SSL, or drop %s", s.origin(), c.protoFrom, s.name)
			}
		}
		if c.passFrom.set() && c.passFrom.name != envSASLPassword {
			return fmt.Errorf("%s is set, but %s does not use SASL: use SASL_PLAINTEXT or SASL_SSL, or drop %s", c.passFrom.origin(), c.protoFrom, c.passFrom.name)
		}
	}
	if !c.protocol.TLS() {
		for _, s := range []setting{c.ca, c.cert, c.key} {
			if s.set() {
				return fmt.Errorf("%s is set, but %s does not use TLS: use SSL or SASL_SSL, or drop %s", s.origin(), c.protoFrom, s.name)
			}
		}
	}
	if c.protocol.SASL() {
		if !c.username.set() {
			return fmt.Errorf("%s needs a user name: give --sasl-username NAME (or sasl.username in the --command-config file)", c.protoFrom)
		}
		if c.password == "" {
			return fmt.Errorf("user %q (%s) needs a password: give --sasl-password-file FILE, set %s, or put sasl.password in the --command-config file (never on the command line)",
				c.username.value, c.username.origin(), envSASLPassword)
		}
	}
	return checkCertKeyPair(c.cert, c.key)
}

func checkCertKeyPair(cert, key setting) error {
	switch {
	case cert.set() && !key.set():
		return fmt.Errorf("%s is set without a key: give --tls-key-file (ssl.key.location) too", cert.origin())
	case key.set() && !cert.set():
		return fmt.Errorf("%s is set without a certificate: give --tls-cert-file (ssl.certificate.location) too", key.origin())
	}
	return nil
}

func parseSecurityProtocol(s string) (security.Protocol, bool) {
	p := security.Protocol(strings.ToUpper(strings.TrimSpace(s)))
	switch p {
	case security.Plaintext, security.SSL, security.SaslPlaintext, security.SaslSSL:
		return p, true
	}
	return "", false
}

func parseSASLMechanism(s setting) (string, error) {
	m := strings.ToUpper(strings.TrimSpace(s.value))
	switch m {
	case security.MechanismPlain, security.MechanismScramSHA256, security.MechanismScramSHA512:
		return m, nil
	case "GSSAPI", "OAUTHBEARER":
		return "", fmt.Errorf("%s is not supported by Chronik: use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", s)
	}
	return "", fmt.Errorf("%s is not one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN", s)
}

// opts are the kgo options for the resolved security.
func (c *clientSecurity) opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if c.protocol.TLS() {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		// kgo clones the config per dial and sets ServerName to the host
		// dialled, so every broker is checked against its own name.
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if c.protocol.SASL() {
		opts = append(opts, kgo.SASL(c.saslMechanism()))
	}
	return opts, nil
}

func (c *clientSecurity) saslMechanism() sasl.Mechanism {
	user, pass := c.username.value, c.password
	switch c.mechanism.value {
	case security.MechanismPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case security.MechanismScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

func (c *clientSecurity) tlsConfig() (*tls.Config, error) {
	return clientTLSConfig(c.ca, c.cert, c.key, c.verifyHostname)
}

// clientTLSConfig trusts ca (else the system's roots) and presents cert and
// key when set. Without verifyHostname the chain is still verified, only
// the host name is not.
func clientTLSConfig(ca, cert, key setting, verifyHostname bool) (*tls.Config, error) {
	for _, s := range []setting{ca, cert, key} {
		if s.set() {
			if err := checkPEMFile(s); err != nil {
				return nil, err
			}
		}
	}
	cfg, err := security.ClientConfig(security.TLSFiles{CAFile: ca.value, CertFile: cert.value, KeyFile: key.value}, "", nil)
	if err != nil {
		return nil, err
	}
	if !verifyHostname {
		roots := cfg.RootCAs // nil: the system's
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the broker sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	return cfg, nil
}

// jksMagic opens a Java KeyStore file.
var jksMagic = []byte{0xfe, 0xed, 0xfe, 0xed}

// checkPEMFile says, naming the setting, when a TLS file is missing or is
// a Java or PKCS#12 store rather than PEM.
func checkPEMFile(s setting) error {
	data, err := os.ReadFile(s.value)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %q does not exist: fix the path (`chronik certs create` makes a CA and certificates to try)", s.origin(), s.value)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s.origin(), err)
	}
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return nil
	}
	if bytes.HasPrefix(data, jksMagic) {
		return fmt.Errorf("%s: %q is a Java KeyStore (JKS); Chronik reads PEM: export it, e.g. `keytool -exportcert -rfc -keystore %s -alias ALIAS -file ca.pem`, and give the PEM file", s.origin(), s.value, s.value)
	}
	return fmt.Errorf("%s: %q is not PEM (a PKCS#12 or DER file?): convert it, e.g. `openssl pkcs12 -in %s -out %s.pem -nodes` or `openssl x509 -inform der -in %s -out %s.pem`", s.origin(), s.value, s.value, s.value, s.value, s.value)
}

// principal is who the broker sees: the SASL user, the client
// certificate's subject on SSL, else User:ANONYMOUS.
func (c *clientSecurity) principal() string {
	switch {
	case c == nil:
		return security.AnonymousPrincipal
	case c.protocol.SASL():
		return "User:" + c.username.value
	case c.protocol.TLS() && c.cert.set():
		if leaf := firstPEMCertificate(c.cert.value); leaf != nil {
			return security.PeerPrincipal(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
		}
	}
	return security.AnonymousPrincipal
}

func firstPEMCertificate(file string) *x509.Certificate {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil
		}
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// httpClient is the client for a broker's HTTP API (chronik search
// --server): HTTP basic authentication as the SASL user, when one is
// given, and TLS trust for https:// URLs. The properties file's
// security.protocol and sasl.mechanism do not apply to HTTP and are not
// checked.
func (s *securityFlags) httpClient(env ops.Env) (*http.Client, error) {
	p, err := s.loadProps()
	if err != nil {
		return nil, err
	}
	user := either(flagSetting("sasl-username", s.username), p.username)
	pass, passFrom, err := s.password(env, p)
	if err != nil {
		return nil, err
	}
	if user.set() && pass == "" {
		return nil, fmt.Errorf("user %q (%s) needs a password: give --sasl-password-file FILE, set %s, or put sasl.password in the --command-config file", user.value, user.origin(), envSASLPassword)
	}
	if !user.set() && passFrom.set() && passFrom.name != envSASLPassword {
		return nil, fmt.Errorf("%s is set without a user name: give --sasl-username NAME too", passFrom.origin())
	}
	ca := either(flagSetting("tls-ca-file", s.caFile), p.caFile)
	cert := either(flagSetting("tls-cert-file", s.certFile), p.certFile)
	key := either(flagSetting("tls-key-file", s.keyFile), p.keyFile)
	if err := checkCertKeyPair(cert, key); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca.set() || cert.set() || p.skipHostnameCheck {
		if tr.TLSClientConfig, err = clientTLSConfig(ca, cert, key, !p.skipHostnameCheck); err != nil {
			return nil, err
		}
	}
	var rt http.RoundTripper = tr
	if user.set() {
		rt = basicAuth{next: tr, user: user.value, pass: pass}
	}
	return &http.Client{Transport: rt}, nil
}

// basicAuth adds HTTP basic credentials to every request.
type basicAuth struct {
	next       http.RoundTripper
	user, pass string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}
