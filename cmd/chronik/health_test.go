package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chronik-go/chronik/ops"
)

// chronikEnv runs the command line in-process with the given environment.
func chronikEnv(t *testing.T, env map[string]string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	return cmdResult{code, out.String(), errb.String()}
}

// `chronik health` is the container health check: it follows the node's
// readiness and liveness and finds the listener from CHRONIK_HTTP_ADDR.
func TestHealthCommand(t *testing.T) {
	hs := ops.NewHTTPServer(ops.HTTPConfig{Addr: "127.0.0.1:0"})
	if err := hs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	addr := hs.Addr().String()
	_, port, _ := net.SplitHostPort(addr)

	r := chronik(t, "", "health", "--addr", addr)
	if r.code == 0 || !strings.Contains(r.stderr, "503") || !strings.Contains(r.stderr, "not ready") {
		t.Fatalf("health of a starting node: exit %d, stderr %q; want 1 and the 503 reason", r.code, r.stderr)
	}
	if r := chronik(t, "", "health", "--live", "--addr", addr); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("liveness of a starting node: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	hs.SetReadiness(func() error { return errors.New("replaying the WAL") })
	if r := chronik(t, "", "health", "--addr", addr); r.code == 0 || !strings.Contains(r.stderr, "replaying the WAL") {
		t.Fatalf("health while unready: exit %d, stderr %q", r.code, r.stderr)
	}

	hs.SetReadiness(func() error { return nil })
	// A wildcard listen address, as a container sets it, is dialled on
	// the loopback address.
	env := map[string]string{"CHRONIK_HTTP_ADDR": "0.0.0.0:" + port}
	if r := chronikEnv(t, env, "health"); r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
		t.Fatalf("health of a ready node via CHRONIK_HTTP_ADDR: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := chronikEnv(t, map[string]string{"CHRONIK_HTTP_ADDR": ":" + port}, "health"); r.code != 0 {
		t.Fatalf("health with an empty host: exit %d, stderr %q", r.code, r.stderr)
	}

	closed := closedAddr(t)
	if r := chronik(t, "", "health", "--addr", closed); r.code == 0 || !strings.Contains(r.stderr, closed) {
		t.Fatalf("health of nothing listening: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := chronik(t, "", "health", "--addr", "no-port"); r.code == 0 || !strings.Contains(r.stderr, "not host:port") {
		t.Fatalf("health --addr no-port: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestLoopbackFor(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:6092":    "127.0.0.1:6092",
		":6092":           "127.0.0.1:6092",
		"[::]:6092":       "[::1]:6092",
		"10.1.2.3:6092":   "10.1.2.3:6092",
		"chronik-1:6092":  "chronik-1:6092",
		"127.0.0.1:16092": "127.0.0.1:16092",
	} {
		if got := loopbackFor(in); got != want {
			t.Errorf("loopbackFor(%q) = %q, want %q", in, got, want)
		}
	}
}
