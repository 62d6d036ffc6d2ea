package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// Security follows Kafka's model (package security has the rules):
//
//   - A connection's principal is User:ANONYMOUS on PLAINTEXT, its client
//     certificate's subject on SSL (ANONYMOUS without one), and the SASL
//     user on SASL_PLAINTEXT and SASL_SSL once authenticated. Until then a
//     SASL connection may send only ApiVersions, SaslHandshake and
//     SaslAuthenticate; anything else, or a failed authentication, closes it.
//   - SCRAM users and ACLs live in the controller state in a cluster, and
//     in <data>/security.json on a standalone broker; either way they are
//     changed only through AlterUserScramCredentials, CreateAcls and
//     DeleteAcls (or the bootstrap users read once at startup).
//   - With Config.Authorizer set every request is checked against the ACLs
//     with Kafka's operation for its API; without it everything is allowed
//     and the ACL APIs answer SECURITY_DISABLED.

// saslPhase is how far a connection's SASL exchange went.
type saslPhase uint8

const (
	saslNone           saslPhase = iota // no SASL on the listener, or authenticated
	saslStart                           // only ApiVersions and SaslHandshake
	saslAuthenticating                  // after SaslHandshake v1: SaslAuthenticate requests
	saslRawTokens                       // after SaslHandshake v0: bare tokens
)

// connAuth is a connection's identity and SASL progress.
type connAuth struct {
	principal string
	phase     saslPhase
	mechanism string
	session   security.Session
	failed    bool // authentication failed: close once the answer is sent
}

var errAuthFailed = errors.New("authentication failed")

// admits says whether a request of API key may be served in the current
// phase. Kafka closes a connection that sends anything else before it
// authenticated.
func (a *connAuth) admits(key int16) error {
	switch a.phase {
	case saslNone:
		return nil
	case saslStart:
		if key == int16(kmsg.ApiVersions) || key == int16(kmsg.SASLHandshake) {
			return nil
		}
	case saslAuthenticating:
		if key == int16(kmsg.ApiVersions) || key == int16(kmsg.SASLAuthenticate) {
			return nil
		}
	}
	return fmt.Errorf("%s request before SASL authentication completed", kmsg.NameForKey(key))
}

// handshakeTLS completes a TLS listener's handshake within
// RequestReadTimeout (10 s when unset); a peer that does not speak TLS is
// disconnected here. On an SSL listener the client certificate names the
// principal.
func (c *conn) handshakeTLS() error {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return nil
	}
	timeout := c.b.cfg.RequestReadTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.b.metrics.tlsHandshakeFailures.Inc()
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if !c.ln.Protocol.SASL() {
		c.auth.principal = security.PeerPrincipal(tc.ConnectionState())
	}
	return nil
}

// stepSASL runs one step of the connection's SASL exchange.
func (c *conn) stepSASL(token []byte) ([]byte, error) {
	out, done, err := c.auth.session.Step(token)
	if err != nil {
		c.auth.failed = true
		c.b.metrics.authFailures.Inc()
		c.b.log.Info("SASL authentication failed", "remote", c.remote, "listener", c.ln.Name, "mechanism", c.auth.mechanism, "err", err)
		return nil, err
	}
	if done {
		c.auth.principal = c.auth.session.Principal()
		c.auth.phase, c.auth.session = saslNone, nil
		c.b.log.Debug("SASL authenticated", "remote", c.remote, "principal", c.auth.principal, "mechanism", c.auth.mechanism)
	}
	return out, nil
}

// rawSASLToken answers a bare token (SASL after SaslHandshake v0). A
// failure closes the connection with no answer, as Kafka does.
func (c *conn) rawSASLToken(start time.Time, token []byte) (inflight, error) {
	out, err := c.stepSASL(token)
	if err != nil {
		return inflight{}, fmt.Errorf("SASL %s: %w", c.auth.mechanism, err)
	}
	return inflight{start: start, key: int16(kmsg.SASLAuthenticate), raw: append([]byte{}, out...), reply: now(nil)}, nil
}

