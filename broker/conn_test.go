package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Tests of connection hygiene (conn_limits.go): what slow, idle, hostile
// or non-reading clients can hold. Each drives real TCP connections.

// closedCount is chronik_connections_closed_total for reason.
func closedCount(t testing.TB, reg prometheus.Gatherer, reason string) float64 {
	t.Helper()
	v, _ := gathered(t, reg, "chronik_connections_closed_total", "reason="+reason)
	return v
}

// slowPrefix dials b and sends a frame length prefix of size bytes followed
// by body, then nothing more.
func slowPrefix(t *testing.T, b *Broker, size uint32, body []byte) *rawConn {
	t.Helper()
	c := dialRaw(t, b)
	c.write(binary.BigEndian.AppendUint32(nil, size))
	if len(body) > 0 {
		c.write(body)
	}
	return c
}

// waitClosed asserts the broker closes c within timeout, discarding
// whatever c still had to read.
func waitClosed(t *testing.T, c *rawConn, timeout time.Duration) {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v; want it closed by the broker", timeout)
	}
}

// produceAll produces n records with acks=all and waits for every ack.
func produceAll(ctx context.Context, cl *kgo.Client, topic string, n int) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	acked := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("record-%d", i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err == nil {
				acked++
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("%d of %d records acked: %w", acked, n, firstErr)
	}
	return nil
}

// Eight connections that announce a 100 MiB request (below
// socket.request.max.bytes) and send nothing more must not stall anyone:
// request bytes are taken as they arrive, not on the length prefix. The
// old reader reserved 800 MiB of the 512 MiB budget from the prefixes and
// no producer got a record acked.
func TestSlowlorisPrefixesHoldNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Metrics = reg
		c.RequestReadTimeout = time.Minute // the budget, not the timeout, must save the producer
	})
	for i := 0; i < 8; i++ {
		slowPrefix(t, b, 100<<20, nil)
	}
	// Let the broker read all eight prefixes before the producer starts.
	time.Sleep(200 * time.Millisecond)

	cl := testClient(t, b, kgo.RequiredAcks(kgo.AllISRAcks()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := produceAll(ctx, cl, "slowloris", 2000); err != nil {
		t.Fatalf("producer stalled by connections that sent only a length prefix: %v", err)
	}
}

// With a short request read timeout, connections that started a frame and
// stopped sending are closed, and every request byte they held (here some
// of each body) comes back, even when they hold all of it and wait for
// more.
func TestSlowRequestsAreClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Metrics = reg
		c.RequestReadTimeout = 500 * time.Millisecond
		c.MaxRequestBytes = 2 << 20
		c.QueuedMaxRequestBytes = 2 << 20
	})
	// Eight connections send only a length prefix; three each send half
	// of a 2 MiB frame: two of those hold the whole budget between them,
	// the third waits for it.
	var slow []*rawConn
	for i := 0; i < 8; i++ {
		slow = append(slow, slowPrefix(t, b, 2<<20, nil))
	}
	for i := 0; i < 3; i++ {
		slow = append(slow, slowPrefix(t, b, 2<<20, make([]byte, 1<<20)))
	}
	for _, c := range slow {
		waitClosed(t, c, 10*time.Second)
	}
	checkFor(t, 5*time.Second, func() error {
		if n := closedCount(t, reg, closeReadTimeout); n != 11 {
			return fmt.Errorf("%v connections counted closed for read_timeout, want 11", n)
		}
		return nil
	})
	checkFor(t, 5*time.Second, func() error {
		if !b.reqBytes.TryAcquire(b.cfg.QueuedMaxRequestBytes) {
			return errors.New("request budget still held after the slow connections closed")
		}
		b.reqBytes.Release(b.cfg.QueuedMaxRequestBytes)
		return nil
	})
	stillServes(t, b)
}

// A connection with nothing in flight is closed after
// connections.max.idle.ms of silence; one waiting for a long poll longer
// than that is not.
func TestIdleConnectionsAreClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	const idle = 400 * time.Millisecond
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Metrics = reg
		c.ConnectionsMaxIdle = idle
	})
	createTopic(t, b, "quiet", nil)

	c := dialRaw(t, b)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	fetch.MaxWaitMillis = int32(4 * idle / time.Millisecond)
	fetch.MinBytes = 1
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "quiet"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	start := time.Now()
	c.send(fetch)
	resp := fetch.ResponseKind().(*kmsg.FetchResponse)
	resp.Version = fetch.Version
	if err := c.recv(resp); err != nil {
		t.Fatalf("a long poll longer than the idle timeout was cut off after %v: %v", time.Since(start), err)
	}
	answered := time.Now()
	waitClosed(t, c, 10*time.Second)
	if d := time.Since(answered); d < idle/2 {
		t.Errorf("closed %v after its last answer; want about %v", d, idle)
	}
	checkFor(t, 5*time.Second, func() error {
		if n := closedCount(t, reg, closeIdle); n < 1 { // createTopic's connection is idle too
			return fmt.Errorf("%v connections counted closed for idle, want at least 1", n)
		}
		return nil
	})
}

// apiVersions proves c is served.
func apiVersions(c *rawConn) error {
	req := kmsg.NewPtrApiVersionsRequest()
	c.send(req)
	return c.recv(req.ResponseKind())
}

