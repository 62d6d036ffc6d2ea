package testharness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configures one broker. The zero value is a standalone broker with a
// fresh data directory and the binary's defaults.
type Options struct {
	// DataDir is the broker's data directory; empty means a new t.TempDir().
	DataDir string
	// Env holds extra KEY=VALUE variables for the broker process, on top of
	// the test's environment. Ignored by the kfake target.
	Env []string
	// Args are extra arguments after `chronik start` and the harness's own
	// address and data-dir flags (which they may override, flags parse
	// last-wins). The kfake target only understands --auto-create-topics and
	// --default-partitions.
	Args []string
	// StartTimeout bounds each wait for the broker to answer ApiVersions;
	// zero means 30s.
	StartTimeout time.Duration
	// Hosts, for StartCluster, runs each broker in its own network
	// namespace (NewHosts), so tests can cut it off the network.
	Hosts *Hosts
	// DataDirs, for StartCluster, gives node i+1 the data directory
	// DataDirs[i] instead of a new one (empty entries get new ones): a
	// standalone broker's directory grown into a cluster, a restored one.
	DataDirs []string
	// Listeners names extra Kafka listeners by their security protocol
	// (SSL, SASL_PLAINTEXT, SASL_SSL), each on a port of its own next to
	// the PLAINTEXT one the harness probes; ListenerAddr returns their
	// addresses. The TLS and SASL settings come from Env or NodeEnv.
	Listeners []string
	// NodeEnv, when set, adds variables for one broker: node is 1 for
	// Start and 1..n for StartCluster (each broker's own certificate).
	NodeEnv func(node int) []string
	// InterBrokerListener, when set, is the protocol name of the listener
	// the brokers fetch from one another on (one of Listeners, e.g. SSL).
	InterBrokerListener string
	// MutualTLS, for StartCluster, makes the brokers authenticate one
	// another with certificates from a CA of the test's own: replica
	// fetches go to an SSL listener that requires a client certificate,
	// and the controller port is mutual TLS open to the brokers'
	// certificates only. Clients keep the PLAINTEXT listener.
	MutualTLS bool
}

// Broker is one broker process (or kfake cluster) started by Start. Its
// methods are meant to be called from the test goroutine, not concurrently.
type Broker struct {
	t       testing.TB
	opts    Options
	dataDir string
	logPath string
	target  Target

	kafkaAddr string
	httpAddr  string
	raftAddr  string
	extra     map[string]string // listener name → address (Options.Listeners)
	node      int               // node ID, 1 for a standalone broker

	host int // index in opts.Hosts, when set

	starts int            // number of successful or attempted starts, for log markers
	proc   *process       // nil when not running (chronik target)
	fake   *kfake.Cluster // nil when not running (kfake target)
}

// process is one run of the binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status; valid after done is closed
}

// Start starts a broker and waits until it serves ApiVersions. The broker is
// killed when the test ends, and its log is dumped into the test output if
// the test failed.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	b := &Broker{t: t, opts: opts, dataDir: opts.DataDir, target: CurrentTarget()}
	if b.dataDir == "" {
		b.dataDir = t.TempDir()
	}
	b.logPath = filepath.Join(t.TempDir(), "broker.log")
	t.Cleanup(func() {
		b.kill()
		// A broker built with -race (CHRONIK_TEST_BUILDFLAGS) reports races
		// in its log and keeps running; its exit status is lost to SIGKILL.
		if data, _ := os.ReadFile(b.logPath); bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			t.Errorf("testharness: the broker reported a data race")
		}
		if t.Failed() {
			b.dumpLog()
		}
	})

	// Free ports can be taken by another process between our probe and the
	// broker's bind; pick new ones a few times before giving up.
	const attempts = 3
	for i := 1; ; i++ {
		if err := b.pickAddrs(); err != nil {
			t.Fatalf("testharness: picking ports: %v", err)
		}
		err := b.start()
		if err == nil {
			return b
		}
		if i == attempts || !errors.Is(err, errAddrInUse) {
			t.Fatalf("testharness: starting broker: %v", err)
		}
		t.Logf("testharness: %v; retrying with new ports", err)
	}
}

// Addr is the broker's Kafka address (host:port), stable across restarts.
func (b *Broker) Addr() string { return b.kafkaAddr }

// HTTPAddr is the broker's HTTP address (metrics, health, search, admin).
func (b *Broker) HTTPAddr() string { return b.httpAddr }

