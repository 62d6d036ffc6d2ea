package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testPKI is a CA with a broker certificate for 127.0.0.1 and localhost,
// a client certificate for alice, and a client certificate for mallory
// from another CA.
type testPKI struct {
	dir                    string
	ca                     *CA
	broker, alice, mallory TLSFiles // as a client would use them
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	ca, dir := testCA(t)
	p := testPKI{dir: dir, ca: ca}
	bc, bk := issue(t, ca, dir, CertRequest{Name: "broker-1", Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true})
	p.broker = TLSFiles{CertFile: bc, KeyFile: bk, CAFile: ca.CertFile}
	ac, ak := issue(t, ca, dir, CertRequest{Name: "alice", Client: true})
	p.alice = TLSFiles{CertFile: ac, KeyFile: ak, CAFile: ca.CertFile}
	other, otherDir := testCA(t)
	mc, mk := issue(t, other, otherDir, CertRequest{Name: "mallory", Client: true})
	p.mallory = TLSFiles{CertFile: mc, KeyFile: mk, CAFile: ca.CertFile}
	return p
}

// serverFiles is the broker's identity with the given client auth.
func (p testPKI) serverFiles(auth ClientAuth) TLSFiles {
	f := p.broker
	f.ClientAuth = auth
	return f
}

type handshakeResult struct {
	server    tls.ConnectionState // what the server saw of the client
	client    tls.ConnectionState // what the client saw of the server
	serverErr error
	clientErr error
}

// handshake dials a TLS server over loopback TCP (buffered, unlike
// net.Pipe, so an alert after a TLS 1.3 client's Finished cannot block)
// and makes both sides exchange a byte, which surfaces a rejection the
// server sends after the client's handshake returned.
func handshake(t *testing.T, server, client *tls.Config, addr string) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res handshakeResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Server(raw, server)
		if res.serverErr = c.HandshakeContext(ctx); res.serverErr != nil {
			return
		}
		res.server = c.ConnectionState()
		_, res.serverErr = c.Write([]byte{1})
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := tls.Dialer{Config: client}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, port))
	if err != nil {
		res.clientErr = err
	} else {
		c := conn.(*tls.Conn)
		res.client = c.ConnectionState()
		_, res.clientErr = io.ReadFull(c, make([]byte, 1))
		c.Close()
	}
	wg.Wait()
	return res
}

