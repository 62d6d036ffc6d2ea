package hostile_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// Attacks on connections: clients that hold a broker's resources by being
// slow, by not reading, or by being many. The answers are the connection
// hygiene settings (CHRONIK_REQUEST_READ_TIMEOUT_MS,
// CHRONIK_RESPONSE_WRITE_TIMEOUT_MS, CHRONIK_CONNECTION_MAX_UNSENT_BYTES,
// CHRONIK_MAX_CONNECTIONS_PER_IP).

// closeGrace is how late after its timeout a broker may close a
// connection: its timer granularity and a loaded 2-core machine.
const closeGrace = 3 * time.Second

// slowlorisPerBroker connections per broker announce a 100 MiB request
// and send nothing more.
const slowlorisPerBroker = 8

func attackSlowloris(t *testing.T, su *suite) string {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	prefix := binary.BigEndian.AppendUint32(nil, 100<<20)
	for _, b := range su.bs {
		for range slowlorisPerBroker {
			c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Write(prefix); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	type result struct {
		closed bool
		after  time.Duration
	}
	results := make([]result, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed, _, _ := closedWithin(c, max(su.s.window, requestReadTimeout+closeGrace), 1<<20)
			results[i] = result{closed, time.Since(start)}
		}()
	}
	wg.Wait()
	open, early, latest := 0, 0, time.Duration(0)
	for _, r := range results {
		switch {
		case !r.closed:
			open++
		case r.after < requestReadTimeout/2:
			early++
		}
		latest = max(latest, r.after)
	}
	if open > 0 {
		t.Errorf("%d of %d slowloris connections still open %v after their 4-byte prefix; want each closed after CHRONIK_REQUEST_READ_TIMEOUT_MS=%d",
			open, len(conns), time.Since(start).Round(time.Millisecond), requestReadTimeout.Milliseconds())
	} else if latest > requestReadTimeout+closeGrace {
		t.Errorf("slowloris connections closed after up to %v; want within CHRONIK_REQUEST_READ_TIMEOUT_MS=%d + %v",
			latest.Round(time.Millisecond), requestReadTimeout.Milliseconds(), closeGrace)
	}
	if early > 0 {
		t.Errorf("%d slowloris connections closed before half the read timeout: a 100 MiB request of socket.request.max.bytes is allowed", early)
	}
	return fmt.Sprintf("%d connections announcing 100 MiB: %d closed, last after %v", len(conns), len(conns)-open, latest.Round(time.Millisecond))
}

// nonReaders connections each pipeline nonReaderFetches Fetches of the
// whole big topic and never read an answer.
const (
	nonReaders       = 4
	nonReaderFetches = 8
	// socketSlack is what the kernel buffers between the broker and a
	// client that does not read (both socket buffers, autotuned up to a
	// few MiB on loopback): bytes already out of the broker's hands.
	socketSlack = 16 << 20
)

func attackNonReadingFetch(t *testing.T, su *suite) string {
	pi := describe(t, su, bigTopic, 0)
	b := su.broker(pi.leader)
	var conns []*rawConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range nonReaders {
		c, err := dialRaw(b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		// A small receive buffer, so the broker meets a full socket soon.
		c.Conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		for range nonReaderFetches {
			if _, err := c.send(fetchReq(11, bigTopic, pi.topicID, 0, 0, 64<<20, -1, -1)); err != nil {
				t.Fatalf("sending a fetch: %v", err)
			}
		}
	}
	// Wait out the write timeout (and the window), then see whether each
	// connection was closed: drain it, and count what the broker had
	// written before closing.
	time.Sleep(max(su.s.window, responseWriteTimeout+closeGrace))
	open := 0
	var most int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A full-size buffer now, so draining is quick.
			c.Conn.(*net.TCPConn).SetReadBuffer(8 << 20)
			closed, _, drained := closedWithin(c, 5*time.Second, maxUnsentBytes+socketSlack+(1<<20))
			mu.Lock()
			defer mu.Unlock()
			most = max(most, drained)
			if !closed {
				open++
			}
		}()
	}
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d connections that never read still open (or streaming) after %v; want them closed after CHRONIK_RESPONSE_WRITE_TIMEOUT_MS=%d",
			open, nonReaders, max(su.s.window, responseWriteTimeout+closeGrace), responseWriteTimeout.Milliseconds())
	}
	if most > maxUnsentBytes+socketSlack {
		t.Errorf("a non-reading connection was sent %s before being closed; want at most CHRONIK_CONNECTION_MAX_UNSENT_BYTES (%s) + socket buffers (%s)",
			mib(most), mib(maxUnsentBytes), mib(socketSlack))
	}
	if err := testharness.ProbeAPIVersions(b.Addr(), 5*time.Second); err != nil {
		t.Fatalf("broker %d: %v", pi.leader, err)
	}
	return fmt.Sprintf("%d×%d fetches never read: %d closed, at most %s drained", nonReaders, nonReaderFetches, nonReaders-open, mib(most))
}

// floodConns is how many connections the flood opens to one broker: past
// maxConnectionsPerIP by as many again. The brokers' replica fetchers and
// the suite's own clients (all from 127.0.0.1 too) hold a dozen or so, so
// up to about maxConnectionsPerIP-12 of the flood get in.
const floodConns = 2 * maxConnectionsPerIP

func attackConnectionFlood(t *testing.T, su *suite) string {
	b := su.bs[0]
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	dialFailed := 0
	for range floodConns {
		c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
		if err != nil {
			dialFailed++
			continue
		}
		conns = append(conns, c)
	}
	// An accepted connection stays open (the read times out); a refused
	// one is closed at once.
	closedFast, open := dialFailed, 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed, after, _ := closedWithin(c, 2*time.Second, 1<<10)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !closed:
				open++
			case after < time.Second:
				closedFast++
			}
		}()
	}
	wg.Wait()
	if open > maxConnectionsPerIP {
		t.Errorf("%d of %d flood connections from one IP kept open; want at most CHRONIK_MAX_CONNECTIONS_PER_IP=%d", open, floodConns, maxConnectionsPerIP)
	}
	if excess := floodConns - maxConnectionsPerIP; closedFast < excess {
		t.Errorf("%d flood connections closed within a second; want at least the %d past CHRONIK_MAX_CONNECTIONS_PER_IP=%d closed at once",
			closedFast, excess, maxConnectionsPerIP)
	}
	// Hold the accepted ones for the rest of the window while the traffic
	// (connected before the flood) keeps going.
	time.Sleep(time.Until(start.Add(su.s.window)))
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Once the flood is gone, a new client gets in again.
	testharness.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		return testharness.ProbeAPIVersions(b.Addr(), 2*time.Second)
	})
	return fmt.Sprintf("%d connections to broker 1: %d kept, %d closed at once", floodConns, open, closedFast)
}

// metadataReq asks for topics, creating them if auto creation is on.
func metadataReq(topics []string, autoCreate bool) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(9)
	req.AllowAutoTopicCreation = autoCreate
	for _, name := range topics {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, mt)
	}
	return req
}
