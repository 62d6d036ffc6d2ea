package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	caCertName = "ca.crt"
	caKeyName  = "ca.key"
	// certOrg is the O of every certificate issued here, so a principal
	// reads "User:CN=alice,O=Chronik".
	certOrg = "Chronik"
	// backdate starts validity a little in the past, so a host whose
	// clock is behind the issuer's accepts a certificate issued just now.
	backdate = time.Hour
)

// CertRequest describes one certificate to issue.
type CertRequest struct {
	Name string // file base name and Common Name, e.g. "broker-1", "admin"
	// Hosts are the DNS names and IPs put in subjectAltName, which is all
	// a TLS client checks. Required for a server certificate; may be
	// empty for a client certificate.
	Hosts []string
	// Server and Client are the extended key usages. Brokers get both:
	// they serve, and they dial each other with mutual TLS.
	Server, Client bool
	// Overwrite replaces an existing <Name>.crt and <Name>.key; without
	// it Issue refuses, so a typo never destroys a key in use.
	Overwrite bool
}

// CA is a small local certificate authority, kept in a directory as
// ca.crt and ca.key (mode 0600), for trying TLS and mutual TLS without
// openssl. It is not for production: its key sits unencrypted beside the
// certificates it signs, nothing can revoke a certificate, and whoever
// reads ca.key can issue any identity, broker or admin.
type CA struct {
	Cert     *x509.Certificate
	CertFile string // the CA certificate peers are told to trust
	Created  bool   // LoadOrCreateCA made it rather than loading it
	key      crypto.Signer
}

// LoadOrCreateCA loads the CA in dir, or creates dir and a new CA valid
// for validFor when there is none. Half a CA (one of the two files) is an
// error: making a new one would orphan every certificate the old signed.
func LoadOrCreateCA(dir string, validFor time.Duration) (*CA, error) {
	certFile, keyFile := filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case certErr == nil && keyErr == nil:
		return loadCA(certFile, keyFile)
	case certErr == nil && errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("security: %s exists but %s does not: restore the CA key, or move %s away to create a new CA", certFile, keyFile, certFile)
	case keyErr == nil && errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("security: %s exists but %s does not: restore the CA certificate, or move %s away to create a new CA", keyFile, certFile, keyFile)
	case !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("security: CA certificate: %w", certErr)
	case !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("security: CA key: %w", keyErr)
	}
	if validFor <= 0 {
		return nil, fmt.Errorf("security: CA validity %v is not positive: give how long the CA should last", validFor)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("security: creating the CA directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("security: generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// A CA per directory, so its name carries part of its serial:
		// verifiers pick candidate issuers by name, and two local CAs of
		// one name make a wrong-CA error read like a broken signature.
		Subject:               pkix.Name{CommonName: "Chronik local CA " + shortSerial(serial), Organization: []string{certOrg}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// It signs leaves only, never another CA.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("security: creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("security: parsing the new CA certificate: %w", err)
	}
	// The key goes first: a crash between the two leaves a key without a
	// certificate, which the next run reports instead of silently using.
	if err := writeKey(keyFile, key, false); err != nil {
		return nil, err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644, false); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertFile: certFile, Created: true, key: key}, nil
}

func loadCA(certFile, keyFile string) (*CA, error) {
	pair, err := readKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("security: %s is not a CA certificate: point at the directory holding the CA's ca.crt and ca.key", certFile)
	}
	if time.Now().After(pair.Leaf.NotAfter) {
		return nil, fmt.Errorf("security: the CA in %s expired at %s: move ca.crt and ca.key away to create a new CA, then reissue every certificate",
			certFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("security: %s: key of type %T cannot sign", keyFile, pair.PrivateKey)
	}
	return &CA{Cert: pair.Leaf, CertFile: certFile, key: key}, nil
}