// saslMechanisms are the mechanisms the broker offers.
func (b *Broker) saslMechanisms() []string {
	if len(b.cfg.SASLMechanisms) > 0 {
		return b.cfg.SASLMechanisms
	}
	return security.SupportedMechanisms()
}

// allowed reports whether the connection's principal may perform op on the
// resource: always, without an authorizer.
func (c *conn) allowed(op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	az := c.b.cfg.Authorizer
	if az == nil {
		return true
	}
	return az.Authorize(c.b.secState(), c.auth.principal, c.host, op, rt, name)
}

// allowedCluster reports whether the connection may perform op on the
// cluster resource.
func (c *conn) allowedCluster(op kmsg.ACLOperation) bool {
	return c.allowed(op, kmsg.ACLResourceTypeCluster, security.ClusterResourceName)
}

// securityStore keeps a standalone broker's users and ACLs; a cluster
// broker's are in the controller state.
type securityStore struct {
	mu    sync.Mutex // serialises changes and their writes
	state atomic.Pointer[security.State]
}

// securityFile holds a standalone broker's SCRAM credentials (salted
// keys, never passwords) and ACLs, rewritten whole like meta.json.
const securityFile = "security.json"

type securityFileState struct {
	Version int             `json:"version"`
	State   *security.State `json:"state"`
}

