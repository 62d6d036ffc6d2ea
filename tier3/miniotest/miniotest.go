// Package miniotest runs a real MinIO server for tests, as a separate
// process on 127.0.0.1, or on another local address (StartWith), such as
// the test namespace's address of testharness.Hosts that every broker
// namespace routes to (MinIO is AGPL: it is never imported).
//
// The binary is CHRONIK_MINIO_BIN, else tools/minio under the module root,
// built by `make tools/minio` from the Go module proxy at the version
// DESIGN.md pins. When it is missing a test is skipped with a message
// saying how to build it, except under CI=true, where it fails: CI must
// run the MinIO tests.
//
//	func TestX(t *testing.T) {
//		srv := miniotest.Start(t)
//		store := srv.Store(t, srv.NewBucket(t))
//		...
//		srv.Stop()    // the object store goes down
//		srv.Restart() // and comes back on the same port with its data
//	}
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
)

// Credentials of every test server.
const (
	AccessKey = "chronik-test"
	SecretKey = "chronik-test-secret"
)

// Binary returns the MinIO server binary or skips (fails under CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHRONIK_MINIO_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CHRONIK_MINIO_BIN=%q: %v", p, err)
		}
		return p
	}
	root, err := testharness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "tools", "minio")
	if _, err := os.Stat(p); err != nil {
		msg := "MinIO server not built: run `make tools/minio` (about 3 minutes once) or set CHRONIK_MINIO_BIN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Server is one MinIO process. Its methods are for the test goroutine.
type Server struct {
	t       testing.TB
	bin     string
	dir     string // data directory
	logPath string
	addr    string // host:port of the S3 API

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
}

// Options configures a server; the zero value is Start's.
type Options struct {
	// Host is the local address the S3 API listens on; empty means
	// 127.0.0.1. Processes in other network namespaces cannot reach the
	// test's 127.0.0.1: give them an address routed to them, such as
	// testharness.Hosts.IP(0).
	Host string
}

// Start starts a server on a free 127.0.0.1 port with a temporary data
// directory and waits until it is ready. Cleanup kills it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir()}
	s.logPath = filepath.Join(t.TempDir(), "minio.log")
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if s.addr, err = freeAddr(host); err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start minio: %v\n%s", err, s.log())
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("minio log:\n%s", s.log())
		}
	})
	return s
}

func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func (s *Server) start() error {
	console, err := freeAddr("127.0.0.1")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.addr, "--console-address", console, s.dir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("minio exited during startup")
		default:
		}
		if s.Ready(time.Second) == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("minio not ready after 60s")
}

// Ready asks the server's readiness endpoint, waiting at most timeout: nil
// when it serves requests. A test uses it to prove the store really is
// down (or back).
func (s *Server) Ready(timeout time.Duration) error {
	cl := http.Client{Timeout: timeout}
	resp, err := cl.Get("http://" + s.addr + "/minio/health/ready")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("minio /minio/health/ready: %s", resp.Status)
	}
	return nil
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Stop kills the server (the object store goes away); Restart brings it
// back on the same address with the same data.
func (s *Server) Stop() { s.kill() }

// Restart starts a stopped server again on its address.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("restart minio: %v\n%s", err, s.log())
}

// Endpoint is the S3 API's host:port.
func (s *Server) Endpoint() string { return s.addr }

// Env returns the environment a Chronik process needs for minio:// URLs.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey}
}

// URL returns the CHRONIK_TIER3_URL of bucket/prefix on this server.
func (s *Server) URL(bucket, prefix string) string {
	return "minio://" + s.addr + "/" + strings.TrimSuffix(bucket+"/"+prefix, "/")
}

// NewBucket creates a bucket with a fresh name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "t-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Store(t, name).Client().MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Store returns a minio-go backed store for bucket.
func (s *Server) Store(t testing.TB, bucket string) *tier3.MinIOStore {
	t.Helper()
	st, err := tier3.NewMinIOStore(tier3.MinIOOptions{Endpoint: s.addr, Bucket: bucket, AccessKey: AccessKey, SecretKey: SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// S3Store returns an aws-sdk-go-v2 backed store for bucket, pointed at
// this server the way CHRONIK_S3_ENDPOINT and CHRONIK_S3_PATH_STYLE do.
func (s *Server) S3Store(t testing.TB, bucket string) *tier3.S3Store {
	t.Helper()
	st, err := tier3.NewS3Store(context.Background(), tier3.S3Options{
		Bucket: bucket, Endpoint: "http://" + s.addr, PathStyle: true, Region: "us-east-1",
		AccessKey: AccessKey, SecretKey: SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Corrupt rewrites key in bucket with one byte flipped at at, keeping its
// stored checksum metadata: bit rot, as a reader would meet it.
func (s *Server) Corrupt(t testing.TB, bucket, key string, at int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Store(t, bucket).Client()
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := obj.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil {
		t.Fatal(err)
	}
	obj.Close()
	data := buf.Bytes()
	data[at] ^= 0xff
	if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{UserMetadata: st.UserMetadata}); err != nil {
		t.Fatal(err)
	}
}
