package broker

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// saslBroker starts a broker with a PLAINTEXT and a SASL_PLAINTEXT
// listener and the bootstrap user admin (password admin-secret).
func saslBroker(t testing.TB, dir string, mod func(*Config)) *Broker {
	t.Helper()
	b := testBroker(t, dir, func(c *Config) {
		c.Listeners = []security.Listener{
			{Name: "PLAINTEXT", Protocol: security.Plaintext, Host: "127.0.0.1"},
			{Name: "SASL_PLAINTEXT", Protocol: security.SaslPlaintext, Host: "127.0.0.1"},
		}
		c.BootstrapUsers = []security.ScramUser{
			{Mechanism: security.MechanismScramSHA512, Name: "admin", Password: "admin-secret"},
			{Mechanism: security.MechanismScramSHA512, Name: "u", Password: "p"},
		}
		if mod != nil {
			mod(c)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		created := true
		for _, u := range b.cfg.BootstrapUsers {
			_, ok := b.credential(u.Name, u.Mechanism)
			created = created && ok
		}
		if created {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatal("bootstrap users not created")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// listenerAddr is the bound address of the listener called name.
func listenerAddr(t testing.TB, b *Broker, name string) string {
	t.Helper()
	l := b.listenerNamed(name)
	if l == nil {
		t.Fatalf("no listener %s", name)
	}
	return l.ln.Addr().String()
}

func dialAddr(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

func handshake(t *testing.T, c *rawConn, version int16, mechanism string) *kmsg.SASLHandshakeResponse {
	t.Helper()
	req := kmsg.NewPtrSASLHandshakeRequest()
	req.Version, req.Mechanism = version, mechanism
	c.send(req)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	if err := c.recv(resp); err != nil {
		t.Fatalf("SaslHandshake v%d: %v", version, err)
	}
	return resp
}

func plainToken(user, password string) []byte { return []byte("\x00" + user + "\x00" + password) }

// After SaslHandshake v0 the client sends bare tokens (kafka-python does):
// a good PLAIN token is answered with an empty token and the connection
// then serves requests; a bad one closes the connection unanswered.
func TestSASLHandshakeV0BareTokens(t *testing.T) {
	b := saslBroker(t, t.TempDir(), nil)
	addr := listenerAddr(t, b, "SASL_PLAINTEXT")

	c := dialAddr(t, addr)
	if resp := handshake(t, c, 0, security.MechanismPlain); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	tok := plainToken("admin", "admin-secret")
	c.write(binary.BigEndian.AppendUint32(nil, uint32(len(tok))))
	c.write(tok)
	var size [4]byte
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.nc, size[:]); err != nil || binary.BigEndian.Uint32(size[:]) != 0 {
		t.Fatalf("PLAIN answer: %v, length %d; want an empty token", err, binary.BigEndian.Uint32(size[:]))
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 9
	c.send(md)
	if err := c.recv(md.ResponseKind()); err != nil {
		t.Fatalf("metadata after authenticating: %v", err)
	}

	// A bare token shorter than a request header is a token all the same.
	short := dialAddr(t, addr)
	handshake(t, short, 0, security.MechanismPlain)
	tok = plainToken("u", "p")
	short.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(tok))), tok...))
	short.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(short.nc, size[:]); err != nil || binary.BigEndian.Uint32(size[:]) != 0 {
		t.Fatalf("PLAIN answer to a 4-byte token: %v, length %d; want an empty token", err, binary.BigEndian.Uint32(size[:]))
	}

	bad := dialAddr(t, addr)
	handshake(t, bad, 0, security.MechanismPlain)
	tok = plainToken("admin", "wrong")
	bad.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(tok))), tok...))
	bad.expectClosed()
}

