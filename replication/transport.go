package replication

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One TCP port (CHRONIK_RAFT_ADDR) carries both Raft's own traffic and the
// brokers' controller calls (heartbeats, proposals forwarded to the
// leader). The first byte of a connection says which.
const (
	connRaft byte = 'R'
	connCall byte = 'C'

	maxCallBytes = 4 << 20 // a call or reply larger than this is refused
)

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
}

func newMux(ln net.Listener, advertise string, serveCall func(net.Conn)) (*mux, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("replication: advertised raft address %q: %w", advertise, err)
	}
	m := &mux{ln: ln, advertise: adv, raftConns: make(chan net.Conn, 16), serveCall: serveCall, closed: make(chan struct{})}
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
		m.serveCall(nc)
	default:
		nc.Close()
	}
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
		close(m.closed)
		m.ln.Close()
	})
	return nil
}

// Addr is the address peers reach this node at (its entry in the peers
// list), which Raft records in its configuration.
func (m *mux) Addr() net.Addr { return m.advertise }

// Dial implements raft.StreamLayer.
func (m *mux) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := nc.Write([]byte{connRaft}); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// call sends one request to a controller node and decodes its reply. One
// connection per call: calls are rare (heartbeats, admin operations).
func call(ctx context.Context, addr string, req *callRequest, resp *callResponse) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	} else {
		nc.SetDeadline(time.Now().Add(10 * time.Second))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(nc)
	w.WriteByte(connCall)
	if err := writeFrame(w, body); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	b, err := readFrame(bufio.NewReader(nc))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, resp)
}

func writeFrame(w io.Writer, body []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
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
