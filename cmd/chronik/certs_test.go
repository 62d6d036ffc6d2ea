package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readPEMCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // created by the command
	args := []string{"certs", "create", "--dir", dir,
		"--broker", "broker-1=localhost,127.0.0.1,chronik-1",
		"--broker", "broker-2=localhost,127.0.0.2,chronik-2",
		"--client", "admin", "--client", "alice", "--days", "30"}
	r := mustChronik(t, "", args...)
	for _, want := range []string{
		"created CA " + filepath.Join(dir, "ca.crt"),
		"wrote " + filepath.Join(dir, "broker-1.crt") + " and " + filepath.Join(dir, "broker-1.key"),
		"principal User:CN=alice,O=Chronik",
		"CHRONIK_TLS_CERT_FILE=" + filepath.Join(dir, "broker-1.crt"),
		"CHRONIK_TLS_CA_FILE=" + filepath.Join(dir, "ca.crt"),
		"not for production",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}

	for _, name := range []string{"ca", "broker-1", "broker-2", "admin", "alice"} {
		fi, err := os.Stat(filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s.key mode %v, want 0600", name, m)
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	verify := func(t *testing.T, name, host string, usage x509.ExtKeyUsage) error {
		t.Helper()
		c := readPEMCert(t, filepath.Join(dir, name+".crt"))
		_, err := c.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	brokerHosts := map[string][]string{
		"broker-1": {"localhost", "127.0.0.1", "chronik-1"},
		"broker-2": {"localhost", "127.0.0.2", "chronik-2"},
	}
	for name, hosts := range brokerHosts {
		for _, h := range hosts {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if err := verify(t, name, h, usage); err != nil {
					t.Errorf("%s for %s, usage %v: %v", name, h, usage, err)
				}
			}
		}
	}
	if err := verify(t, "broker-1", "chronik-2", x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("broker-1 verified for broker-2's host")
	}
	for _, name := range []string{"admin", "alice"} {
		if err := verify(t, name, "", x509.ExtKeyUsageClientAuth); err != nil {
			t.Errorf("%s for client auth: %v", name, err)
		}
		if err := verify(t, name, "", x509.ExtKeyUsageServerAuth); err == nil {
			t.Errorf("%s verified for server auth", name)
		}
	}
	alice := readPEMCert(t, filepath.Join(dir, "alice.crt"))
	if d := time.Until(alice.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("alice's certificate expires in %v, want about 30 days", d)
	}

	// A rerun refuses to replace anything and writes nothing.
	brokerSerial := readPEMCert(t, filepath.Join(dir, "broker-1.crt")).SerialNumber
	r = chronik(t, "", args...)
	if r.code == 0 || !strings.Contains(r.stderr, filepath.Join(dir, "broker-1.crt")+" exists: pass --overwrite") {
		t.Fatalf("rerun without --overwrite: exit %d, stderr %q; want a refusal naming broker-1.crt and --overwrite", r.code, r.stderr)
	}
	if got := readPEMCert(t, filepath.Join(dir, "broker-1.crt")).SerialNumber; got.Cmp(brokerSerial) != 0 {
		t.Fatal("a refused rerun replaced broker-1.crt")
	}

	// --overwrite reissues everything under the same CA.
	r = mustChronik(t, "", append(args, "--overwrite")...)
	if !strings.Contains(r.stdout, "using the CA in "+filepath.Join(dir, "ca.crt")) {
		t.Errorf("rerun output does not say it reused the CA:\n%s", r.stdout)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, caAfter) {
		t.Error("--overwrite replaced the CA")
	}
	if got := readPEMCert(t, filepath.Join(dir, "broker-1.crt")).SerialNumber; got.Cmp(brokerSerial) == 0 {
		t.Error("--overwrite kept the old broker-1 certificate")
	}
	if err := verify(t, "broker-1", "chronik-1", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("reissued broker-1 against the kept CA: %v", err)
	}
}

func TestCertsCreateErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"nothing to issue", nil, "give at least one --broker NAME=HOST[,HOST...] or --client NAME"},
		{"broker without hosts", []string{"--broker", "broker-1"}, `--broker "broker-1": give NAME=HOST[,HOST...]`},
		{"broker with empty hosts", []string{"--broker", "broker-1="}, `--broker "broker-1=": give NAME=HOST`},
		{"broker without name", []string{"--broker", "=localhost"}, `--broker "=localhost": give NAME=HOST`},
		{"broker host with port", []string{"--broker", "b1=localhost:9092"}, `--broker "b1=localhost:9092": security: certificate "b1": host "localhost:9092" is not a DNS name or IP`},
		{"client with hosts", []string{"--client", "alice=localhost"}, `--client "alice=localhost": give just a NAME`},
		{"bad name", []string{"--client", "../alice"}, `--client "../alice": security: certificate name "../alice"`},
		{"CA's name", []string{"--client", "ca"}, `"ca" is the CA's own`},
		{"duplicate name", []string{"--broker", "b1=localhost", "--client", "b1"}, `--client "b1": the name b1 is already given by --broker "b1=localhost"`},
		{"no days", []string{"--client", "alice", "--days", "0"}, "--days 0: give 1 or more"},
		{"empty dir", []string{"--client", "alice", "--dir", ""}, "--dir is empty"},
		{"unknown flag", []string{"--client", "alice", "--host", "x"}, "see chronik certs create --help"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "certs")
			args := append([]string{"certs", "create", "--dir", dir}, tc.args...)
			r := chronik(t, "", args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
				t.Fatalf("chronik %s: exit %d, stderr %q; want an error containing %q", strings.Join(args, " "), r.code, r.stderr, tc.wantErr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("a refused run created %s", dir)
			}
		})
	}
}
