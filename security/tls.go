package security

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// ClientAuth is Kafka's ssl.client.auth: whether a TLS listener asks
// clients for a certificate.
type ClientAuth string

const (
	ClientAuthNone      ClientAuth = "none"
	ClientAuthRequested ClientAuth = "requested"
	ClientAuthRequired  ClientAuth = "required"
)

// ParseClientAuth parses ssl.client.auth, case-insensitively. Empty is
// none, Kafka's default.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch a := ClientAuth(strings.ToLower(strings.TrimSpace(s))); a {
	case "":
		return ClientAuthNone, nil
	case ClientAuthNone, ClientAuthRequested, ClientAuthRequired:
		return a, nil
	}
	return "", fmt.Errorf("security: ssl.client.auth %q is not one of none, requested, required", s)
}

func (a ClientAuth) tlsType() (tls.ClientAuthType, error) {
	switch a {
	case "", ClientAuthNone:
		return tls.NoClientCert, nil
	case ClientAuthRequested:
		return tls.VerifyClientCertIfGiven, nil
	case ClientAuthRequired:
		return tls.RequireAndVerifyClientCert, nil
	}
	return 0, fmt.Errorf("security: ssl.client.auth %q is not one of none, requested, required", string(a))
}

// defaultReloadCheck is how often handshakes look for changed TLS files:
// a stat of two or three files a second costs nothing, and a renewed
// certificate is in use a second after it lands.
const defaultReloadCheck = time.Second

// TLSFiles names the PEM files of a TLS identity and trust.
type TLSFiles struct {
	CertFile, KeyFile string // this process's certificate chain and key
	// CAFile holds the CAs trusted for peers' certificates. Empty means
	// the system pool for a client; a server then cannot verify client
	// certificates, so ClientAuth requested or required needs it.
	CAFile     string
	ClientAuth ClientAuth // servers only; empty is none

	// ReloadCheck is how often handshakes look for changed files; zero
	// means once a second. Tests shorten it.
	ReloadCheck time.Duration
}

// ServerConfig returns a *tls.Config for a TLS listener.
//
// The files are read now, and an error names the file and what is wrong
// with it. They are read again on a handshake when one of them has
// changed (by modification time and size, looked at no more than once
// per ReloadCheck), so a renewed certificate or CA file serves new
// connections without a restart. A replacement that cannot be used
// leaves the previous files in force and is reported once through
// onReloadError (may be nil), which runs on a handshake goroutine.
//
// Each handshake runs on a copy of the returned config, made by its
// GetConfigForClient with the current certificate and client CAs filled
// in. Fields set on the returned config before use therefore apply;
// fields set on a Clone of it do not, since the clone's
// GetConfigForClient still copies the original. MinVersion is TLS 1.2.
func ServerConfig(files TLSFiles, onReloadError func(error)) (*tls.Config, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("security: a TLS listener needs a certificate and a key: set both the certificate file and the key file (chronik certs create makes a pair to try)")
	}
	auth, err := files.ClientAuth.tlsType()
	if err != nil {
		return nil, err
	}
	if auth != tls.NoClientCert && files.CAFile == "" {
		return nil, fmt.Errorf("security: ssl.client.auth=%s needs a CA file to verify client certificates against: set the CA file, or ssl.client.auth=none", files.ClientAuth)
	}
	type identity struct {
		cert tls.Certificate
		cas  *x509.CertPool
	}
	paths := []string{files.CertFile, files.KeyFile}
	if files.CAFile != "" {
		paths = append(paths, files.CAFile)
	}
	r, err := newReloader(paths, files.ReloadCheck, onReloadError, func() (identity, error) {
		var id identity
		var err error
		if id.cert, err = loadKeyPair(files.CertFile, files.KeyFile); err != nil {
			return id, err
		}
		// A CA file is read even when client certificates are not asked
		// for, so a wrong path fails at start rather than on the day
		// someone turns client auth on.
		if files.CAFile != "" {
			if id.cas, err = loadCAPool(files.CAFile); err != nil {
				return id, err
			}
		}
		return id, nil
	})
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: auth}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		id := r.get()
		c := cfg.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{id.cert}
		if auth != tls.NoClientCert {
			c.ClientCAs = id.cas
		}
		return c, nil
	}
	return cfg, nil
}

