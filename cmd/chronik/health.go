package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chronik-go/chronik/ops"
	"github.com/chronik-go/chronik/security"
)

// newHealthCmd asks a node's HTTP listener whether it is ready or alive.
// It exists for container health checks: the image has no shell and no
// curl, only this binary.
func newHealthCmd(env ops.Env) *cobra.Command {
	var (
		addr    string
		live    bool
		timeout time.Duration
		useTLS  bool
		caFile  string
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check a node's /readyz (or /healthz) and exit 0 when it answers 200",
		Long: `Ask a node's HTTP listener whether it is ready to serve clients (/readyz) or,
with --live, whether it is alive (/healthz). Exit 0 on 200, 1 otherwise.

Without --addr the address is CHRONIK_HTTP_ADDR (the node's own setting, so a
container health check needs no arguments), with a wildcard host such as
0.0.0.0 replaced by the loopback address. With --tls (default: CHRONIK_HTTP_TLS)
it speaks HTTPS and trusts --tls-ca-file (default: CHRONIK_TLS_CA_FILE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				addr = httpAddrFromEnv(env)
			}
			path := "/readyz"
			if live {
				path = "/healthz"
			}
			if !cmd.Flags().Changed("tls") && env != nil {
				useTLS, _ = strconv.ParseBool(strings.TrimSpace(env("CHRONIK_HTTP_TLS")))
			}
			if caFile == "" && env != nil {
				caFile = strings.TrimSpace(env("CHRONIK_TLS_CA_FILE"))
			}
			var tc *tls.Config
			if useTLS {
				var err error
				if tc, err = security.ClientConfig(security.TLSFiles{CAFile: caFile}, "", nil); err != nil {
					return fmt.Errorf("--tls-ca-file: %w", err)
				}
			}
			return checkHealth(cmd.Context(), cmd.OutOrStdout(), loopbackFor(addr), path, timeout, tc)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "host:port of the node's HTTP listener (default CHRONIK_HTTP_ADDR, else its default)")
	cmd.Flags().BoolVar(&live, "live", false, "check liveness (/healthz) instead of readiness (/readyz)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	cmd.Flags().BoolVar(&useTLS, "tls", false, "speak HTTPS (default CHRONIK_HTTP_TLS)")
	cmd.Flags().StringVar(&caFile, "tls-ca-file", "", "PEM CA file to trust for HTTPS (default CHRONIK_TLS_CA_FILE, else the system's)")
	return cmd
}

func httpAddrFromEnv(env ops.Env) string {
	if env != nil {
		if v := strings.TrimSpace(env("CHRONIK_HTTP_ADDR")); v != "" {
			return v
		}
	}
	for _, s := range ops.Settings() {
		if s.Env == "CHRONIK_HTTP_ADDR" {
			return s.Default
		}
	}
	return ""
}

// loopbackFor turns a listen address into one to dial: a wildcard or empty
// host becomes the loopback address of its family.
func loopbackFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr // checkHealth reports it
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

func checkHealth(ctx context.Context, out io.Writer, addr, path string, timeout time.Duration, tc *tls.Config) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--addr %q is not host:port", addr)
	}
	if timeout <= 0 {
		return fmt.Errorf("--timeout %v must be positive", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + addr + path
	client := http.DefaultClient
	if tc != nil {
		url = "https://" + addr + path
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, msg)
	}
	fmt.Fprintln(out, msg)
	return nil
}