// Past max.connections.per.ip and max.connections, a new connection is
// accepted and closed at once; loopback is not exempt.
func TestConnectionCaps(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mod    func(*Config)
		reason string
	}{
		{"per-ip", func(c *Config) { c.MaxConnectionsPerIP = 3 }, closeMaxConnsPerIP},
		{"total", func(c *Config) { c.MaxConnections = 3 }, closeMaxConns},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b := testBroker(t, t.TempDir(), func(c *Config) {
				c.Metrics = reg
				tt.mod(c)
			})
			var open []*rawConn
			for i := 0; i < 3; i++ {
				c := dialRaw(t, b)
				if err := apiVersions(c); err != nil {
					t.Fatalf("connection %d under the cap: %v", i, err)
				}
				open = append(open, c)
			}
			over := dialRaw(t, b)
			over.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			over.nc.Write(kmsg.NewRequestFormatter().AppendRequest(nil, kmsg.NewPtrApiVersionsRequest(), 1))
			waitClosed(t, over, 10*time.Second)
			if n := closedCount(t, reg, tt.reason); n != 1 {
				t.Errorf("%v connections counted closed for %s, want 1", n, tt.reason)
			}
			for i, c := range open {
				if err := apiVersions(c); err != nil {
					t.Fatalf("connection %d under the cap stopped being served: %v", i, err)
				}
			}
			// A closed connection frees its place.
			open[0].nc.Close()
			checkFor(t, 5*time.Second, func() error {
				c := dialRaw(t, b)
				defer c.nc.Close()
				return apiVersions(c)
			})
		})
	}
}

// A client that sends fetches and never reads the answers is disconnected
// once the socket takes nothing for the response write timeout; meanwhile
// the broker built no more than ConnectionMaxUnsentBytes of its responses
// (plus one). What it held comes back and other clients are served.
func TestUnreadResponsesAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const maxUnsent = 8 << 20
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Metrics = reg
		c.ResponseWriteTimeout = time.Second
		c.ConnectionMaxUnsentBytes = maxUnsent
	})
	// 4 MiB of records.
	cl := testClient(t, b, kgo.ProducerBatchMaxBytes(1<<20))
	value := []byte(strings.Repeat("x", 64<<10))
	for i := 0; i < 64; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: "big", Value: value}, nil)
	}
	if err := cl.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}

	c := dialRaw(t, b)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.Version = 12
	fetch.MaxBytes = 50 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "big"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 50 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	for i := 0; i < 32; i++ { // 128 MiB of answers if all were built
		c.send(fetch)
	}

	var peak int64
	checkFor(t, 15*time.Second, func() error {
		b.lnMu.Lock()
		for bc := range b.conns {
			bc.unsentMu.Lock()
			peak = max(peak, bc.unsent)
			bc.unsentMu.Unlock()
		}
		b.lnMu.Unlock()
		if n := closedCount(t, reg, closeWriteTimeout); n != 1 {
			return fmt.Errorf("%v connections counted closed for write_timeout, want 1", n)
		}
		return nil
	})
	if peak > maxUnsent {
		t.Errorf("%d response bytes reserved on one connection; want at most %d", peak, maxUnsent)
	}
	waitClosed(t, c, 10*time.Second)
	checkFor(t, 5*time.Second, func() error {
		b.lnMu.Lock()
		defer b.lnMu.Unlock()
		for bc := range b.conns {
			bc.unsentMu.Lock()
			n := bc.unsent
			bc.unsentMu.Unlock()
			if n != 0 {
				return fmt.Errorf("a connection still holds %d unsent response bytes", n)
			}
		}
		if !b.reqBytes.TryAcquire(b.cfg.QueuedMaxRequestBytes) {
			return errors.New("request budget still held")
		}
		b.reqBytes.Release(b.cfg.QueuedMaxRequestBytes)
		return nil
	})
	stillServes(t, b)
	consumer := testClient(t, b, kgo.ConsumeTopics("big"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := 0
	ctx := testCtx(t)
	for got < 64 {
		fs := consumer.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume after the unread connection: %v (got %d)", err, got)
		}
		got += fs.NumRecords()
	}
}

// A response write times out only when the client takes nothing for the
// write timeout, not when the whole response takes longer: a slow
// consumer keeps its connection.
func TestResponseWriteTimeoutNeedsNoProgress(t *testing.T) {
	const timeout = 200 * time.Millisecond
	b := &Broker{cfg: Config{ResponseWriteTimeout: timeout}}
	for _, vectored := range []bool{false, true} {
		t.Run(fmt.Sprintf("vectored=%v", vectored), func(t *testing.T) {
			p1, p2 := net.Pipe() // unbuffered: a write progresses only as it is read
			defer p1.Close()
			defer p2.Close()
			c := &conn{b: b, nc: p1}
			write := func(p []byte) error {
				if vectored {
					return c.writeBuffers(net.Buffers{p[:len(p)/2], p[len(p)/2:]})
				}
				_, err := connWriter{c}.Write(p)
				return err
			}
			// 16 KiB read 1 KiB every 50 ms: 800 ms in all, four times the
			// timeout, but never 200 ms without progress.
			done := make(chan error, 1)
			go func() { done <- write(make([]byte, 16<<10)) }()
			buf := make([]byte, 1<<10)
			for n := 0; n < 16<<10; {
				time.Sleep(50 * time.Millisecond)
				m, err := p2.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
			if err := <-done; err != nil {
				t.Fatalf("a slow reader that kept reading got %v", err)
			}
			// A reader that stops: the write fails once nothing moved for
			// the timeout.
			start := time.Now()
			go func() { done <- write(make([]byte, 16<<10)) }()
			p2.Read(buf)
			if err := <-done; !errors.Is(err, errWriteTimeout) {
				t.Fatalf("a stalled reader: got %v, want errWriteTimeout", err)
			}
			if d := time.Since(start); d > 10*timeout {
				t.Errorf("the stalled write took %v to fail; want about %v", d, timeout)
			}
		})
	}
}