// ClientConfig returns a *tls.Config for dialling a TLS listener. It
// trusts CAFile, or the system pool when that is empty, and presents
// CertFile and KeyFile when they are set, reloaded as ServerConfig
// reloads them. The CA file is read once: a client is restarted more
// easily than a broker. An empty serverName leaves the name to be taken
// from the dialled address.
func ClientConfig(files TLSFiles, serverName string, onReloadError func(error)) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if files.CAFile != "" {
		pool, err := loadCAPool(files.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case files.CertFile == "" && files.KeyFile == "":
		return cfg, nil
	case files.CertFile == "":
		return nil, fmt.Errorf("security: key file %q is set without a certificate file: set both, or neither to present no client certificate", files.KeyFile)
	case files.KeyFile == "":
		return nil, fmt.Errorf("security: certificate file %q is set without a key file: set both, or neither to present no client certificate", files.CertFile)
	}
	r, err := newReloader([]string{files.CertFile, files.KeyFile}, files.ReloadCheck, onReloadError, func() (*tls.Certificate, error) {
		c, err := loadKeyPair(files.CertFile, files.KeyFile)
		return &c, err
	})
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.get(), nil }
	return cfg, nil
}

// PeerPrincipal returns Kafka's default principal for a TLS peer:
// "User:" and the subject of its leaf certificate as Java's
// X500Principal.getName() prints it (RFC 2253, e.g.
// "User:CN=broker-1,OU=chronik,O=Chronik"), or AnonymousPrincipal when
// the peer sent no certificate. Go's pkix.Name.String() is not used: it
// reorders attributes into a fixed order and escapes differently, and
// ACLs written for Kafka must match the same string here.
func PeerPrincipal(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return AnonymousPrincipal
	}
	leaf := cs.PeerCertificates[0]
	dn, err := javaRFC2253(leaf.RawSubject)
	if err != nil {
		// Unreachable for a certificate crypto/x509 parsed, which checked
		// the same encoding.
		dn = leaf.Subject.String()
	}
	return "User:" + dn
}

// rawATV keeps the value's ASN.1 tag, which decides how Java prints it.
type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET ends in SET so encoding/asn1 reads it as a SET OF.
type rawRDNSET []rawATV

// rfc2253Keywords are the attribute names Java prints in RFC 2253 form;
// any other attribute is printed as its OID and hex DER value.
var rfc2253Keywords = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "STREET",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

// javaRFC2253 formats a DER Name as sun.security.x509.AVA does for
// X500Principal.getName(): RDNs last to first, an RDN's values in
// encoded order joined by '+'; string values (Printable, T61, IA5,
// General, BMP, UTF8 tags) read as UTF-8, with ,=+<>#;"\ escaped
// everywhere, NUL as \00, and leading and trailing spaces and CRs
// escaped; everything else as #hex of its DER.
func javaRFC2253(der []byte) (string, error) {
	var rdns []rawRDNSET
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return "", err
	}
	if len(rest) > 0 {
		return "", errors.New("security: trailing data after subject")
	}
	var b strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			b.WriteByte(',')
		}
		for j, atv := range rdns[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			writeJavaATV(&b, atv)
		}
	}
	return b.String(), nil
}