// Scrape reads the broker's unlabelled Prometheus series from /metrics.
func (b *Broker) Scrape() map[string]float64 {
	b.t.Helper()
	m, err := b.TryScrape(30 * time.Second)
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

// TryScrape is Scrape bounded by timeout, returning the error instead of
// failing the test: for brokers that may be paused, cut off or down.
func (b *Broker) TryScrape(timeout time.Duration) (map[string]float64, error) {
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Get("http://" + b.httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// DataDir is the broker's data directory, stable across restarts.
func (b *Broker) DataDir() string { return b.dataDir }

// WipeDataDir deletes everything in the data directory of a stopped broker,
// as a disk replaced after a failure: the next Restart brings the same node
// ID and addresses back with no local state at all (no log, no controller
// state, no caches). It returns how many files and bytes it removed.
func (b *Broker) WipeDataDir() (files int, bytes int64) {
	b.t.Helper()
	if b.Running() {
		b.t.Fatalf("testharness: WipeDataDir on a running broker; Kill or Stop it first")
	}
	err := filepath.WalkDir(b.dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			files++
			bytes += info.Size()
		}
		return nil
	})
	if err != nil {
		b.t.Fatalf("testharness: reading the data directory: %v", err)
	}
	ents, err := os.ReadDir(b.dataDir)
	if err != nil {
		b.t.Fatalf("testharness: %v", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(b.dataDir, e.Name())); err != nil {
			b.t.Fatalf("testharness: wiping the data directory: %v", err)
		}
	}
	return files, bytes
}

// LogPath is the file receiving the broker's stdout and stderr across all
// its restarts.
func (b *Broker) LogPath() string { return b.logPath }

// Running reports whether the broker process is alive.
func (b *Broker) Running() bool {
	if b.target == TargetKfake {
		return b.fake != nil
	}
	if b.proc == nil {
		return false
	}
	select {
	case <-b.proc.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// chance to flush or close anything. On the kfake target it is a clean close.
func (b *Broker) Kill() {
	b.t.Helper()
	b.kill()
}

// Stop sends SIGTERM and waits up to 30s for the process to exit, failing the
// test (and killing the process) if it does not. It returns the exit status:
// nil for a clean exit with code 0.
func (b *Broker) Stop() error {
	b.t.Helper()
	if b.target == TargetKfake {
		b.kill()
		return nil
	}
	p := b.proc
	if p == nil {
		return nil
	}
	b.proc = nil
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		b.t.Errorf("testharness: broker did not exit within 30s of SIGTERM; killed it")
		return p.err
	}
}

// AddArgs appends args to the broker's command line for its next starts.
func (b *Broker) AddArgs(args ...string) {
	b.opts.Args = append(b.opts.Args, args...)
}

// Exited waits up to timeout for the broker process to exit on its own
// and returns its exit error (nil for status 0); ok is false when it is
// still running.
func (b *Broker) Exited(timeout time.Duration) (err error, ok bool) {
	b.t.Helper()
	p := b.proc
	if p == nil {
		return nil, true
	}
	select {
	case <-p.done:
		b.proc = nil
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// TryRestart is Restart for a broker that may refuse to run: it returns
// the error of a start that failed (the process exited before serving)
// instead of failing the test.
func (b *Broker) TryRestart() error {
	b.t.Helper()
	if b.Running() {
		if err := b.Stop(); err != nil {
			b.t.Errorf("testharness: broker exited with %v on SIGTERM", err)
		}
	}
	return b.start()
}

// Restart stops the broker if it is running (SIGTERM) and starts it again on
// the same data directory and addresses, waiting until it serves again. Call
// Kill first to restart after a crash.
func (b *Broker) Restart() {
	b.t.Helper()
	if b.Running() {
		if err := b.Stop(); err != nil {
			b.t.Errorf("testharness: broker exited with %v on SIGTERM", err)
		}
	}
	if err := b.start(); err != nil {
		b.t.Fatalf("testharness: restarting broker: %v", err)
	}
}

func (b *Broker) pickAddrs() error {
	var err error
	if b.kafkaAddr, err = FreeAddr(); err != nil {
		return err
	}
	if b.httpAddr, err = FreeAddr(); err != nil {
		return err
	}
	if b.raftAddr, err = FreeAddr(); err != nil {
		return err
	}
	b.extra = map[string]string{}
	for _, name := range b.opts.Listeners {
		if b.extra[name], err = FreeAddr(); err != nil {
			return err
		}
	}
	return nil
}

// ListenerAddr is the address of the extra listener called name
// (Options.Listeners).
func (b *Broker) ListenerAddr(name string) string { return b.extra[name] }

// listenerArgs are the flags of the extra listeners.
func (b *Broker) listenerArgs() []string {
	if len(b.opts.Listeners) == 0 {
		return nil
	}
	lns := []string{"PLAINTEXT://" + b.kafkaAddr}
	for _, name := range b.opts.Listeners {
		lns = append(lns, name+"://"+b.extra[name])
	}
	args := []string{"--listeners", strings.Join(lns, ","), "--advertised-listeners", strings.Join(lns, ",")}
	if b.opts.InterBrokerListener != "" {
		args = append(args, "--inter-broker-listener-name", b.opts.InterBrokerListener)
	}
	return args
}

var errAddrInUse = errors.New("address already in use")

// start launches the broker on the current addresses and waits until it
// answers ApiVersions.
func (b *Broker) start() error {
	b.starts++
	if b.target == TargetKfake {
		return b.startKfake()
	}
	bin := Binary(b.t)

	log, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== testharness: start #%d at %s: kafka %s http %s data %s\n",
		b.starts, time.Now().Format(time.RFC3339Nano), b.kafkaAddr, b.httpAddr, b.dataDir)

	args := []string{"start",
		"--data-dir", b.dataDir,
		"--kafka-addr", b.kafkaAddr,
		"--advertised-addr", b.kafkaAddr,
		"--http-addr", b.httpAddr,
	}
	args = append(args, b.listenerArgs()...)
	cmd := exec.Command(bin, append(args, b.opts.Args...)...)
	if b.opts.Hosts != nil {
		cmd = b.opts.Hosts.Command(b.host, bin, append(args, b.opts.Args...)...)
	}
	// The Raft listener is not used by a standalone broker, but its default
	// (0.0.0.0:9093) would collide between brokers if it ever is opened.
	cmd.Env = append(os.Environ(), "CHRONIK_RAFT_ADDR="+b.raftAddr)
	cmd.Env = append(cmd.Env, b.opts.Env...)
	if b.opts.NodeEnv != nil {
		cmd.Env = append(cmd.Env, b.opts.NodeEnv(max(b.node, 1))...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig kills the broker if the test binary dies without running
	// its cleanups (a panic or go test's -timeout). Linux sends it when the
	// forking OS thread exits, which the Go runtime does not do to threads it
	// has not locked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	b.proc = p

	deadline := time.Now().Add(b.opts.StartTimeout)
	var probeErr error
	for {
		select {
		case <-p.done:
			b.proc = nil
			if bytes.Contains(b.lastStart(), []byte("address already in use")) {
				return fmt.Errorf("broker exited (%v): %w", p.err, errAddrInUse)
			}
			return fmt.Errorf("broker exited before serving (%v); log %s", p.err, b.logPath)
		default:
		}
		if probeErr = ProbeAPIVersions(b.kafkaAddr, time.Second); probeErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b.kill()
			return fmt.Errorf("broker not serving ApiVersions on %s after %v: %v", b.kafkaAddr, b.opts.StartTimeout, probeErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *Broker) kill() {
	if b.fake != nil {
		b.fake.Close()
		b.fake = nil
	}
	if p := b.proc; p != nil {
		b.proc = nil
		p.cmd.Process.Kill()
		<-p.done
	}
}

// lastStart returns the log written since the latest start marker.
func (b *Broker) lastStart() []byte {
	data, _ := os.ReadFile(b.logPath)
	if i := bytes.LastIndex(data, []byte("=== testharness: ")); i >= 0 {
		return data[i:]
	}
	return data
}

// dumpLog writes the broker log into the test output, keeping the tail of a
// long log.
func (b *Broker) dumpLog() {
	data, err := os.ReadFile(b.logPath)
	if errors.Is(err, os.ErrNotExist) {
		return // the broker never started
	}
	if err != nil {
		b.t.Logf("testharness: reading broker log: %v", err)
		return
	}
	const max = 64 << 10
	if len(data) > max {
		b.t.Logf("testharness: broker log %s (last %d of %d bytes):\n%s", b.logPath, max, len(data), data[len(data)-max:])
		return
	}
	b.t.Logf("testharness: broker log %s:\n%s", b.logPath, data)
}