// On a SASL listener only ApiVersions and SaslHandshake come before
// authentication: anything else closes the connection.
func TestSASLRequestBeforeAuthenticationCloses(t *testing.T) {
	b := saslBroker(t, t.TempDir(), nil)
	c := dialAddr(t, listenerAddr(t, b, "SASL_PLAINTEXT"))
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	c.send(av)
	if err := c.recv(av.ResponseKind()); err != nil {
		t.Fatalf("ApiVersions before authenticating: %v", err)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 9
	c.send(md)
	c.expectClosed()
}

// SaslAuthenticate with a wrong password answers SASL_AUTHENTICATION_FAILED
// with Kafka's message, then closes; an unknown mechanism answers
// UNSUPPORTED_SASL_MECHANISM with the enabled ones, then closes.
func TestSASLAuthenticateFailures(t *testing.T) {
	b := saslBroker(t, t.TempDir(), func(c *Config) { c.SASLMechanisms = []string{security.MechanismScramSHA512, security.MechanismPlain} })
	addr := listenerAddr(t, b, "SASL_PLAINTEXT")

	c := dialAddr(t, addr)
	if resp := handshake(t, c, 1, security.MechanismPlain); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	auth.Version, auth.SASLAuthBytes = 2, plainToken("admin", "wrong")
	c.send(auth)
	resp := auth.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || resp.ErrorMessage == nil {
		t.Fatalf("wrong password: %v %v; want SASL_AUTHENTICATION_FAILED with a message", kerr.ErrorForCode(resp.ErrorCode), resp.ErrorMessage)
	}
	c.expectClosed()

	c = dialAddr(t, addr)
	hs := handshake(t, c, 1, security.MechanismScramSHA256)
	if hs.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(hs.SupportedMechanisms) != 2 {
		t.Fatalf("SCRAM-SHA-256 disabled: %v %v; want UNSUPPORTED_SASL_MECHANISM and the 2 enabled", kerr.ErrorForCode(hs.ErrorCode), hs.SupportedMechanisms)
	}
	c.expectClosed()

	// A PLAINTEXT listener has no SASL.
	c = dialAddr(t, listenerAddr(t, b, "PLAINTEXT"))
	if hs := handshake(t, c, 1, security.MechanismPlain); hs.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("handshake on PLAINTEXT: %v; want ILLEGAL_SASL_STATE", kerr.ErrorForCode(hs.ErrorCode))
	}
}

// A client is told the brokers' endpoints of the listener it connected
// to: the advertised one when set, else the bound address.
func TestMetadataNamesTheListenersEndpoint(t *testing.T) {
	b := saslBroker(t, t.TempDir(), func(c *Config) {
		c.AdvertisedListeners = map[string]string{"SASL_PLAINTEXT": "broker1.example.com:9094"}
	})
	for _, tc := range []struct {
		listener string
		opts     []kgo.Opt
		want     string
	}{
		{"PLAINTEXT", nil, listenerAddr(t, b, "PLAINTEXT")},
		{"SASL_PLAINTEXT", []kgo.Opt{kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism())}, "broker1.example.com:9094"},
	} {
		cl, err := kgo.NewClient(append(tc.opts, kgo.SeedBrokers(listenerAddr(t, b, tc.listener)))...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(testCtx(t), cl)
		cl.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.listener, err)
		}
		if len(resp.Brokers) != 1 {
			t.Fatalf("%s: brokers %+v", tc.listener, resp.Brokers)
		}
		if got := net.JoinHostPort(resp.Brokers[0].Host, strconv.Itoa(int(resp.Brokers[0].Port))); got != tc.want {
			t.Errorf("%s: metadata names %s, want %s", tc.listener, got, tc.want)
		}
	}
}