func writeJavaATV(b *strings.Builder, atv rawATV) {
	oid := atv.Type.String()
	keyword, ok := rfc2253Keywords[oid]
	if !ok || !isJavaString(atv.Value) {
		if !ok {
			keyword = oid
		}
		b.WriteString(keyword + "=#" + hex.EncodeToString(atv.Value.FullBytes))
		return
	}
	b.WriteString(keyword + "=")
	var esc []rune
	for _, c := range string(atv.Value.Bytes) {
		switch {
		case strings.ContainsRune(`,=+<>#;"\`, c):
			esc = append(esc, '\\', c)
		case c == 0:
			esc = append(esc, '\\', '0', '0')
		default:
			esc = append(esc, c)
		}
	}
	space := func(c rune) bool { return c == ' ' || c == '\r' }
	lead := 0
	for lead < len(esc) && space(esc[lead]) {
		lead++
	}
	trail := len(esc) - 1
	for trail >= 0 && space(esc[trail]) {
		trail--
	}
	for i, c := range esc {
		if i < lead || i > trail {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
}

func isJavaString(v asn1.RawValue) bool {
	if v.Class != asn1.ClassUniversal || v.IsCompound {
		return false
	}
	switch v.Tag {
	case asn1.TagPrintableString, asn1.TagT61String, asn1.TagIA5String,
		asn1.TagGeneralString, asn1.TagBMPString, asn1.TagUTF8String:
		return true
	}
	return false
}

// loadKeyPair reads a PEM certificate chain and its key, with errors that
// say which file is wrong and how, and refuses an expired certificate.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := readKeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if leaf := cert.Leaf; time.Now().After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("security: certificate file %q (%s) expired at %s: renew it (chronik certs create --overwrite makes a new one to try)",
			certFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// readKeyPair is loadKeyPair without the expiry check.
func readKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readTLSFile("certificate", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readTLSFile("key", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := pemCertificates("certificate", certFile, certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := pemPrivateKey(keyFile, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("security: key file %q does not match certificate file %q: give the key the certificate was issued for", keyFile, certFile)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// loadCAPool reads the trusted CAs of a PEM file.
func loadCAPool(file string) (*x509.CertPool, error) {
	data, err := readTLSFile("CA", file)
	if err != nil {
		return nil, err
	}
	cas, err := pemCertificates("CA", file, data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	now, live := time.Now(), false
	for _, c := range cas {
		pool.AddCert(c)
		live = live || now.Before(c.NotAfter)
	}
	if !live {
		return nil, fmt.Errorf("security: every certificate in CA file %q has expired: give the current CA certificate", file)
	}
	return pool, nil
}

func readTLSFile(what, file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("security: %s file %q does not exist: fix the path, or create the file (chronik certs create makes a set to try)", what, file)
	}
	if err != nil {
		return nil, fmt.Errorf("security: reading %s file: %w", what, err)
	}
	return data, nil
}

// pemCertificates parses every CERTIFICATE block of a PEM file, in order.
func pemCertificates(what, file string, data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("security: %s file %q: certificate %d cannot be parsed: %v", what, file, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("security: %s file %q has no PEM certificate: give a PEM file with -----BEGIN CERTIFICATE----- blocks (convert DER with openssl x509 -inform der)", what, file)
	}
	return out, nil
}

// pemPrivateKey parses the first private key block of a PEM file, in any
// of the encodings tls.X509KeyPair accepts.
func pemPrivateKey(file string, data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("security: key file %q is encrypted: give an unencrypted key (openssl pkcs8 -in KEY -out KEY.plain) and protect it with file permissions", file)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("security: key file %q: %s block cannot be parsed: %v", file, block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("security: key file %q: %T keys are not supported: use ECDSA, RSA or Ed25519", file, key)
	}
	if bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("security: key file %q holds a certificate, not a key: give the private key file", file)
	}
	return nil, fmt.Errorf("security: key file %q has no PEM private key: give a PEM file with a -----BEGIN PRIVATE KEY----- block", file)
}

// fileStamp is what a reload compares to notice a changed file.
type fileStamp struct {
	modTime int64 // UnixNano
	size    int64
	missing bool
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			out[i].missing = true
			continue
		}
		out[i] = fileStamp{modTime: fi.ModTime().UnixNano(), size: fi.Size()}
	}
	return out
}

// reloader keeps a value loaded from files and loads it again, on use,
// when the files have changed.
type reloader[T any] struct {
	paths []string
	every time.Duration
	onErr func(error)
	load  func() (T, error)

	mu  sync.Mutex // guards the following
	cur T
	// stamps are the files as last loaded, or as last failed to load, so
	// one bad replacement is reported once rather than every check.
	stamps  []fileStamp
	checked time.Time
}

func newReloader[T any](paths []string, every time.Duration, onErr func(error), load func() (T, error)) (*reloader[T], error) {
	if every <= 0 {
		every = defaultReloadCheck
	}
	// Stamped before loading: a file that changes during the load is
	// loaded again at the next check.
	r := &reloader[T]{paths: paths, every: every, onErr: onErr, load: load, stamps: stampFiles(paths)}
	cur, err := load()
	if err != nil {
		return nil, err
	}
	r.cur, r.checked = cur, time.Now()
	return r, nil
}

func (r *reloader[T]) get() T {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.checked) < r.every {
		cur := r.cur
		r.mu.Unlock()
		return cur
	}
	r.checked = now
	var err error
	if stamps := stampFiles(r.paths); !slices.Equal(stamps, r.stamps) {
		r.stamps = stamps
		var v T
		if v, err = r.load(); err == nil {
			r.cur = v
		}
	}
	cur := r.cur
	r.mu.Unlock()
	if err != nil && r.onErr != nil {
		r.onErr(fmt.Errorf("%w; the previous TLS files stay in use until this is fixed", err))
	}
	return cur
}
