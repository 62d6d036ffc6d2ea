package replication

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"
)

// echoCalls starts a mux whose call server answers each heartbeat with its
// broker ID as the index, closing the connection after perConn calls (0:
// never), as a peer past its idle timeout or restarted would.
func echoCalls(t *testing.T, perConn int) *mux {
	t.Helper()
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
			out, _ := json.Marshal(callResponse{Index: uint64(req.Heartbeat.ID)})
			if _, err := nc.Write(appendFrame(nil, out)); err != nil || n == perConn {
				return
			}
		}
	}
	m, err := newMux(ln, ln.Addr().String(), serve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func heartbeatCalls(t *testing.T, p *callConns, addr string, n int) {
	t.Helper()
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp callResponse
		err := p.call(ctx, addr, &callRequest{Heartbeat: &BrokerInfo{ID: int32(i + 1)}}, &resp)
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		if resp.Index != uint64(i+1) {
			t.Fatalf("call %d answered with index %d: a reply to another call", i+1, resp.Index)
		}
	}
}

// Calls to one node share one connection.
func TestCallsReuseAConnection(t *testing.T) {
	m := echoCalls(t, 0)
	p := newCallConns()
	defer p.close()
	heartbeatCalls(t, p, m.Addr().String(), 50)
	if got := m.accepted.Load(); got != 1 {
		t.Fatalf("50 calls opened %d connections, want 1", got)
	}
}

// A kept connection the other side closed is replaced within the call that
// finds it closed: no call fails.
func TestCallsRedialAClosedConnection(t *testing.T) {
	m := echoCalls(t, 1)
	p := newCallConns()
	defer p.close()
	heartbeatCalls(t, p, m.Addr().String(), 5)
	if got := m.accepted.Load(); got != 5 {
		t.Fatalf("5 calls to a node closing after each opened %d connections, want 5", got)
	}
}

// Closing the mux closes the call connections it serves, so a node that
// stops leaves no peer waiting on it.
func TestMuxCloseEndsCallConnections(t *testing.T) {
	m := echoCalls(t, 0)
	p := newCallConns()
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
