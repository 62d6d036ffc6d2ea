package security

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testValidity = 24 * time.Hour

// testCA creates a CA in a new temporary directory.
func testCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

// issue issues req in dir and fails the test on error.
func issue(t *testing.T, ca *CA, dir string, req CertRequest) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := ca.Issue(dir, req, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileMode(t *testing.T, file string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoadOrCreateCA(t *testing.T) {
	ca, dir := testCA(t)
	if !ca.Created || !ca.Cert.IsCA || ca.CertFile != filepath.Join(dir, "ca.crt") {
		t.Fatalf("new CA: Created %v, IsCA %v, CertFile %q", ca.Created, ca.Cert.IsCA, ca.CertFile)
	}
	if m := fileMode(t, filepath.Join(dir, "ca.key")); m != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", m)
	}
	again, err := LoadOrCreateCA(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Cert.SerialNumber.Cmp(ca.Cert.SerialNumber) != 0 {
		t.Errorf("second LoadOrCreateCA: Created %v, serial %v; want the existing CA %v", again.Created, again.Cert.SerialNumber, ca.Cert.SerialNumber)
	}
}

func TestLoadOrCreateCAErrors(t *testing.T) {
	ca, caDir := testCA(t)
	leafCert, leafKey := issue(t, ca, caDir, CertRequest{Name: "alice", Client: true})
	copyFile := func(t *testing.T, from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, dir string)
		validFor time.Duration
		wantErr  string
	}{
		{
			name:     "certificate without key",
			setup:    func(t *testing.T, dir string) { copyFile(t, ca.CertFile, filepath.Join(dir, "ca.crt")) },
			validFor: time.Hour,
			wantErr:  "ca.key does not: restore the CA key",
		},
		{
			name: "key without certificate",
			setup: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(caDir, "ca.key"), filepath.Join(dir, "ca.key"))
			},
			validFor: time.Hour,
			wantErr:  "ca.crt does not: restore the CA certificate",
		},
		{
			name: "not a CA",
			setup: func(t *testing.T, dir string) {
				copyFile(t, leafCert, filepath.Join(dir, "ca.crt"))
				copyFile(t, leafKey, filepath.Join(dir, "ca.key"))
			},
			validFor: time.Hour,
			wantErr:  "is not a CA certificate",
		},
		{
			name: "expired",
			setup: func(t *testing.T, dir string) {
				// Validity is stored in whole seconds, so this CA has
				// expired by the time it is loaded.
				if _, err := LoadOrCreateCA(dir, time.Nanosecond); err != nil {
					t.Fatal(err)
				}
			},
			validFor: time.Hour,
			wantErr:  "expired at",
		},
		{name: "no validity", setup: func(*testing.T, string) {}, wantErr: "CA validity 0s is not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, err := LoadOrCreateCA(dir, tc.validFor)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "security: ") {
				t.Fatalf("LoadOrCreateCA: %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIssueCert(t *testing.T) {
	ca, dir := testCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	hosts := []string{"localhost", "127.0.0.1", "chronik-1", "[::1]"}
	certFile, keyFile := issue(t, ca, dir, CertRequest{Name: "broker-1", Hosts: hosts, Server: true, Client: true})
	if diff := cmp.Diff([]string{filepath.Join(dir, "broker-1.crt"), filepath.Join(dir, "broker-1.key")}, []string{certFile, keyFile}); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if m := fileMode(t, keyFile); m != 0o600 {
		t.Errorf("key mode %v, want 0600", m)
	}
	broker := readCert(t, certFile)
	if got := broker.Subject.String(); got != "CN=broker-1,O=Chronik" {
		t.Errorf("subject %q, want CN=broker-1,O=Chronik", got)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "chronik-1", "::1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := broker.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("broker certificate for %s, usage %v: %v", h, usage, err)
			}
		}
	}
	if _, err := broker.Verify(x509.VerifyOptions{DNSName: "chronik-2", Roots: roots}); err == nil {
		t.Error("broker certificate verified for a host it was not issued for")
	}

	aliceCert, _ := issue(t, ca, dir, CertRequest{Name: "alice", Client: true})
	alice := readCert(t, aliceCert)
	if _, err := alice.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate for client auth: %v", err)
	}
	if _, err := alice.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verified for server auth")
	}

	// A certificate never outlives its CA.
	longCert, _, err := ca.Issue(dir, CertRequest{Name: "long", Client: true}, 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := readCert(t, longCert).NotAfter; !got.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter %v, want the CA's %v", got, ca.Cert.NotAfter)
	}
}

