package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chronik-go/chronik/security"
)

// caValidity is how long a CA made by `chronik certs create` lasts:
// longer than any certificate it issues, so reissuing leaves is enough
// and nobody has to hand out a new ca.crt.
const caValidity = 10 * 365 * 24 * time.Hour

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a local CA and certificates to try TLS (not for production)",
	}
	cmd.AddCommand(newCertsCreateCmd())
	return cmd
}

func newCertsCreateCmd() *cobra.Command {
	var (
		dir       string
		brokers   []string
		clients   []string
		days      int
		overwrite bool
		keep      bool
		owner     string
	)
	cmd := &cobra.Command{
		Use:   "create --broker NAME=HOST[,HOST...] ... --client NAME ... [--dir DIR] [--days N] [--overwrite]",
		Short: "Create a local CA and issue broker and client certificates",
		Long: `Create (or reuse) a certificate authority in --dir (ca.crt, ca.key) and
issue a certificate and key for each broker and client: NAME.crt and
NAME.key, ECDSA P-256, subject CN=NAME,O=Chronik. Broker certificates
serve TLS for every host after '=' and also act as clients, for mutual
TLS between brokers; client certificates authenticate as
User:CN=NAME,O=Chronik.

This is a small local CA for trying TLS, not for production: ca.key is
unencrypted, nothing can revoke a certificate, and whoever reads ca.key
can issue any identity. Existing certificates are kept unless
--overwrite is given; the CA is always kept.`,
		Example: `  chronik certs create --dir certs --broker broker-1=localhost,127.0.0.1,chronik-1 --client admin
  chronik certs create --dir certs --broker broker-2=chronik-2 --client alice --days 30`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return fmt.Errorf("--days %d: give 1 or more", days)
			}
			if dir == "" {
				return errors.New("--dir is empty: give the directory for the CA and certificates, e.g. --dir certs")
			}
			if keep && overwrite {
				return errors.New("--keep-existing and --overwrite contradict each other: pick one")
			}
			uid, gid, err := parseOwner(owner)
			if err != nil {
				return err
			}
			reqs, err := certRequests(brokers, clients, overwrite)
			if err != nil {
				return err
			}
			if keep {
				// A container's start step runs on every start: what it
				// issued before stays.
				var missing []security.CertRequest
				for _, r := range reqs {
					if fileExists(filepath.Join(dir, r.Name+".crt")) && fileExists(filepath.Join(dir, r.Name+".key")) {
						fmt.Fprintf(cmd.OutOrStdout(), "keeping %s\n", filepath.Join(dir, r.Name+".crt"))
						continue
					}
					missing = append(missing, r)
				}
				reqs = missing
			}
			// Every refusal comes before the first file is written, so a
			// failed run changes nothing.
			if !overwrite {
				for _, r := range reqs {
					for _, ext := range []string{".crt", ".key"} {
						if f := filepath.Join(dir, r.Name+ext); fileExists(f) {
							return fmt.Errorf("%s exists: pass --overwrite to replace it (the CA is kept), or pick another name", f)
						}
					}
				}
			}
			ca, err := security.LoadOrCreateCA(dir, max(caValidity, time.Duration(days+1)*24*time.Hour))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if ca.Created {
				fmt.Fprintf(out, "created CA %s and its key %s (keep the key private: it signs any identity)\n", ca.CertFile, filepath.Join(dir, "ca.key"))
			} else {
				fmt.Fprintf(out, "using the CA in %s\n", ca.CertFile)
			}
			var firstBroker, firstClient string
			for _, r := range reqs {
				certFile, keyFile, err := ca.Issue(dir, r, time.Duration(days)*24*time.Hour)
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%w: pass --overwrite to replace it", err)
				}
				if err != nil {
					return err
				}
				if err := describeCert(out, r, certFile, keyFile); err != nil {
					return err
				}
				if r.Server && firstBroker == "" {
					firstBroker = r.Name
				}
				if !r.Server && firstClient == "" {
					firstClient = r.Name
				}
			}
			if uid >= 0 {
				if err := chownCerts(dir, uid, gid); err != nil {
					return err
				}
			}
			printCertsNextSteps(out, dir, ca.CertFile, firstBroker, firstClient)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "certs", "directory for the CA and the certificates")
	// StringArray, not StringSlice: a broker's hosts are comma-separated.
	f.StringArrayVar(&brokers, "broker", nil, "broker certificate NAME=HOST[,HOST...]: server and client use, valid for each host (repeatable)")
	f.StringArrayVar(&clients, "client", nil, "client certificate NAME, authenticating as User:CN=NAME,O=Chronik (repeatable)")
	f.IntVar(&days, "days", 365, "validity of the issued certificates, in days")
	f.BoolVar(&overwrite, "overwrite", false, "replace existing certificates and keys of the same names")
	f.BoolVar(&keep, "keep-existing", false, "skip certificates that exist instead of failing (for a start step that runs every time)")
	f.StringVar(&owner, "owner", "", "UID:GID to own every file in --dir, so a broker running as another user can read its key (for containers)")
	return cmd
}

