package replication

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronik-go/chronik/security"
)

// One TCP port (CHRONIK_RAFT_ADDR) carries both Raft's own traffic and the
// brokers' controller calls (heartbeats, proposals forwarded to the
// leader). The first byte of a connection says which.
const (
	connRaft byte = 'R'
	connCall byte = 'C'

	maxCallBytes = 4 << 20 // a call or reply larger than this is refused

	maxIdleCallConns = 2 // idle call connections kept per controller address
)

// callIdleTimeout is how long a node keeps a call connection open with no
// call on it (a variable for tests); callers drop theirs after half of it.
// Heartbeats keep a broker's connection to the leader busy several times a
// second.
var callIdleTimeout = time.Minute

// mux accepts on the controller listener and splits connections by their
// first byte: Raft's go to the stream layer's Accept, calls to serveCall.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	raftConns chan net.Conn
	serveCall func(net.Conn)
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	tls muxTLS

	callsMu  sync.Mutex
	calls    map[net.Conn]struct{} // open call connections, closed with the mux
	accepted atomic.Int64          // call connections accepted, ever
}

// muxTLS makes the controller port mutual TLS (Config.ServerTLS); zero:
// plain TCP.
type muxTLS struct {
	server, client *tls.Config
	allowPeer      func(principal string) bool
	log            *slog.Logger
}

func newMux(ln net.Listener, advertise string, serveCall func(net.Conn), sec muxTLS) (*mux, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("replication: advertised raft address %q: %w", advertise, err)
	}
	m := &mux{ln: ln, advertise: adv, tls: sec, raftConns: make(chan net.Conn, 16), serveCall: serveCall, closed: make(chan struct{}),
		calls: map[net.Conn]struct{}{}}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

func (m *mux) acceptLoop() {
	defer m.wg.Done()
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go m.route(nc)
	}
}

func (m *mux) route(nc net.Conn) {
	var kind [1]byte
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m.tls.server != nil {
		tc, err := m.acceptTLS(nc)
		if err != nil {
			if m.tls.log != nil {
				m.tls.log.Warn("controller connection refused", "remote", nc.RemoteAddr().String(), "err", err)
			}
			nc.Close()
			return
		}
		nc = tc
	}
	if _, err := io.ReadFull(nc, kind[:]); err != nil {
		nc.Close()
		return
	}
	nc.SetReadDeadline(time.Time{})
	switch kind[0] {
	case connRaft:
		select {
		case m.raftConns <- nc:
		case <-m.closed:
			nc.Close()
		}
	case connCall:
		m.callsMu.Lock()
		select {
		case <-m.closed:
			m.callsMu.Unlock()
			nc.Close()
			return
		default:
		}
		m.calls[nc] = struct{}{}
		m.callsMu.Unlock()
		m.accepted.Add(1)
		m.serveCall(nc)
		m.callsMu.Lock()
		delete(m.calls, nc)
		m.callsMu.Unlock()
	default:
		nc.Close()
	}
}

// acceptTLS completes the server side of a mutual TLS handshake (within
// the connection's read deadline) and checks the peer's principal.
func (m *mux) acceptTLS(nc net.Conn) (net.Conn, error) {
	tc := tls.Server(nc, m.tls.server)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	if len(tc.ConnectionState().VerifiedChains) == 0 {
		// Whatever the server config asked for, a controller peer must
		// have proved a certificate from the CA.
		return nil, errors.New("no verified client certificate")
	}
	if m.tls.allowPeer != nil {
		if p := security.PeerPrincipal(tc.ConnectionState()); !m.tls.allowPeer(p) {
			return nil, fmt.Errorf("principal %s is not a broker's (CHRONIK_SUPER_USERS)", p)
		}
	}
	return tc, nil
}

// dial connects to a controller port, with TLS when the port is.
func dial(ctx context.Context, addr string, timeout time.Duration, clientTLS *tls.Config) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if clientTLS == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	td := tls.Dialer{NetDialer: &d, Config: clientTLS}
	return td.DialContext(ctx, "tcp", addr)
}

