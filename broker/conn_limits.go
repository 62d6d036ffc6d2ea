package broker

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Connection hygiene: what a client that is slow, idle or hostile may hold.
//
//   - Request bytes (Config.QueuedMaxRequestBytes) are taken as they arrive
//     (conn.readBody), never on a frame's length prefix alone; a frame must
//     arrive within RequestReadTimeout of its first byte.
//   - A connection with nothing in flight is closed after
//     ConnectionsMaxIdle of silence.
//   - Fetch response bytes built but not written are bounded per connection
//     (ConnectionMaxUnsentBytes), and a response the socket takes no byte
//     of for ResponseWriteTimeout closes the connection.
//   - MaxConnections and MaxConnectionsPerIP cap what is accepted.
//
// Each close is counted in chronik_connections_closed_total by reason.

// Reasons a connection is closed by the broker, as metric labels.
const (
	closeReadTimeout   = "read_timeout"
	closeIdle          = "idle"
	closeWriteTimeout  = "write_timeout"
	closeMaxConns      = "max_connections"
	closeMaxConnsPerIP = "max_connections_per_ip"
)

var (
	errReadTimeout  = errors.New("broker: request frame not received within the request read timeout")
	errIdle         = errors.New("broker: connection idle past connections.max.idle.ms")
	errWriteTimeout = errors.New("broker: client took no response bytes within the response write timeout")
)

// connCloseMetrics are chronik_connections_closed_total's series, resolved
// once.
type connCloseMetrics struct {
	readTimeout, idle, writeTimeout, maxConns, maxConnsPerIP prometheus.Counter
}

func newConnCloseMetrics(m *metrics) connCloseMetrics {
	v := m.counterVec("chronik_connections_closed_total",
		"Client connections the broker closed to protect itself, by reason: read_timeout (a request frame not received within "+
			"CHRONIK_REQUEST_READ_TIMEOUT_MS of its first byte), idle (CHRONIK_CONNECTIONS_MAX_IDLE_MS), write_timeout (a response not "+
			"taken within CHRONIK_RESPONSE_WRITE_TIMEOUT_MS), max_connections and max_connections_per_ip (accepted past the cap).",
		"reason")
	return connCloseMetrics{
		readTimeout:   v.WithLabelValues(closeReadTimeout),
		idle:          v.WithLabelValues(closeIdle),
		writeTimeout:  v.WithLabelValues(closeWriteTimeout),
		maxConns:      v.WithLabelValues(closeMaxConns),
		maxConnsPerIP: v.WithLabelValues(closeMaxConnsPerIP),
	}
}

func (m *connCloseMetrics) inc(reason string) {
	switch reason {
	case closeReadTimeout:
		m.readTimeout.Inc()
	case closeIdle:
		m.idle.Inc()
	case closeWriteTimeout:
		m.writeTimeout.Inc()
	case closeMaxConns:
		m.maxConns.Inc()
	case closeMaxConnsPerIP:
		m.maxConnsPerIP.Inc()
	}
}

// closeReason maps the error that ended a connection to the reason the
// broker closed it, or "" when the peer did (or the broker is closing).
func closeReason(err error) string {
	switch {
	case errors.Is(err, errReadTimeout):
		return closeReadTimeout
	case errors.Is(err, errIdle):
		return closeIdle
	case errors.Is(err, errWriteTimeout):
		return closeWriteTimeout
	}
	return ""
}

// remoteIP is the peer's address without port, IPv4-mapped addresses
// unmapped; the zero Addr for a non-IP connection.
func remoteIP(nc net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admitLocked reports why a new connection from ip is over a cap, or ""
// when it may be served. Loopback is not exempt. Lock lnMu.
func (b *Broker) admitLocked(ip netip.Addr) string {
	switch {
	case b.cfg.MaxConnections > 0 && len(b.conns) >= b.cfg.MaxConnections:
		return closeMaxConns
	case b.cfg.MaxConnectionsPerIP > 0 && b.connsPerIP[ip] >= b.cfg.MaxConnectionsPerIP:
		return closeMaxConnsPerIP
	}
	return ""
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// reserveUnsent waits until n more fetch response bytes fit the
// connection's ConnectionMaxUnsentBytes and takes them. A fetch whose
// bound exceeds the limit takes all of it, so it still goes through,
// alone. It returns what was taken, for releaseUnsent.
func (c *conn) reserveUnsent(n int64) (int64, error) {
	limit := c.b.cfg.ConnectionMaxUnsentBytes
	if limit <= 0 || n <= 0 {
		return 0, nil
	}
	n = min(n, limit)
	for {
		c.unsentMu.Lock()
		if c.unsent+n <= limit {
			c.unsent += n
			c.unsentMu.Unlock()
			return n, nil
		}
		if c.unsentFreed == nil {
			c.unsentFreed = make(chan struct{})
		}
		freed := c.unsentFreed
		c.unsentMu.Unlock()
		select {
		case <-freed:
		case <-c.ctx.Done():
			return 0, c.ctx.Err()
		}
	}
}

func (c *conn) releaseUnsent(n int64) {
	if n == 0 {
		return
	}
	c.unsentMu.Lock()
	c.unsent -= n
	if c.unsentFreed != nil {
		close(c.unsentFreed)
		c.unsentFreed = nil
	}
	c.unsentMu.Unlock()
}

// connWriter writes to the socket, failing with errWriteTimeout once a
// write makes no progress for ResponseWriteTimeout: a slow reader keeps
// its connection, one that reads nothing loses it.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	t := w.c.b.cfg.ResponseWriteTimeout
	if t <= 0 {
		return w.c.nc.Write(p)
	}
	written := 0
	for {
		w.c.nc.SetWriteDeadline(time.Now().Add(t))
		n, err := w.c.nc.Write(p[written:])
		written += n
		switch {
		case err == nil || !isTimeout(err):
			return written, err
		case n == 0:
			return written, errWriteTimeout
		}
	}
}

// writeBuffers writes pieces with vectored writes, under the same rule
// as connWriter.
func (c *conn) writeBuffers(pieces net.Buffers) error {
	t := c.b.cfg.ResponseWriteTimeout
	for len(pieces) > 0 {
		if t > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(t))
		}
		n, err := pieces.WriteTo(c.nc) // consumes what it wrote
		switch {
		case err == nil:
			return nil
		case !isTimeout(err):
			return err
		case n == 0:
			return errWriteTimeout
		}
	}
	return nil
}

// fetchBound is the most record bytes fr can make the broker read, as
// fillFetch bounds them (a first batch larger than its partition's bound
// is returned whole and is let through beyond it).
func (b *Broker) fetchBound(fr *kmsg.FetchRequest) int64 {
	budget := int64(fr.MaxBytes)
	if fr.Version < 3 || budget <= 0 {
		budget = 50 << 20
	}
	budget = min(budget, int64(b.cfg.FetchMaxBytes))
	var parts int64
	for i := range fr.Topics {
		for _, p := range fr.Topics[i].Partitions {
			if p.PartitionMaxBytes > 0 {
				parts += int64(p.PartitionMaxBytes)
			} else {
				parts += 1 << 20
			}
		}
	}
	return min(budget, parts)
}