// A standalone broker keeps its SCRAM users in security.json: a user
// created over the API authenticates after a restart, and a bootstrap
// user that exists is left as it is (its password is not reset).
func TestStandaloneUsersSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := saslBroker(t, dir, nil)
	admin := func(b *Broker) *kadm.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(listenerAddr(t, b, "SASL_PLAINTEXT")),
			kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return kadm.NewClient(cl)
	}
	res, err := admin(b).AlterUserSCRAMs(testCtx(t), nil, []kadm.UpsertSCRAM{{
		User: "alice", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "alice-secret",
	}})
	if err != nil || res.Error() != nil {
		t.Fatalf("creating alice: %v %v", err, res.Error())
	}
	b.Close()

	b = saslBroker(t, dir, func(c *Config) {
		c.BootstrapUsers = []security.ScramUser{{Mechanism: security.MechanismScramSHA512, Name: "admin", Password: "changed"}}
	})
	for _, m := range []saslCase{
		{"alice SCRAM-SHA-256", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), true},
		{"alice PLAIN", plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism(), true},
		{"admin's old password", scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism(), true},
		{"admin's bootstrap password of the restart", scram.Auth{User: "admin", Pass: "changed"}.AsSha512Mechanism(), false},
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(listenerAddr(t, b, "SASL_PLAINTEXT")), kgo.SASL(m.mech), kgo.RequestRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		_, err = kmsg.NewPtrMetadataRequest().RequestWith(testCtx(t), cl)
		cl.Close()
		if ok := err == nil; ok != m.ok {
			t.Errorf("%s: err %v, want success %v", m.name, err, m.ok)
		}
	}
}

type saslCase struct {
	name string
	mech sasl.Mechanism
	ok   bool
}

// A TLS listener serves TLS clients; a plaintext client is disconnected.
func TestSSLListener(t *testing.T) {
	dir := t.TempDir()
	ca, err := security.LoadOrCreateCA(dir, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(dir, security.CertRequest{Name: "broker-1", Hosts: []string{"127.0.0.1"}, Server: true, Client: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files := security.TLSFiles{CertFile: cert, KeyFile: key, CAFile: dir + "/ca.crt", ClientAuth: security.ClientAuthNone}
	srv, err := security.ServerConfig(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := testBroker(t, t.TempDir(), func(c *Config) {
		c.Listeners = []security.Listener{
			{Name: "PLAINTEXT", Protocol: security.Plaintext, Host: "127.0.0.1"},
			{Name: "SSL", Protocol: security.SSL, Host: "127.0.0.1"},
		}
		c.ServerTLS = srv
	})
	addr := listenerAddr(t, b, "SSL")

	plainConn := dialAddr(t, addr)
	av := kmsg.NewPtrApiVersionsRequest()
	plainConn.send(av)
	plainConn.expectClosed()

	clientTLS, err := security.ClientConfig(security.TLSFiles{CAFile: dir + "/ca.crt"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(clientTLS), kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("tls"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("over tls")}).FirstErr(); err != nil {
		t.Fatalf("produce over TLS: %v", err)
	}
}

// A standalone broker grown into a cluster brings its SCRAM users and ACLs
// along: the controller adopts its security.json while the cluster has
// none of its own.
func TestGrownBrokerAdoptsItsUsers(t *testing.T) {
	dir := t.TempDir()
	b := saslBroker(t, dir, nil)
	b.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := ln.Addr().String()
	ln.Close()
	b = testBroker(t, dir, func(c *Config) {
		c.Listeners = []security.Listener{
			{Name: "PLAINTEXT", Protocol: security.Plaintext, Host: "127.0.0.1"},
			{Name: "SASL_PLAINTEXT", Protocol: security.SaslPlaintext, Host: "127.0.0.1"},
		}
		c.Cluster = &ClusterConfig{RaftAddr: raftAddr, Peers: []replication.Peer{{ID: 1, Addr: raftAddr}},
			HeartbeatInterval: 50 * time.Millisecond, SessionTimeout: 600 * time.Millisecond}
	})
	waitFor(t, 30*time.Second, func() error {
		if _, ok := b.ctl.State().Security.Credential("admin", security.MechanismScramSHA512); !ok {
			return errors.New("admin not in the controller state yet")
		}
		return nil
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(listenerAddr(t, b, "SASL_PLAINTEXT")),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(testCtx(t), cl); err != nil {
		t.Fatalf("admin after growing into a cluster: %v", err)
	}
}
