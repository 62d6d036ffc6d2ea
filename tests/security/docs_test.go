package security_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
)

// docBlocks returns the fenced code blocks of a Markdown file whose info
// string is exactly lang, in order.
func docBlocks(t *testing.T, file, lang string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && line == "```"+lang:
			cur = &strings.Builder{}
		case cur == nil && strings.HasPrefix(line, "```") && line != "```":
			cur = &strings.Builder{}
			cur.WriteString("\x00skip") // another language: read past it
		case cur != nil && line == "```":
			if s := cur.String(); !strings.HasPrefix(s, "\x00skip") {
				blocks = append(blocks, s)
			}
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return blocks
}

// TestSecurityDoc runs every ```sh block of docs/security.md, in order, in
// one shell: certificates, a broker with TLS, SASL and ACLs, users, ACLs,
// the HTTP API. The doc's ports are swapped for free ones; a command the
// doc marks with ! must fail, every other must succeed. (The compose
// section, ```sh compose, is run by make e2e.)
func TestSecurityDoc(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl is not installed (apt-get install curl): %v", err)
		}
		t.Skipf("curl is not installed; skipping: %v", err)
	}
	root, err := testharness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	blocks := docBlocks(t, filepath.Join(root, "docs", "security.md"), "sh")
	if len(blocks) < 8 {
		t.Fatalf("docs/security.md has %d sh blocks; the test expects the whole walk-through", len(blocks))
	}
	script := strings.Join(blocks, "")
	for _, port := range []string{"9094", "9095", "6092"} {
		addr, err := testharness.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, free, _ := net.SplitHostPort(addr)
		script = strings.ReplaceAll(script, "127.0.0.1:"+port, "127.0.0.1:"+free)
	}

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testharness.Binary(t), filepath.Join(bin, "chronik")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// -x echoes each command into the output, so a failure shows which.
	cmd := exec.CommandContext(ctx, "bash", "-x", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// Its own process group, so the broker the doc starts in the
	// background goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "broker.log"))
		t.Fatalf("docs/security.md failed: %v\n%s\n--- broker.log ---\n%s", err, out, log)
	}
}