func TestIssueOverwrite(t *testing.T) {
	ca, dir := testCA(t)
	certFile, keyFile := issue(t, ca, dir, CertRequest{Name: "alice", Client: true})
	first := readCert(t, certFile)

	_, _, err := ca.Issue(dir, CertRequest{Name: "alice", Client: true}, testValidity)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("reissue without Overwrite: %v; want fs.ErrExist naming %s", err, certFile)
	}
	if got := readCert(t, certFile); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("a refused reissue changed the certificate")
	}
	// A key left without its certificate is not replaced either.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Issue(dir, CertRequest{Name: "alice", Client: true}, testValidity); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), keyFile) {
		t.Fatalf("reissue over a lone key: %v; want fs.ErrExist naming %s", err, keyFile)
	}

	issue(t, ca, dir, CertRequest{Name: "alice", Client: true, Overwrite: true})
	if got := readCert(t, certFile); got.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("Overwrite kept the old certificate")
	}
	if m := fileMode(t, keyFile); m != 0o600 {
		t.Errorf("overwritten key mode %v, want 0600", m)
	}
	if _, err := loadKeyPair(certFile, keyFile); err != nil {
		t.Errorf("overwritten pair: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestIssueErrors(t *testing.T) {
	ca, dir := testCA(t)
	for _, tc := range []struct {
		name     string
		req      CertRequest
		validFor time.Duration
		wantErr  string
	}{
		{name: "empty name", req: CertRequest{Client: true}, wantErr: "certificate name is empty"},
		{name: "CA's name", req: CertRequest{Name: "ca", Client: true}, wantErr: `"ca" is the CA's own`},
		{name: "path in name", req: CertRequest{Name: "../alice", Client: true}, wantErr: `name "../alice": use letters`},
		{name: "hidden name", req: CertRequest{Name: ".alice", Client: true}, wantErr: "must start with a letter or digit"},
		{name: "no usage", req: CertRequest{Name: "alice"}, wantErr: "has no usage"},
		{name: "server without hosts", req: CertRequest{Name: "b1", Server: true}, wantErr: `server certificate "b1" has no hosts`},
		{name: "host with port", req: CertRequest{Name: "b1", Server: true, Hosts: []string{"b1:9092"}}, wantErr: `host "b1:9092" is not a DNS name or IP`},
		{name: "host with scheme", req: CertRequest{Name: "b1", Server: true, Hosts: []string{"https://b1"}}, wantErr: "without scheme or port"},
		{name: "empty host", req: CertRequest{Name: "b1", Server: true, Hosts: []string{""}}, wantErr: `host "" is not`},
		{name: "no validity", req: CertRequest{Name: "alice", Client: true}, validFor: -time.Hour, wantErr: "validity -1h0m0s is not positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			validFor := tc.validFor
			if validFor == 0 {
				validFor = testValidity
				if err := tc.req.Validate(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Validate(%+v): %v; want an error containing %q", tc.req, err, tc.wantErr)
				}
			}
			_, _, err := ca.Issue(dir, tc.req, validFor)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "security: ") {
				t.Fatalf("Issue(%+v): %v; want an error containing %q", tc.req, err, tc.wantErr)
			}
		})
	}
	if err := (CertRequest{Name: "b1", Server: true, Hosts: []string{"b1", "10.0.0.5"}}).Validate(); err != nil {
		t.Errorf("Validate of a good request: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("failed issues left files: %v", entries)
	}
}
