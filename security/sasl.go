package security

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/xdg-go/scram"
)

// Credentials looks up a user's stored credential for a mechanism (ok
// false: no such user or no credential for that mechanism).
type Credentials func(user, mechanism string) (ScramCredential, bool)

// Session is one SASL exchange on one connection. It is not safe for
// concurrent use; a connection steps it from one goroutine.
type Session interface {
	// Step consumes the client's next token and returns the server's reply
	// token. done reports the exchange finished successfully; after done,
	// Principal is valid. An error means authentication failed: its
	// message is safe to send to the client (Kafka's SaslAuthenticate
	// error message) and does not reveal whether the user exists. After
	// an error or done, every further Step fails.
	Step(clientToken []byte) (reply []byte, done bool, err error)
	// Principal is "User:<name>" once Step has reported done, else "".
	Principal() string
}

// ErrAuthenticationFailed is wrapped by every error a Session returns;
// errors.Unwrap of such an error gives the reason for the server's log,
// which may say more than the message the client gets.
var ErrAuthenticationFailed = errors.New("security: authentication failed")

// MaxSASLTokenSize bounds every client token: a SCRAM message or a PLAIN
// token is a few hundred bytes, and Step runs before the client is known.
const MaxSASLTokenSize = 64 << 10

// authError is an authentication failure whose Error is the message for
// the client and whose cause is for the server's log.
type authError struct {
	msg   string
	cause error
}

func (e *authError) Error() string        { return e.msg }
func (e *authError) Unwrap() error        { return e.cause }
func (e *authError) Is(target error) bool { return target == ErrAuthenticationFailed }

func authFailed(msg string, cause error) error {
	return &authError{msg: msg, cause: cause}
}

var errSessionFinished = errors.New("security: SASL exchange already finished")

// SupportedMechanisms lists the mechanisms NewSession accepts, in the
// order a broker advertises them.
func SupportedMechanisms() []string {
	return []string{MechanismPlain, MechanismScramSHA256, MechanismScramSHA512}
}

// NewSession starts the server side of one SASL exchange.
func NewSession(mechanism string, creds Credentials) (Session, error) {
	return newSession(mechanism, creds, nil)
}

// newSession lets tests fix the server nonce (RFC 7677's test vector).
func newSession(mechanism string, creds Credentials, nonce scram.NonceGeneratorFcn) (Session, error) {
	if creds == nil {
		return nil, errors.New("security: NewSession needs a credential lookup")
	}
	if mechanism == MechanismPlain {
		return &plainSession{creds: creds}, nil
	}
	h, err := scramHashFor(mechanism)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedMechanism, mechanism)
	}
	s := &scramSession{mechanism: mechanism, creds: creds}
	srv, err := h.gen.NewServer(s.lookup)
	if err != nil {
		return nil, fmt.Errorf("security: SCRAM server: %w", err)
	}
	if nonce != nil {
		srv = srv.WithNonceGenerator(nonce)
	}
	s.conv = srv.NewConversation()
	return s, nil
}

// Stand-in credentials for users that do not exist, so that an unknown
// user costs the same hashing and sees a salt as stable as a real one's.
// The key is per process: only the salts change across restarts, and
// iterations stay at the default every tool uses.
var (
	decoyOnce sync.Once
	decoyKey  [32]byte
)

func decoyCredential(user, mechanism string) ScramCredential {
	decoyOnce.Do(func() { rand.Read(decoyKey[:]) })
	h, err := scramHashFor(mechanism)
	if err != nil {
		h = scramSHA512
	}
	// HMAC-SHA-512 gives 64 bytes, enough for either mechanism's keys.
	derive := func(label string, n int) []byte {
		m := hmac.New(sha512.New, decoyKey[:])
		fmt.Fprintf(m, "%s\x00%s\x00%s", label, mechanism, user)
		return m.Sum(nil)[:n]
	}
	return ScramCredential{
		Iterations: MinScramIterations,
		Salt:       derive("salt", 32),
		StoredKey:  derive("stored", h.size),
		ServerKey:  derive("server", h.size),
	}
}

// plainSession is RFC 4616 PLAIN checked against the SCRAM users.
type plainSession struct {
	creds     Credentials
	finished  bool
	principal string
}

// Kafka's PlainSaslServer messages.
const (
	plainBadCredentials = "Authentication failed: Invalid username or password"
	plainMalformed      = "Authentication failed: Invalid SASL/PLAIN request: expected authzid, username and password separated by NUL"
)

func (p *plainSession) Principal() string { return p.principal }

