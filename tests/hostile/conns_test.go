package hostile_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
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

// connClosedMetric counts the connections a broker closed to protect
// itself, by reason (the connection hygiene branch adds it).
const connClosedMetric = "chronik_connections_closed_total"

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
	// nonReaderRSSBound is how much the leader's RSS may grow while they
	// do not read: each connection pins at most maxUnsentBytes of answers
	// plus the one being built (at most the 8 MB topic), 48 MiB for four;
	// twice that for a heap that doubles before a collection, and 64 MiB for
	// the collector's target over the broker's own live heap and buffers. A
	// broker building all 32 answers (256 MB) goes far past it.
	nonReaderRSSBound = 2*nonReaders*(maxUnsentBytes+8<<20) + 64<<20
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
	rssBefore, err := b.RSS()
	if err != nil {
		t.Fatal(err)
	}
	// How much one such fetch is answered with, read in full.
	probe, err := dialRaw(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	req := fetchReq(11, bigTopic, pi.topicID, 0, 0, 64<<20, -1, -1)
	resp, err := probe.roundTrip(req, 30*time.Second)
	probe.Close()
	if err != nil {
		t.Fatal(err)
	}
	answer := 0
	for _, tp := range resp.(*kmsg.FetchResponse).Topics {
		for _, p := range tp.Partitions {
			answer += len(p.RecordBatches)
		}
	}
	t.Logf("one fetch of the big topic is answered with %s of records", mib(int64(answer)))
	for range nonReaders {
		c, err := dialRaw(b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		for range nonReaderFetches {
			if _, err := c.send(fetchReq(11, bigTopic, pi.topicID, 0, 0, 64<<20, -1, -1)); err != nil {
				t.Fatalf("sending a fetch: %v", err)
			}
		}
	}
	// Watch the broker's side of each connection (/proc/net/tcp): closed
	// with answers still queued it is in FIN_WAIT1 until the client reads,
	// so no reading is needed to see it. Its send queue shows when the
	// broker last got a byte into the socket (the kernel grows the send
	// buffer for a while, so that is not at once). The timeout counts from
	// there; a broker write that made progress after it began times out
	// only a whole timeout after its own start, so a connection may
	// live up to two timeouts past its last byte, and closeGrace more.
	start := time.Now()
	type watch struct {
		state    string
		queued   int64
		progress time.Time // when queued last changed
	}
	ws := make([]watch, len(conns))
	for i := range ws {
		ws[i].progress = start
	}
	var rssPeak int64
	open := 0
	var closedAfter, sinceProgress time.Duration
	for {
		if rss, err := b.RSS(); err == nil {
			rssPeak = max(rssPeak, rss)
		}
		open = 0
		due := start
		now := time.Now()
		for i, c := range conns {
			st, queued, err := brokerSideState(b.Addr(), c.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			w := &ws[i]
			if st == "ESTABLISHED" {
				open++
				if queued != w.queued {
					w.queued, w.progress = queued, now
				}
				if d := w.progress.Add(2*responseWriteTimeout + closeGrace); d.After(due) {
					due = d
				}
			} else if w.state == "ESTABLISHED" || w.state == "" {
				sinceProgress = max(sinceProgress, now.Sub(w.progress))
			}
			w.state = st
		}
		closedAfter = time.Since(start)
		// A broker whose socket keeps taking bytes keeps the connection (a
		// slow reader); nothing here reads, so 30 s is far past any growth.
		if open == 0 || now.After(due) || closedAfter > 30*time.Second {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var states []string
	for _, w := range ws {
		states = append(states, fmt.Sprintf("%s (%s queued)", w.state, mib(w.queued)))
	}
	// The rest of the window, for the traffic measurement and RSS.
	for time.Since(start) < su.s.window {
		if rss, err := b.RSS(); err == nil {
			rssPeak = max(rssPeak, rss)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if open > 0 {
		t.Errorf("%d of %d connections that never read still open on the broker (%v) after %v; want them closed after CHRONIK_RESPONSE_WRITE_TIMEOUT_MS=%d without progress",
			open, nonReaders, states, closedAfter.Round(time.Millisecond), responseWriteTimeout.Milliseconds())
	}
	if grew := rssPeak - rssBefore; grew > nonReaderRSSBound {
		t.Errorf("broker %d: RSS grew by %s (to %s) while %d clients did not read; want at most %s with CHRONIK_CONNECTION_MAX_UNSENT_BYTES=%d",
			pi.leader, mib(grew), mib(rssPeak), nonReaders, mib(nonReaderRSSBound), maxUnsentBytes)
	}
	if err := testharness.ProbeAPIVersions(b.Addr(), 5*time.Second); err != nil {
		t.Fatalf("broker %d: %v", pi.leader, err)
	}
	closes, _ := scrapeSeries(b.HTTPAddr(), connClosedMetric)
	return fmt.Sprintf("%d×%d fetches never read: after %v (closed at most %v after their last byte) broker sockets %v, RSS +%s; %s %v",
		nonReaders, nonReaderFetches, closedAfter.Round(time.Millisecond), sinceProgress.Round(time.Millisecond), states, mib(rssPeak-rssBefore), connClosedMetric, closes)
}

// tcpStates names /proc/net/tcp's st column.
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
	"06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

// brokerSideState is the state of the broker's end of the IPv4 loopback
// connection between broker (its listener address) and client (the
// client's local address), and the bytes in its send queue, from
// /proc/net/tcp: "GONE" once the kernel dropped it.
func brokerSideState(broker, client string) (string, int64, error) {
	local, err := procAddr(broker)
	if err != nil {
		return "", 0, err
	}
	remote, err := procAddr(client)
	if err != nil {
		return "", 0, err
	}
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return "", 0, err
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == local && f[2] == remote {
			st, ok := tcpStates[f[3]]
			if !ok {
				st = f[3]
			}
			txq, _, _ := strings.Cut(f[4], ":")
			n, _ := strconv.ParseInt(txq, 16, 64)
			return st, n, nil
		}
	}
	return "GONE", 0, nil
}

// procAddr writes an IPv4 host:port as /proc/net/tcp does: the address as
// a little-endian hex word, the port big-endian hex.
func procAddr(hostport string) (string, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().Is4() {
		return "", fmt.Errorf("%q: want an IPv4 host:port", hostport)
	}
	a := ap.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port()), nil
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
