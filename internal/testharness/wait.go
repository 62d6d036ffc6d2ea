package testharness

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CheckFor calls fn every poll until it returns nil, and fails the test with
// fn's last error if that has not happened within timeout. Use it instead of
// sleeping and hoping a condition holds.
func CheckFor(t testing.TB, timeout, poll time.Duration, fn func() error) {
	t.Helper()
	if err := Poll(timeout, poll, fn); err != nil {
		t.Fatal(err)
	}
}

// Poll is CheckFor without the test: it returns fn's last error, wrapped,
// when fn has not returned nil within timeout.
func Poll(timeout, poll time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true after %v: %w", timeout, err)
		}
		time.Sleep(poll)
	}
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago. The
// port is released before returning, so another process can take it; Start
// retries with new ports when the broker cannot bind.
func FreeAddr() (string, error) {
	// A port the kernel hands out for port 0 comes from the ephemeral
	// range, where every outgoing connection of every test also takes its
	// local port: between this probe and the broker's bind, one often
	// did. Ports below that range are taken only by listeners.
	low := ephemeralLow()
	for range 50 {
		port := 10000 + rand.IntN(low-10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return l.Addr().String(), nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default, 32768, where it cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	return low
}

// ProbeAPIVersions sends one ApiVersions request to addr on a fresh
// connection and returns nil if the broker answers without error and lists
// at least ApiVersions itself. It tries v3 (what current clients send first)
// and falls back to v0 when the broker answers UNSUPPORTED_VERSION, as Kafka
// clients do.
func ProbeAPIVersions(addr string, timeout time.Duration) error {
	resp, err := apiVersions(addr, 3, timeout)
	if err == nil && resp.ErrorCode == kerr.UnsupportedVersion.Code {
		resp, err = apiVersions(addr, 0, timeout)
	}
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("ApiVersions v%d: %w", resp.Version, err)
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == kmsg.ApiVersions.Int16() {
			return nil
		}
	}
	return fmt.Errorf("ApiVersions v%d: response lists %d keys, not ApiVersions itself", resp.Version, len(resp.ApiKeys))
}

func apiVersions(addr string, version int16, timeout time.Duration) (*kmsg.ApiVersionsResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))

	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = version
	req.ClientSoftwareName = "chronik-testharness"
	req.ClientSoftwareVersion = "1"
	const correlationID = 1
	wire := kmsg.NewRequestFormatter(kmsg.FormatterClientID("chronik-testharness")).AppendRequest(nil, req, correlationID)
	if _, err := conn.Write(wire); err != nil {
		return nil, err
	}

	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, fmt.Errorf("ApiVersions v%d: reading response size: %w", version, err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("ApiVersions v%d: implausible response size %d", version, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, fmt.Errorf("ApiVersions v%d: reading response: %w", version, err)
	}
	// ApiVersions responses always use header v0 (correlation ID only), even
	// at flexible versions, so an old broker's error reply is readable.
	if got := int32(binary.BigEndian.Uint32(body)); got != correlationID {
		return nil, fmt.Errorf("ApiVersions v%d: correlation ID %d, want %d", version, got, correlationID)
	}
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.Version = version
	if err := resp.ReadFrom(body[4:]); err != nil {
		// A broker answering UNSUPPORTED_VERSION replies in v0 format.
		v0 := kmsg.NewPtrApiVersionsResponse()
		if v0.ReadFrom(body[4:]) == nil && v0.ErrorCode != 0 {
			return v0, nil
		}
		return nil, fmt.Errorf("ApiVersions v%d: decoding response: %w", version, err)
	}
	return resp, nil
}