// loadSecurity reads a standalone broker's security.json (none: empty).
func (b *Broker) loadSecurity() error {
	buf, err := readFile(b.fs, filepath.Join(b.cfg.DataDir, securityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("broker: read %s: %w", securityFile, err)
	}
	var f securityFileState
	if err := json.Unmarshal(buf, &f); err != nil {
		return fmt.Errorf("broker: %s is damaged (%v): restore it from a backup, or move it away to start with no users and ACLs", securityFile, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("broker: %s has version %d; this broker knows version 1", securityFile, f.Version)
	}
	b.sec.state.Store(f.State)
	return nil
}

// adoptSecurity hands a standalone broker's users and ACLs (its
// security.json) to the controller when the broker has grown into a
// cluster that has none of its own; a cluster that has some keeps them,
// and the file is left for the operator.
func (b *Broker) adoptSecurity() {
	local := b.sec.state.Load()
	if b.ctl == nil || local.Empty() {
		return
	}
	for !b.identified.Load() {
		select {
		case <-b.closing:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	for attempt := 0; ; attempt++ {
		if !b.ctl.State().Security.Empty() {
			b.log.Info("the cluster has users or ACLs: this broker's security.json from before it joined is not adopted")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := b.changeSecurity(ctx, &replication.SecurityChange{Adopt: local})
		cancel()
		if err == nil {
			if res.Adopted {
				b.log.Info("adopted this broker's SCRAM users and ACLs from before it joined the cluster", "users", len(local.UserNames()), "acls", len(local.ACLs))
			}
			return
		}
		if attempt%20 == 0 {
			b.log.Warn("adopting users and ACLs; retrying", "err", err)
		}
		select {
		case <-b.closing:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// secState returns the current users and ACLs (nil: none).
func (b *Broker) secState() *security.State {
	if b.ctl != nil {
		return b.ctl.State().Security
	}
	return b.sec.state.Load()
}

// changeSecurity applies a change of users or ACLs: through the controller
// in a cluster, else to security.json (durable before it applies).
func (b *Broker) changeSecurity(ctx context.Context, ch *replication.SecurityChange) (*replication.SecurityResult, error) {
	if b.ctl != nil {
		res, err := b.propose(ctx, &replication.Request{Security: ch})
		if err != nil {
			return nil, err
		}
		if res.Security == nil {
			res.Security = &replication.SecurityResult{}
		}
		return res.Security, nil
	}
	b.sec.mu.Lock()
	defer b.sec.mu.Unlock()
	cur := b.sec.state.Load()
	next, res, cerr := ch.Apply(cur)
	if cerr != nil {
		return nil, kerrf(kerr.InvalidRequest, "%s", cerr.Message)
	}
	if next != cur {
		buf, err := json.MarshalIndent(securityFileState{Version: 1, State: next}, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomicPerm(b.fs, filepath.Join(b.cfg.DataDir, securityFile), buf, 0o600); err != nil {
			return nil, err
		}
		b.sec.state.Store(next)
	}
	return &res, nil
}

// startSecurity adopts a grown standalone broker's users and ACLs, then
// creates the bootstrap users, in the background.
func (b *Broker) startSecurity() {
	b.maintWG.Add(1)
	go func() {
		defer b.maintWG.Done()
		b.adoptSecurity()
		b.bootstrapUsers()
	}()
}

// bootstrapUsers creates the configured bootstrap users that do not exist
// yet, retrying while the controller has no leader.
func (b *Broker) bootstrapUsers() {
	for _, u := range b.cfg.BootstrapUsers {
		for attempt := 0; ; attempt++ {
			err := b.bootstrapUser(u)
			if err == nil {
				break
			}
			var perm permanentError
			if errors.As(err, &perm) {
				b.log.Error("bootstrap user refused; not created", "user", u.Name, "mechanism", u.Mechanism, "err", err)
				break
			}
			if attempt%20 == 0 {
				b.log.Warn("bootstrap user not created yet; retrying", "user", u.Name, "mechanism", u.Mechanism, "err", err)
			}
			select {
			case <-b.closing:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

func (b *Broker) bootstrapUser(u security.ScramUser) error {
	if _, ok := b.secState().Credential(u.Name, u.Mechanism); ok {
		b.log.Info("bootstrap user exists; left unchanged", "user", u.Name, "mechanism", u.Mechanism)
		return nil
	}
	salt := make([]byte, 32)
	rand.Read(salt)
	const iterations = 8192
	salted, err := security.SaltPassword(u.Mechanism, u.Password, salt, iterations)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := b.changeSecurity(ctx, &replication.SecurityChange{CreateOnly: true, Upserts: []security.ScramUpsert{{
		User: u.Name, Mechanism: u.Mechanism, Iterations: iterations, Salt: salt, SaltedPassword: salted,
	}}})
	if err != nil {
		return err
	}
	for _, r := range res.Users {
		if r.Code != 0 {
			return permanentError{fmt.Errorf("%s", r.Message)}
		}
	}
	if len(res.Users) == 0 {
		b.log.Info("bootstrap user exists; left unchanged", "user", u.Name, "mechanism", u.Mechanism)
		return nil
	}
	b.log.Info("bootstrap user created", "user", u.Name, "mechanism", u.Mechanism)
	return nil
}

// Authenticate checks a SCRAM user's password (HTTP basic auth on the
// search API) and returns its principal.
func (b *Broker) Authenticate(user, password string) (principal string, ok bool) {
	st := b.secState()
	for _, m := range []string{security.MechanismScramSHA512, security.MechanismScramSHA256} {
		if cred, found := st.Credential(user, m); found {
			if security.VerifyPassword(m, cred, password) {
				return "User:" + user, true
			}
			return "", false
		}
	}
	return "", false
}

// MayRead reports whether principal, connecting from host, may read topic:
// always without an authorizer.
func (b *Broker) MayRead(principal, host, topic string) bool {
	az := b.cfg.Authorizer
	if az == nil {
		return true
	}
	return az.Authorize(b.secState(), principal, host, kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic)
}

// AuthorizerOn reports whether ACLs are checked (CHRONIK_AUTHORIZER=acl).
func (b *Broker) AuthorizerOn() bool { return b.cfg.Authorizer != nil }

// permanentError is a failure that trying again cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// without returns the items whose drop entry is false, in order.
func without[T any](items []T, drop []bool) []T {
	var out []T
	for i, it := range items {
		if !drop[i] {
			out = append(out, it)
		}
	}
	return out
}