func mustServerConfig(t *testing.T, f TLSFiles, onErr func(error)) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(f, onErr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustClientConfig(t *testing.T, f TLSFiles, serverName string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(f, serverName, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestTLSHandshake(t *testing.T) {
	p := newTestPKI(t)
	noCert := TLSFiles{CAFile: p.ca.CertFile}
	otherTrust := TLSFiles{CAFile: p.mallory.CertFile} // trusts nothing that signed the broker
	for _, tc := range []struct {
		name       string
		auth       ClientAuth
		client     TLSFiles
		serverName string
		dialHost   string
		wantErr    string // substring of the server's or client's error; empty: success
		principal  string
	}{
		{name: "required, good client", auth: ClientAuthRequired, client: p.alice, principal: "User:CN=alice,O=Chronik"},
		{name: "required, broker as client", auth: ClientAuthRequired, client: p.broker, principal: "User:CN=broker-1,O=Chronik"},
		{name: "required, no certificate", auth: ClientAuthRequired, client: noCert, wantErr: "didn't provide a certificate"},
		{name: "required, other CA", auth: ClientAuthRequired, client: p.mallory, wantErr: "unknown authority"},
		{name: "requested, no certificate", auth: ClientAuthRequested, client: noCert, principal: AnonymousPrincipal},
		{name: "requested, good client", auth: ClientAuthRequested, client: p.alice, principal: "User:CN=alice,O=Chronik"},
		{name: "requested, other CA", auth: ClientAuthRequested, client: p.mallory, wantErr: "unknown authority"},
		{name: "none ignores the client certificate", auth: ClientAuthNone, client: p.alice, principal: AnonymousPrincipal},
		{name: "server name by host", auth: ClientAuthNone, client: noCert, dialHost: "localhost", principal: AnonymousPrincipal},
		{name: "explicit server name", auth: ClientAuthNone, client: noCert, serverName: "localhost", principal: AnonymousPrincipal},
		{name: "wrong server name", auth: ClientAuthNone, client: noCert, serverName: "chronik-9", wantErr: "chronik-9"},
		{name: "client does not trust the server", auth: ClientAuthNone, client: otherTrust, wantErr: "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := mustServerConfig(t, p.serverFiles(tc.auth), nil)
			client := mustClientConfig(t, tc.client, tc.serverName)
			host := tc.dialHost
			if host == "" {
				host = "127.0.0.1"
			}
			res := handshake(t, server, client, host)
			if tc.wantErr != "" {
				err := errors.Join(res.serverErr, res.clientErr)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("handshake: %v; want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
			}
			if got := PeerPrincipal(res.server); got != tc.principal {
				t.Errorf("PeerPrincipal = %q, want %q", got, tc.principal)
			}
			if res.server.Version < tls.VersionTLS12 {
				t.Errorf("TLS version %x", res.server.Version)
			}
		})
	}
}

func TestTLSMinVersion(t *testing.T) {
	p := newTestPKI(t)
	client := mustClientConfig(t, TLSFiles{CAFile: p.ca.CertFile}, "")
	client.MinVersion, client.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	res := handshake(t, mustServerConfig(t, p.serverFiles(ClientAuthNone), nil), client, "127.0.0.1")
	if res.serverErr == nil {
		t.Fatal("a TLS 1.1 client was accepted")
	}
}

func TestParseClientAuth(t *testing.T) {
	for in, want := range map[string]ClientAuth{
		"":          ClientAuthNone,
		"none":      ClientAuthNone,
		"Requested": ClientAuthRequested,
		" REQUIRED": ClientAuthRequired,
	} {
		if got, err := ParseClientAuth(in); err != nil || got != want {
			t.Errorf("ParseClientAuth(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseClientAuth("sometimes"); err == nil || !strings.Contains(err.Error(), `"sometimes" is not one of none, requested, required`) {
		t.Errorf("ParseClientAuth(sometimes): %v", err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	certPEM, err := os.ReadFile(p.broker.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	der := write("broker.der", block.Bytes)
	garbage := write("garbage.pem", []byte("not pem at all\n"))
	encrypted := write("encrypted.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	// validFor of a nanosecond makes a certificate that is expired as
	// soon as it is written (validity is stored in whole seconds).
	expiredCert, expiredKey, err := p.ca.Issue(dir, CertRequest{Name: "expired", Hosts: []string{"localhost"}, Server: true}, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name    string
		files   TLSFiles
		client  bool // ClientConfig instead of ServerConfig
		wantErr string
	}{
		{name: "no files", files: TLSFiles{}, wantErr: "needs a certificate and a key"},
		{name: "missing certificate", files: TLSFiles{CertFile: missing, KeyFile: p.broker.KeyFile}, wantErr: `certificate file "` + missing + `" does not exist`},
		{name: "missing key", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: missing}, wantErr: `key file "` + missing + `" does not exist`},
		{name: "DER certificate", files: TLSFiles{CertFile: der, KeyFile: p.broker.KeyFile}, wantErr: `certificate file "` + der + `" has no PEM certificate`},
		{name: "garbage key", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: garbage}, wantErr: `key file "` + garbage + `" has no PEM private key`},
		{name: "certificate as key", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.broker.CertFile}, wantErr: "holds a certificate, not a key"},
		{name: "encrypted key", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: encrypted}, wantErr: "is encrypted"},
		{name: "mismatched key", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.alice.KeyFile}, wantErr: `key file "` + p.alice.KeyFile + `" does not match certificate file "` + p.broker.CertFile + `"`},
		{name: "expired", files: TLSFiles{CertFile: expiredCert, KeyFile: expiredKey}, wantErr: `certificate file "` + expiredCert + `" (CN=expired,O=Chronik) expired at`},
		{name: "missing CA", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.broker.KeyFile, CAFile: missing}, wantErr: `CA file "` + missing + `" does not exist`},
		{name: "garbage CA", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.broker.KeyFile, CAFile: garbage}, wantErr: `CA file "` + garbage + `" has no PEM certificate`},
		{name: "client auth without CA", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.broker.KeyFile, ClientAuth: ClientAuthRequired}, wantErr: "ssl.client.auth=required needs a CA file"},
		{name: "bad client auth", files: TLSFiles{CertFile: p.broker.CertFile, KeyFile: p.broker.KeyFile, ClientAuth: "always"}, wantErr: `"always" is not one of`},
		{name: "client: certificate without key", client: true, files: TLSFiles{CertFile: p.alice.CertFile}, wantErr: "is set without a key file"},
		{name: "client: key without certificate", client: true, files: TLSFiles{KeyFile: p.alice.KeyFile}, wantErr: "is set without a certificate file"},
		{name: "client: garbage CA", client: true, files: TLSFiles{CAFile: garbage}, wantErr: "has no PEM certificate"},
		{name: "client: mismatched key", client: true, files: TLSFiles{CertFile: p.alice.CertFile, KeyFile: p.broker.KeyFile}, wantErr: "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.client {
				_, err = ClientConfig(tc.files, "", nil)
			} else {
				_, err = ServerConfig(tc.files, nil)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "security: ") {
				t.Fatalf("got %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// reloadErrors collects what onReloadError is given.
type reloadErrors struct {
	mu   sync.Mutex
	errs []error
}

func (r *reloadErrors) report(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *reloadErrors) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// bumpMtime moves a file's modification time forward, so a reload sees a
// change even on a file system with coarse timestamps.
func bumpMtime(t *testing.T, file string, by time.Duration) {
	t.Helper()
	at := time.Now().Add(by)
	if err := os.Chtimes(file, at, at); err != nil {
		t.Fatal(err)
	}
}

func TestTLSReload(t *testing.T) {
	p := newTestPKI(t)
	var errs reloadErrors
	files := p.serverFiles(ClientAuthRequired)
	files.ReloadCheck = time.Nanosecond
	server := mustServerConfig(t, files, errs.report)
	aliceFiles := p.alice
	aliceFiles.ReloadCheck = time.Nanosecond
	client := mustClientConfig(t, aliceFiles, "")

	// serials are those of the certificates the server and the client
	// presented.
	serials := func() (string, string) {
		t.Helper()
		res := handshake(t, server, client, "127.0.0.1")
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
		}
		return res.client.PeerCertificates[0].SerialNumber.String(), res.server.PeerCertificates[0].SerialNumber.String()
	}
	serverSerial, clientSerial := serials()

	// Renewed certificates on both sides are used by the next handshake.
	issue(t, p.ca, p.dir, CertRequest{Name: "broker-1", Hosts: []string{"127.0.0.1"}, Server: true, Client: true, Overwrite: true})
	issue(t, p.ca, p.dir, CertRequest{Name: "alice", Client: true, Overwrite: true})
	for _, f := range []string{files.CertFile, files.KeyFile, aliceFiles.CertFile, aliceFiles.KeyFile} {
		bumpMtime(t, f, time.Second)
	}
	renewedServer, renewedClient := serials()
	want := []string{readCert(t, files.CertFile).SerialNumber.String(), readCert(t, aliceFiles.CertFile).SerialNumber.String()}
	if diff := cmp.Diff(want, []string{renewedServer, renewedClient}); diff != "" {
		t.Fatalf("serials after renewal (-want +got):\n%s", diff)
	}
	if renewedServer == serverSerial || renewedClient == clientSerial {
		t.Fatal("renewal was not picked up")
	}

	// A broken replacement keeps the renewed certificate and is reported
	// once, however many handshakes see it.
	if err := os.WriteFile(files.CertFile, []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, files.CertFile, 2*time.Second)
	for range 3 {
		if s, _ := serials(); s != renewedServer {
			t.Fatalf("after a broken replacement the server presents serial %s, want %s", s, renewedServer)
		}
	}
	got := errs.get()
	if len(got) != 1 || !strings.Contains(got[0].Error(), files.CertFile) || !strings.Contains(got[0].Error(), "previous TLS files stay in use") {
		t.Fatalf("reload errors %v; want one naming %s", got, files.CertFile)
	}

	// Fixing the file ends the episode.
	issue(t, p.ca, p.dir, CertRequest{Name: "broker-1", Hosts: []string{"127.0.0.1"}, Server: true, Client: true, Overwrite: true})
	bumpMtime(t, files.CertFile, 3*time.Second)
	bumpMtime(t, files.KeyFile, 3*time.Second)
	if s, _ := serials(); s != readCert(t, files.CertFile).SerialNumber.String() {
		t.Fatalf("fixed certificate not picked up: serial %s", s)
	}
	if n := len(errs.get()); n != 1 {
		t.Errorf("%d reload errors after the fix, want still 1", n)
	}
}

// A changed CA file changes which client certificates a server accepts.
func TestTLSReloadCA(t *testing.T) {
	p := newTestPKI(t)
	files := p.serverFiles(ClientAuthRequired)
	files.CAFile = filepath.Join(t.TempDir(), "trust.crt")
	caPEM, err := os.ReadFile(p.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.CAFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	files.ReloadCheck = time.Nanosecond
	server := mustServerConfig(t, files, nil)
	mallory := mustClientConfig(t, p.mallory, "")
	if res := handshake(t, server, mallory, "127.0.0.1"); res.serverErr == nil {
		t.Fatal("a client of another CA was accepted")
	}
	otherCA, err := os.ReadFile(filepath.Join(filepath.Dir(p.mallory.CertFile), "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.CAFile, append(caPEM, otherCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, files.CAFile, time.Second)
	res := handshake(t, server, mallory, "127.0.0.1")
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("after trusting the other CA: server %v, client %v", res.serverErr, res.clientErr)
	}
	if got := PeerPrincipal(res.server); got != "User:CN=mallory,O=Chronik" {
		t.Errorf("PeerPrincipal = %q", got)
	}
}

// Files are looked at no more often than ReloadCheck: a change within it
// is not seen yet.
func TestTLSReloadInterval(t *testing.T) {
	p := newTestPKI(t)
	files := p.serverFiles(ClientAuthNone)
	files.ReloadCheck = time.Hour
	server := mustServerConfig(t, files, nil)
	client := mustClientConfig(t, TLSFiles{CAFile: p.ca.CertFile}, "")
	before := readCert(t, files.CertFile).SerialNumber
	issue(t, p.ca, p.dir, CertRequest{Name: "broker-1", Hosts: []string{"127.0.0.1"}, Server: true, Overwrite: true})
	bumpMtime(t, files.CertFile, time.Second)
	res := handshake(t, server, client, "127.0.0.1")
	if res.clientErr != nil {
		t.Fatal(res.clientErr)
	}
	if got := res.client.PeerCertificates[0].SerialNumber; got.Cmp(before) != 0 {
		t.Errorf("serial %v within the check interval, want the loaded %v", got, before)
	}
}

type testATV struct {
	oid string
	tag int
	val string
}

// rawSubject encodes a Name whose RDNs and string types are exactly the
// given ones, as no x509 template field can.
func rawSubject(t *testing.T, rdns ...[]testATV) []byte {
	t.Helper()
	seq := []rawRDNSET{}
	for _, rdn := range rdns {
		var set rawRDNSET
		for _, a := range rdn {
			var oid asn1.ObjectIdentifier
			for _, part := range strings.Split(a.oid, ".") {
				n, err := strconv.Atoi(part)
				if err != nil {
					t.Fatal(err)
				}
				oid = append(oid, n)
			}
			set = append(set, rawATV{Type: oid, Value: asn1.RawValue{Tag: a.tag, Bytes: []byte(a.val)}})
		}
		seq = append(seq, set)
	}
	der, err := asn1.Marshal(seq)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestPeerPrincipal pins the Java form. Each want is what OpenJDK 17's
// X500Principal.getName() printed for a certificate with that subject.
func TestPeerPrincipal(t *testing.T) {
	const (
		cn, o, ou, c, st, l = "2.5.4.3", "2.5.4.10", "2.5.4.11", "2.5.4.6", "2.5.4.8", "2.5.4.7"
		dc, uid, email      = "0.9.2342.19200300.100.1.25", "0.9.2342.19200300.100.1.1", "1.2.840.113549.1.9.1"
		serialNumber, title = "2.5.4.5", "2.5.4.12"
		utf8, printable     = asn1.TagUTF8String, asn1.TagPrintableString
		ia5, bmp, t61       = asn1.TagIA5String, asn1.TagBMPString, asn1.TagT61String
		octets              = asn1.TagOctetString
	)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rdns [][]testATV
		want string
	}{
		{"usual order", [][]testATV{{{c, printable, "FR"}}, {{st, utf8, "IDF"}}, {{l, utf8, "Paris"}}, {{o, utf8, "Chronik"}}, {{ou, utf8, "chronik"}}, {{cn, utf8, "broker-1"}}},
			"User:CN=broker-1,OU=chronik,O=Chronik,L=Paris,ST=IDF,C=FR"},
		// Go's pkix.Name.String() would print CN=x,O=y.
		{"CN encoded first", [][]testATV{{{cn, utf8, "x"}}, {{o, utf8, "y"}}}, "User:O=y,CN=x"},
		{"special characters", [][]testATV{{{cn, utf8, `a,b+c=d#e;f"g\h<i>j`}}}, `User:CN=a\,b\+c\=d\#e\;f\"g\\h\<i\>j`},
		{"leading and trailing blanks", [][]testATV{{{cn, utf8, "  x y  "}}, {{o, utf8, "#hash"}}, {{ou, utf8, "\r cr"}}},
			"User:OU=\\\r\\ cr,O=\\#hash,CN=\\ \\ x y\\ \\ "},
		{"only blanks", [][]testATV{{{cn, utf8, "   "}}}, `User:CN=\ \ \ `},
		{"DC and UID", [][]testATV{{{dc, ia5, "com"}}, {{dc, ia5, "example"}}, {{uid, utf8, "alice"}}}, "User:UID=alice,DC=example,DC=com"},
		{"attributes without an RFC 2253 keyword", [][]testATV{{{email, ia5, "a@b.c"}}, {{serialNumber, printable, "1234"}}, {{cn, printable, "e"}}},
			"User:CN=e,2.5.4.5=#130431323334,1.2.840.113549.1.9.1=#16056140622e63"},
		{"title", [][]testATV{{{title, utf8, "title"}}}, "User:2.5.4.12=#0c057469746c65"},
		{"multi-valued RDN", [][]testATV{{{cn, utf8, "a"}, {ou, utf8, "b"}}}, "User:CN=a+OU=b"},
		{"NUL", [][]testATV{{{cn, utf8, "nul\x00x"}}}, `User:CN=nul\00x`},
		{"BMPString read as UTF-8", [][]testATV{{{cn, bmp, "\x00a\x00b"}}}, `User:CN=\00a\00b`},
		{"non-ASCII and T61", [][]testATV{{{cn, utf8, "héllo ünïcode"}}, {{cn, t61, "t61"}}}, "User:CN=t61,CN=héllo ünïcode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: rawSubject(t, tc.rdns...), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if got := PeerPrincipal(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}); got != tc.want {
				t.Errorf("PeerPrincipal = %q, want %q", got, tc.want)
			}
		})
	}
	// crypto/x509 refuses a certificate whose CN is not a string, so
	// this branch is checked on the encoding alone.
	if got, err := javaRFC2253(rawSubject(t, []testATV{{cn, octets, "abc"}})); err != nil || got != "CN=#0403616263" {
		t.Errorf("CN of OCTET STRING = %q, %v; want CN=#0403616263", got, err)
	}
	if got := PeerPrincipal(tls.ConnectionState{}); got != "User:ANONYMOUS" {
		t.Errorf("PeerPrincipal without a certificate = %q, want User:ANONYMOUS", got)
	}
}