func (p *plainSession) Step(token []byte) ([]byte, bool, error) {
	if p.finished {
		return nil, false, authFailed("Authentication failed: SASL exchange already finished", errSessionFinished)
	}
	p.finished = true
	if len(token) > MaxSASLTokenSize {
		return nil, false, authFailed(plainMalformed, fmt.Errorf("security: PLAIN token of %d bytes", len(token)))
	}
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 {
		return nil, false, authFailed(plainMalformed, fmt.Errorf("security: PLAIN token has %d fields", len(parts)))
	}
	authzid, user, password := string(parts[0]), string(parts[1]), string(parts[2])
	switch {
	case user == "":
		return nil, false, authFailed("Authentication failed: username not specified", errors.New("security: PLAIN without username"))
	case password == "":
		return nil, false, authFailed("Authentication failed: password not specified", errors.New("security: PLAIN without password"))
	case authzid != "" && authzid != user:
		return nil, false, authFailed("Authentication failed: Client requested an authorization id that is different from username",
			fmt.Errorf("security: PLAIN authzid %q for user %q", authzid, user))
	}
	mechanism := MechanismScramSHA512
	cred, ok := p.creds(user, mechanism)
	if !ok {
		mechanism = MechanismScramSHA256
		cred, ok = p.creds(user, mechanism)
	}
	if !ok {
		// Hash anyway: a fast "no" would tell who exists.
		VerifyPassword(MechanismScramSHA512, decoyCredential(user, MechanismScramSHA512), password)
		return nil, false, authFailed(plainBadCredentials, fmt.Errorf("security: PLAIN: unknown user %q", user))
	}
	if !VerifyPassword(mechanism, cred, password) {
		return nil, false, authFailed(plainBadCredentials, fmt.Errorf("security: PLAIN: wrong password for user %q", user))
	}
	p.principal = "User:" + user
	return []byte{}, true, nil
}

// scramSession drives an xdg-go/scram server conversation: client-first
// gets server-first, client-final gets server-final and done.
type scramSession struct {
	mechanism string
	creds     Credentials
	conv      *scram.ServerConversation
	step      int  // client messages consumed
	finished  bool // done or failed
	unknown   bool // the user does not exist: conv runs on a decoy
	principal string
}

func (s *scramSession) Principal() string { return s.principal }

// lookup is the library's credential callback; it never fails, so an
// unknown user proceeds like a known one and fails only on the proof.
func (s *scramSession) lookup(user string) (scram.StoredCredentials, error) {
	cred, ok := s.creds(user, s.mechanism)
	if !ok {
		s.unknown = true
		cred = decoyCredential(user, s.mechanism)
	}
	return cred.toScram(), nil
}

// fail ends the exchange with Kafka's message for a failed SCRAM exchange,
// which is the same whatever went wrong.
func (s *scramSession) fail(cause error) ([]byte, bool, error) {
	s.finished = true
	msg := "Authentication failed during authentication due to invalid credentials with SASL mechanism " + s.mechanism
	return nil, false, authFailed(msg, cause)
}

func (s *scramSession) Step(token []byte) ([]byte, bool, error) {
	if s.finished {
		return nil, false, authFailed("Authentication failed: SASL exchange already finished", errSessionFinished)
	}
	if len(token) > MaxSASLTokenSize {
		return s.fail(fmt.Errorf("security: SCRAM message of %d bytes", len(token)))
	}
	s.step++
	switch s.step {
	case 1:
		if scramTokenAuth(token) {
			s.finished = true
			return nil, false, authFailed("Authentication failed: delegation tokens are not supported",
				errors.New("security: SCRAM client-first with tokenauth=true"))
		}
		reply, err := s.conv.Step(string(token))
		if err != nil {
			return s.fail(fmt.Errorf("security: SCRAM client-first: %w", err))
		}
		if a := s.conv.AuthzID(); a != "" && a != s.conv.Username() {
			return s.fail(fmt.Errorf("security: SCRAM authzid %q for user %q", a, s.conv.Username()))
		}
		return []byte(reply), false, nil
	default:
		s.finished = true
		reply, err := s.conv.Step(string(token))
		if err != nil {
			return s.fail(fmt.Errorf("security: SCRAM client-final for user %q: %w", s.conv.Username(), err))
		}
		if s.unknown || !s.conv.Valid() {
			return s.fail(fmt.Errorf("security: SCRAM: unknown user %q", s.conv.Username()))
		}
		s.principal = "User:" + s.conv.Username()
		return []byte(reply), true, nil
	}
}

// scramTokenAuth reports whether a client-first message asks for
// delegation-token authentication: Kafka sends it as the extension
// "tokenauth=true" after the nonce (RFC 5802 extensions, KIP-48).
func scramTokenAuth(clientFirst []byte) bool {
	fields := strings.Split(string(clientFirst), ",")
	if len(fields) <= 4 { // gs2 flag, authzid, n=, r=
		return false
	}
	for _, f := range fields[4:] {
		k, v, _ := strings.Cut(f, "=")
		if k == "tokenauth" && strings.EqualFold(v, "true") {
			return true
		}
	}
	return false
}
