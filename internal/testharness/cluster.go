package testharness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/security"
)

// StartCluster starts n chronik brokers as one cluster on 127.0.0.1 (or on
// opts.Hosts) — node IDs 1..n, every node a controller voter — and waits
// until each serves ApiVersions. opts applies to every node (DataDir is ignored: each gets its
// own, or the one opts.DataDirs names). The brokers are killed when the test ends. Clustering needs the
// chronik target.
func StartCluster(t testing.TB, n int, opts Options) []*Broker {
	t.Helper()
	if CurrentTarget() == TargetKfake {
		t.Fatalf("testharness: a cluster needs the chronik target, not %s", TargetKfake)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	bs := make([]*Broker, n)
	var certDir string
	var mtls []string
	if opts.MutualTLS {
		certDir, mtls = mutualTLSEnv(t, n, opts.Hosts)
	}
	for i := range bs {
		b := &Broker{t: t, opts: opts, target: TargetChronik, host: i + 1}
		if opts.MutualTLS {
			b.opts.Listeners = append(slices.Clone(opts.Listeners), "SSL")
			b.opts.InterBrokerListener = "SSL"
			b.opts.Env = append(slices.Clone(opts.Env), mtls...)
			b.opts.Env = append(b.opts.Env,
				"CHRONIK_TLS_CERT_FILE="+filepath.Join(certDir, fmt.Sprintf("broker-%d.crt", i+1)),
				"CHRONIK_TLS_KEY_FILE="+filepath.Join(certDir, fmt.Sprintf("broker-%d.key", i+1)))
		}
		b.logPath = filepath.Join(t.TempDir(), fmt.Sprintf("broker-%d.log", i+1))
		bs[i] = b
		t.Cleanup(func() {
			b.kill()
			if data, _ := os.ReadFile(b.logPath); bytes.Contains(data, []byte("WARNING: DATA RACE")) {
				t.Errorf("testharness: broker %d reported a data race", i+1)
			}
			if t.Failed() {
				b.dumpLog()
			}
		})
	}
	// Free ports can be taken by another process between our probe and a
	// broker's bind. The peers' addresses are in every broker's
	// arguments and Raft state, so the whole cluster starts again, on new
	// ports and fresh data directories, a few times before giving up.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		err := startCluster(t, bs, opts)
		if err == nil {
			return bs
		}
		for _, b := range bs {
			b.kill()
		}
		if attempt == attempts || !errors.Is(err, errAddrInUse) || opts.Hosts != nil || len(opts.DataDirs) > 0 {
			t.Fatalf("testharness: %v", err)
		}
		t.Logf("testharness: %v; starting the cluster again on new ports", err)
	}
}

// startCluster picks the brokers' addresses (unless opts.Hosts gives
// them) and data directories, and starts them.
func startCluster(t testing.TB, bs []*Broker, opts Options) error {
	var peers []string
	for i, b := range bs {
		b.dataDir = t.TempDir()
		if i < len(opts.DataDirs) && opts.DataDirs[i] != "" {
			b.dataDir = opts.DataDirs[i]
		}
		if h := opts.Hosts; h != nil {
			// Each broker has a host of its own: the default ports do.
			b.kafkaAddr, b.httpAddr, b.raftAddr = h.IP(i+1)+":9092", h.IP(i+1)+":6092", h.IP(i+1)+":9093"
			b.extra = map[string]string{}
			for j, name := range b.opts.Listeners {
				b.extra[name] = fmt.Sprintf("%s:%d", h.IP(i+1), 9094+j)
			}
		} else if err := b.pickAddrs(); err != nil {
			return fmt.Errorf("picking ports: %w", err)
		}
		peers = append(peers, fmt.Sprintf("%d@%s", i+1, b.raftAddr))
	}
	for i, b := range bs {
		b.node = i + 1
		b.opts.Args = append([]string{"--node-id", fmt.Sprint(i + 1), "--peers", strings.Join(peers, ",")}, opts.Args...)
	}
	for i, b := range bs {
		if err := b.start(); err != nil {
			return fmt.Errorf("starting broker %d: %w", i+1, err)
		}
	}
	return nil
}

