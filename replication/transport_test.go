package replication

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"
)

// echoCalls starts a mux whose call server answers each heartbeat with its
// broker ID as the index, closing the connection after perConn calls (0:
// never), as a peer restarted would. It answers broker ID slow only after
// half a second, and then closes lateSent.
func echoCalls(t *testing.T, perConn int, slow int32) (m *mux, lateSent chan struct{}) {
	t.Helper()
	lateSent = make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(nc net.Conn) {
		defer nc.Close()
		for n := 1; ; n++ {
			b, err := readFrame(nc)
			if err != nil {
				return
			}
			var req callRequest
			if err := json.Unmarshal(b, &req); err != nil || req.Heartbeat == nil {
				t.Errorf("bad call %q: %v", b, err)
				return
			}
			if req.Heartbeat.ID == slow {
				time.Sleep(500 * time.Millisecond)
			}
			out, _ := json.Marshal(callResponse{Index: uint64(req.Heartbeat.ID)})
			_, err = nc.Write(appendFrame(nil, out))
			if req.Heartbeat.ID == slow {
				close(lateSent)
			}
			if err != nil || n == perConn {
				return
			}
		}
	}
	m, err = newMux(ln, ln.Addr().String(), serve, muxTLS{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, lateSent
}

func heartbeatCalls(t *testing.T, p *callConns, addr string, n int) {
	t.Helper()
	for i := range n {
		if err := heartbeatCall(p, addr, int32(i+1), 5*time.Second); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
}

// heartbeatCall makes one call for broker id and checks the reply is its own.
func heartbeatCall(p *callConns, addr string, id int32, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var resp callResponse
	if err := p.call(ctx, addr, &callRequest{Heartbeat: &BrokerInfo{ID: id}}, &resp); err != nil {
		return err
	}
	if resp.Index != uint64(id) {
		return fmt.Errorf("call for broker %d answered with index %d: the reply to another call", id, resp.Index)
	}
	return nil
}

// Calls to one node share one connection.
func TestCallsReuseAConnection(t *testing.T) {
	m, _ := echoCalls(t, 0, 0)
	p := newCallConns(nil)
	defer p.close()
	heartbeatCalls(t, p, m.Addr().String(), 50)
	if got := m.accepted.Load(); got != 1 {
		t.Fatalf("50 calls opened %d connections, want 1", got)
	}
}

// A kept connection the other side closed is replaced within the call that
// finds it closed: no call fails.
func TestCallsRedialAClosedConnection(t *testing.T) {
	m, _ := echoCalls(t, 1, 0)
	p := newCallConns(nil)
	defer p.close()
	heartbeatCalls(t, p, m.Addr().String(), 5)
	if got := m.accepted.Load(); got != 5 {
		t.Fatalf("5 calls to a node closing after each opened %d connections, want 5", got)
	}
}

// Closing the mux closes the call connections it serves, so a node that
// stops leaves no peer waiting on it.
func TestMuxCloseEndsCallConnections(t *testing.T) {
	m, _ := echoCalls(t, 0, 0)
	p := newCallConns(nil)
	defer p.close()
	addr := m.Addr().String()
	heartbeatCalls(t, p, addr, 1)
	m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp callResponse
	if err := p.call(ctx, addr, &callRequest{Heartbeat: &BrokerInfo{ID: 1}}, &resp); err == nil {
		t.Fatal("a call to a closed node succeeded")
	}
	if ctx.Err() != nil {
		t.Fatal("the call to a closed node waited for its deadline instead of failing")
	}
}

// A call that timed out never leaves its late reply for the next call on
// the same connection.
func TestCallsAfterATimeoutGetTheirOwnReply(t *testing.T) {
	m, lateSent := echoCalls(t, 0, 7)
	p := newCallConns(nil)
	defer p.close()
	addr := m.Addr().String()
	heartbeatCalls(t, p, addr, 1)
	if err := heartbeatCall(p, addr, 7, 100*time.Millisecond); err == nil {
		t.Fatal("a call answered after 500ms succeeded within 100ms")
	}
	<-lateSent // written to the closed connection, or to one that would be reused
	heartbeatCalls(t, p, addr, 3)
}

// A connection idle for half of callIdleTimeout is not reused: the other
// side may close it as the call is sent.
func TestCallsDropConnectionsIdleTooLong(t *testing.T) {
	defer func(d time.Duration) { callIdleTimeout = d }(callIdleTimeout)
	callIdleTimeout = 200 * time.Millisecond
	m, _ := echoCalls(t, 0, 0)
	p := newCallConns(nil)
	defer p.close()
	addr := m.Addr().String()
	heartbeatCalls(t, p, addr, 3)
	time.Sleep(callIdleTimeout / 2)
	heartbeatCalls(t, p, addr, 3)
	if got := m.accepted.Load(); got != 2 {
		t.Fatalf("calls before and after an idle pause opened %d connections, want 2", got)
	}
}

// A controller's followers heartbeat its leader on one connection each.
func TestHeartbeatsKeepTheirConnection(t *testing.T) {
	cs, _ := startQuorum(t, 3)
	waitAllLive(t, cs)
	window := 40 * cs[0].cfg.HeartbeatInterval
	for attempt := 1; ; attempt++ {
		leader := cs[cs[0].LeaderID()-1]
		before := leader.mux.accepted.Load()
		since := time.Now()
		time.Sleep(window)
		if cs[0].LeaderID() != leader.cfg.NodeID {
			if attempt == 3 {
				t.Fatal("the controller leader changed in each of 3 counts")
			}
			continue // the brokers dial the new leader: count again
		}
		leader.hbMu.Lock()
		for id, at := range leader.hb {
			if at.Before(since) {
				t.Errorf("broker %d has not heartbeated since the count began", id)
			}
		}
		leader.hbMu.Unlock()
		if n := leader.mux.accepted.Load() - before; n > 0 {
			t.Fatalf("two brokers heartbeating for %v opened %d new call connections, want 0", window, n)
		}
		return
	}
}