// Issue writes <dir>/<Name>.crt (the leaf alone: peers trust ca.crt
// directly) and <dir>/<Name>.key (PKCS#8 PEM, mode 0600): an ECDSA P-256
// key and a certificate for CN=<Name>,O=Chronik signed by the CA, valid
// for validFor but never past the CA's own expiry, when the chain would
// stop verifying anyway. Files are replaced by rename, so a process
// reloading them never reads half a file.
func (ca *CA) Issue(dir string, req CertRequest, validFor time.Duration) (certFile, keyFile string, err error) {
	dnsNames, ips, err := req.subjectAltNames()
	if err != nil {
		return "", "", err
	}
	if validFor <= 0 {
		return "", "", fmt.Errorf("security: certificate %q: validity %v is not positive", req.Name, validFor)
	}
	serial, err := newSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, Organization: []string{certOrg}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validFor),
		// ECDSA keys sign; they never encipher a key.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}

	certFile, keyFile = filepath.Join(dir, req.Name+".crt"), filepath.Join(dir, req.Name+".key")
	if !req.Overwrite {
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return "", "", fmt.Errorf("security: %s already exists, refusing to replace it: %w", f, fs.ErrExist)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("security: generating the key for %q: %w", req.Name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return "", "", fmt.Errorf("security: signing the certificate for %q: %w", req.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("security: creating the certificate directory: %w", err)
	}
	// Key before certificate: a reloading server that sees only the new
	// key reports a mismatch and keeps the old pair until the
	// certificate follows.
	if err := writeKey(keyFile, key, req.Overwrite); err != nil {
		return "", "", err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644, req.Overwrite); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// Validate checks the request without issuing anything, so a caller
// issuing several can refuse them all before writing any file.
func (r CertRequest) Validate() error {
	_, _, err := r.subjectAltNames()
	return err
}

// subjectAltNames validates the request and sorts its hosts into DNS
// names and IPs.
func (r CertRequest) subjectAltNames() (dnsNames []string, ips []net.IP, err error) {
	if err := validCertName(r.Name); err != nil {
		return nil, nil, err
	}
	if !r.Server && !r.Client {
		return nil, nil, fmt.Errorf("security: certificate %q has no usage: set Server, Client or both", r.Name)
	}
	if r.Server && len(r.Hosts) == 0 {
		return nil, nil, fmt.Errorf("security: server certificate %q has no hosts: give every DNS name and IP clients dial it at", r.Name)
	}
	for _, h := range r.Hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if h == "" || strings.ContainsAny(h, " /:@") {
			return nil, nil, fmt.Errorf("security: certificate %q: host %q is not a DNS name or IP: give names like broker1.example.com or 10.0.0.5, without scheme or port", r.Name, h)
		}
		dnsNames = append(dnsNames, h)
	}
	return dnsNames, ips, nil
}

// validCertName keeps names usable as file names on every system and
// clear of the CA's own files.
func validCertName(name string) error {
	if name == "" {
		return errors.New("security: certificate name is empty: give a name such as broker-1 or alice")
	}
	if name == "ca" {
		return errors.New(`security: certificate name "ca" is the CA's own: pick another name`)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("security: certificate name %q: use letters, digits, '-', '_' and '.', e.g. broker-1", name)
		}
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("security: certificate name %q must start with a letter or digit", name)
	}
	return nil
}

func shortSerial(serial *big.Int) string {
	s := serial.Text(16)
	return s[:min(len(s), 8)]
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("security: generating a serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // serials must be positive
}

func writeKey(file string, key *ecdsa.PrivateKey, overwrite bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("security: encoding the key for %s: %w", file, err)
	}
	return writePEM(file, "PRIVATE KEY", der, 0o600, overwrite)
}

// writePEM writes a PEM file. A new file is created exclusively, so an
// existing one is reported rather than replaced; with overwrite, a
// temporary file beside it is renamed over it, so a process reloading
// the file reads the old one or the new one, never a part.
func writePEM(file, blockType string, der []byte, mode os.FileMode, overwrite bool) error {
	block := &pem.Block{Type: blockType, Bytes: der}
	if !overwrite {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("security: %s already exists, refusing to replace it: %w", file, fs.ErrExist)
		}
		if err != nil {
			return fmt.Errorf("security: writing %s: %w", file, err)
		}
		if err := finishPEM(f, block, mode); err != nil {
			os.Remove(file)
			return fmt.Errorf("security: writing %s: %w", file, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := finishPEM(tmp, block, mode); err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("security: writing %s: %w", file, err)
	}
	return nil
}

// finishPEM writes the block, sets the mode exactly (the umask only
// narrows it at creation) and syncs and closes f.
func finishPEM(f *os.File, block *pem.Block, mode os.FileMode) error {
	err := pem.Encode(f, block)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