// RaftAddr is the broker's controller listener address.
func (b *Broker) RaftAddr() string { return b.raftAddr }

// Pause stops the process with SIGSTOP: it keeps its sockets but answers
// nothing, as a machine that froze or a long GC pause. It returns once
// every thread of the process has stopped (a signal is delivered to each
// thread when it next runs, which on a busy machine can take a while), so
// nothing the process does can be timed after Pause.
func (b *Broker) Pause() {
	b.t.Helper()
	b.signal(syscall.SIGSTOP)
	pid := b.proc.cmd.Process.Pid
	err := Poll(10*time.Second, time.Millisecond, func() error { return stopped(pid) })
	if err != nil {
		b.t.Fatalf("testharness: SIGSTOP: %v", err)
	}
}

// stopped returns nil once every thread of process pid is stopped (state
// T in /proc/<pid>/task/*/stat).
func stopped(pid int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread exited
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return fmt.Errorf("unreadable /proc/%d/task/%s/stat", pid, task.Name())
		}
		if st := stat[i+2]; st != 'T' && st != 't' {
			return fmt.Errorf("thread %s of process %d is in state %c, not stopped", task.Name(), pid, st)
		}
	}
	return nil
}

// Resume continues a paused process with SIGCONT.
func (b *Broker) Resume() {
	b.t.Helper()
	b.signal(syscall.SIGCONT)
}

func (b *Broker) signal(sig syscall.Signal) {
	if b.proc == nil {
		b.t.Fatalf("testharness: broker not running")
	}
	if err := b.proc.cmd.Process.Signal(sig); err != nil {
		b.t.Fatalf("testharness: %v: %v", sig, err)
	}
}

// PID is the broker process's ID, or 0 when it is not running (and on
// the kfake target, which runs in the test process).
func (b *Broker) PID() int {
	if b.proc == nil || !b.Running() {
		return 0
	}
	return b.proc.cmd.Process.Pid
}

// RSS is the broker process's resident set size in bytes (VmRSS in
// /proc/<pid>/status): what an attack that makes the broker hold memory
// shows up in.
func (b *Broker) RSS() (int64, error) {
	pid := b.PID()
	if pid == 0 {
		return 0, fmt.Errorf("testharness: broker not running")
	}
	return RSSOf(pid)
}

// RSSOf is the resident set size in bytes of process pid. A goroutine
// sampling a broker's memory while the test goroutine restarts it should
// keep the PID itself and call this, since Broker's methods are not safe
// for concurrent use.
func RSSOf(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			// "VmRSS:	   12345 kB"
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("testharness: /proc/%d/status: VmRSS %q: %v", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("testharness: /proc/%d/status has no VmRSS", pid)
}

// mutualTLSEnv makes a CA and a certificate for each of n brokers (valid
// for the loopback address and, with hosts, the broker's host) in a
// directory of the test's, and returns the directory (broker-N.crt and
// .key) and the settings every broker shares.
func mutualTLSEnv(t testing.TB, n int, hosts *Hosts) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, 24*time.Hour)
	if err != nil {
		t.Fatalf("testharness: %v", err)
	}
	var principals []string
	for i := 1; i <= n; i++ {
		names := []string{"127.0.0.1", "localhost"}
		if hosts != nil {
			names = append(names, hosts.IP(i))
		}
		req := security.CertRequest{Name: fmt.Sprintf("broker-%d", i), Hosts: names, Server: true, Client: true}
		if _, _, err := ca.Issue(dir, req, 24*time.Hour); err != nil {
			t.Fatalf("testharness: %v", err)
		}
		principals = append(principals, "User:CN="+req.Name+",O=Chronik")
	}
	return dir, []string{
		"CHRONIK_TLS_CA_FILE=" + filepath.Join(dir, "ca.crt"),
		"CHRONIK_TLS_CLIENT_AUTH=required",
		"CHRONIK_CONTROLLER_TLS=true",
		"CHRONIK_SUPER_USERS=" + strings.Join(principals, ";"),
	}
}