// Accept implements net.Listener for raft.NetworkTransport.
func (m *mux) Accept() (net.Conn, error) {
	select {
	case nc := <-m.raftConns:
		return nc, nil
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (m *mux) Close() error {
	m.closeOnce.Do(func() {
		m.callsMu.Lock()
		close(m.closed)
		for nc := range m.calls {
			nc.Close()
		}
		m.callsMu.Unlock()
		m.ln.Close()
	})
	return nil
}

// Addr is the address peers reach this node at (its entry in the peers
// list), which Raft records in its configuration.
func (m *mux) Addr() net.Addr { return m.advertise }

// Dial implements raft.StreamLayer.
func (m *mux) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := dial(ctx, string(addr), timeout, m.tls.client)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write([]byte{connRaft}); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// callConns keeps idle call connections per controller address: a broker
// heartbeats several times a second, and one kept connection spares a dial
// (and a socket in TIME_WAIT) per beat.
type callConns struct {
	tls    *tls.Config // dial with TLS (Config.ClientTLS); nil: plain TCP
	mu     sync.Mutex
	idle   map[string][]idleConn
	closed bool
}

type idleConn struct {
	net.Conn
	since time.Time
}

func newCallConns(clientTLS *tls.Config) *callConns {
	return &callConns{tls: clientTLS, idle: map[string][]idleConn{}}
}

// get returns the most recently used idle connection to addr, closing those
// idle for half of callIdleTimeout or more: the other side may be about to
// close them.
func (p *callConns) get(addr string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	conns := p.idle[addr]
	for len(conns) > 0 {
		ic := conns[len(conns)-1]
		conns = conns[:len(conns)-1]
		p.idle[addr] = conns
		if time.Since(ic.since) < callIdleTimeout/2 {
			return ic.Conn
		}
		ic.Close()
	}
	return nil
}

func (p *callConns) put(addr string, nc net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= maxIdleCallConns {
		nc.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], idleConn{nc, time.Now()})
}

// close closes the idle connections; later ones are closed when returned.
func (p *callConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, conns := range p.idle {
		for _, nc := range conns {
			nc.Close()
		}
	}
	clear(p.idle)
}

// call sends one request to a controller node and decodes its reply, on an
// idle connection to addr if there is one. When a kept connection fails
// before ctx's deadline (the node restarted, say), the call is sent once
// more on a new connection, as callLeader would retry it anyway. Like a
// retry after a lost reply, that can deliver a call the node had already
// carried out: heartbeats repeat harmlessly; a repeated proposal is refused
// by its checks (an ISR change based on an ISR that has moved, a topic that
// exists) rather than applied twice, and a repeated producer-ID allocation
// skips a block.
func (p *callConns) call(ctx context.Context, addr string, req *callRequest, resp *callResponse) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var kept error
	if nc := p.get(addr); nc != nil {
		if kept = exchange(ctx, nc, false, body, resp); kept == nil {
			p.put(addr, nc)
			return nil
		}
		nc.Close()
		if ctx.Err() != nil {
			return kept
		}
	}
	nc, err := dial(ctx, addr, 2*time.Second, p.tls)
	if err != nil {
		if kept != nil {
			return fmt.Errorf("%w (and on the kept connection: %v)", err, kept)
		}
		return err
	}
	if err := exchange(ctx, nc, true, body, resp); err != nil {
		nc.Close()
		return err
	}
	p.put(addr, nc)
	return nil
}

// exchange writes one call, after the kind byte on a new connection, and
// reads its reply within ctx's deadline (10 s when ctx has none).
func exchange(ctx context.Context, nc net.Conn, fresh bool, body []byte, resp *callResponse) error {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	} else {
		nc.SetDeadline(time.Now().Add(10 * time.Second))
	}
	buf := make([]byte, 0, 5+len(body))
	if fresh {
		buf = append(buf, connCall)
	}
	if _, err := nc.Write(appendFrame(buf, body)); err != nil {
		return err
	}
	b, err := readFrame(nc)
	if err != nil {
		return err
	}
	nc.SetDeadline(time.Time{})
	*resp = callResponse{}
	return json.Unmarshal(b, resp)
}

// appendFrame appends body to dst after its 4-byte big-endian length.
func appendFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxCallBytes {
		return nil, fmt.Errorf("replication: call of %d bytes exceeds the %d limit", size, maxCallBytes)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}
