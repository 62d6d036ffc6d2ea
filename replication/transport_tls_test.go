package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/chronik-go/chronik/security"
)

// tlsFiles issues a certificate for name from the CA in dir.
func tlsFiles(t *testing.T, ca *security.CA, dir, name string) security.TLSFiles {
	t.Helper()
	cert, key, err := ca.Issue(dir, security.CertRequest{Name: name, Hosts: []string{"127.0.0.1", "localhost"}, Server: true, Client: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return security.TLSFiles{CertFile: cert, KeyFile: key, CAFile: dir + "/ca.crt", ClientAuth: security.ClientAuthRequired}
}

// With mutual TLS on the controller port, only a peer with a certificate
// from the CA whose principal is allowed gets a call served: a plain TCP
// peer, one with another CA's certificate and one with an allowed CA's
// certificate of a principal not allowed are disconnected unanswered.
func TestControllerPortMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, alice := tlsFiles(t, ca, dir, "broker-1"), tlsFiles(t, ca, dir, "alice")
	otherDir := t.TempDir()
	otherCA, err := security.LoadOrCreateCA(otherDir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger := tlsFiles(t, otherCA, otherDir, "broker-1")

	serverTLS, err := security.ServerConfig(node, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(nc net.Conn) {
		defer nc.Close()
		for {
			if _, err := readFrame(nc); err != nil {
				return
			}
			out, _ := json.Marshal(callResponse{Index: 7})
			if _, err := nc.Write(appendFrame(nil, out)); err != nil {
				return
			}
		}
	}
	m, err := newMux(ln, ln.Addr().String(), serve, muxTLS{server: serverTLS, allowPeer: func(p string) bool {
		return p == "User:CN=broker-1,O=Chronik"
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := ln.Addr().String()

	call := func(clientTLS *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var resp callResponse
		return newCallConns(clientTLS).call(ctx, addr, &callRequest{Heartbeat: &BrokerInfo{ID: 1}}, &resp)
	}
	clientFor := func(f security.TLSFiles) *tls.Config {
		c, err := security.ClientConfig(f, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := call(clientFor(node)); err != nil {
		t.Fatalf("a broker's certificate: %v", err)
	}
	if err := call(nil); err == nil {
		t.Fatal("a plain TCP call was answered")
	}
	if err := call(clientFor(alice)); err == nil {
		t.Fatal("a call with a client's certificate (principal not allowed) was answered")
	}
	if err := call(clientFor(stranger)); err == nil {
		t.Fatal("a call with another CA's certificate was answered")
	}
}

// A quorum whose peers are named by host name, on a mutual TLS controller
// port with certificates for that name only: Raft knows each node by the
// address it resolved its name to, which no certificate names, so every
// node (the leader included, for its own broker) must reach the leader
// by its peers entry. All three brokers register and are live.
func TestQuorumByHostNameOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := startQuorum(t, 3, func(c *Config) {
		name := fmt.Sprintf("node-%d", c.NodeID)
		cert, key, err := ca.Issue(dir, security.CertRequest{Name: name, Hosts: []string{"localhost"}, Server: true, Client: true}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		files := security.TLSFiles{CertFile: cert, KeyFile: key, CAFile: dir + "/ca.crt", ClientAuth: security.ClientAuthRequired}
		if c.ServerTLS, err = security.ServerConfig(files, nil); err != nil {
			t.Fatal(err)
		}
		if c.ClientTLS, err = security.ClientConfig(files, "", nil); err != nil {
			t.Fatal(err)
		}
		for i := range c.Peers {
			_, port, _ := net.SplitHostPort(c.Peers[i].Addr)
			c.Peers[i].Addr = net.JoinHostPort("localhost", port)
		}
		c.BindAddr = net.JoinHostPort("127.0.0.1", portOf(c.BindAddr))
	})
	waitAllLive(t, cs)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