// parseOwner reads --owner UID:GID; -1, -1 when it is empty.
func parseOwner(v string) (uid, gid int, err error) {
	if v == "" {
		return -1, -1, nil
	}
	u, g, ok := strings.Cut(v, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if !ok || uerr != nil || gerr != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("--owner %q is not UID:GID in numbers, e.g. --owner 65532:65532", v)
	}
	return uid, gid, nil
}

// chownCerts gives every file in dir, and dir, to uid:gid.
func chownCerts(dir string, uid, gid int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Chown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			return fmt.Errorf("--owner: %w (changing owners needs root)", err)
		}
	}
	return os.Chown(dir, uid, gid)
}

// certRequests turns the flags into requests, refusing them all if any is
// wrong.
func certRequests(brokers, clients []string, overwrite bool) ([]security.CertRequest, error) {
	if len(brokers) == 0 && len(clients) == 0 {
		return nil, errors.New("nothing to issue: give at least one --broker NAME=HOST[,HOST...] or --client NAME")
	}
	var reqs []security.CertRequest
	seen := map[string]string{}
	add := func(flag, value string, r security.CertRequest) error {
		if prev, dup := seen[r.Name]; dup {
			return fmt.Errorf("--%s %q: the name %s is already given by %s: give each certificate its own name", flag, value, r.Name, prev)
		}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("--%s %q: %w", flag, value, err)
		}
		seen[r.Name] = fmt.Sprintf("--%s %q", flag, value)
		reqs = append(reqs, r)
		return nil
	}
	for _, b := range brokers {
		name, hosts, ok := strings.Cut(b, "=")
		if !ok || strings.TrimSpace(name) == "" || strings.TrimSpace(hosts) == "" {
			return nil, fmt.Errorf("--broker %q: give NAME=HOST[,HOST...], e.g. --broker broker-1=localhost,127.0.0.1", b)
		}
		var hs []string
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		r := security.CertRequest{Name: strings.TrimSpace(name), Hosts: hs, Server: true, Client: true, Overwrite: overwrite}
		if err := add("broker", b, r); err != nil {
			return nil, err
		}
	}
	for _, c := range clients {
		if strings.Contains(c, "=") {
			return nil, fmt.Errorf("--client %q: give just a NAME; hosts are for --broker", c)
		}
		if err := add("client", c, security.CertRequest{Name: strings.TrimSpace(c), Client: true, Overwrite: overwrite}); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

func fileExists(f string) bool {
	_, err := os.Lstat(f)
	return err == nil
}

// describeCert prints what was written, read back from the file so the
// output shows what a peer will see.
func describeCert(w io.Writer, r security.CertRequest, certFile, keyFile string) error {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s: no PEM certificate after writing it", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", certFile, err)
	}
	principal := security.PeerPrincipal(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	what := "client"
	if r.Server {
		what = "broker; hosts " + strings.Join(r.Hosts, ", ")
	}
	fmt.Fprintf(w, "wrote %s and %s (%s; principal %s; valid until %s)\n",
		certFile, keyFile, what, principal, cert.NotAfter.UTC().Format(time.DateOnly))
	return nil
}

// printCertsNextSteps tells how to use what was written.
func printCertsNextSteps(w io.Writer, dir, caFile, broker, client string) {
	fmt.Fprintln(w)
	if broker != "" {
		fmt.Fprintf(w, `Next, give each broker an SSL listener, its own pair and the CA, e.g. for %[2]s:
  CHRONIK_LISTENERS=PLAINTEXT://:9092,SSL://:9093
  CHRONIK_TLS_CERT_FILE=%[1]s CHRONIK_TLS_KEY_FILE=%[3]s
  CHRONIK_TLS_CA_FILE=%[4]s CHRONIK_TLS_CLIENT_AUTH=required
`, filepath.Join(dir, broker+".crt"), broker, filepath.Join(dir, broker+".key"), caFile)
	}
	if client != "" {
		fmt.Fprintf(w, "Clients trust %s and present their pair, e.g. %s and %s.\n",
			caFile, filepath.Join(dir, client+".crt"), filepath.Join(dir, client+".key"))
	}
	fmt.Fprintln(w, "This CA is for trying TLS, not for production.")
}
