package broker

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// SaslHandshake: v0-1
//
// Behavior:
// * Served on SASL_PLAINTEXT and SASL_SSL listeners before authentication:
//   the mechanism must be one of CHRONIK_SASL_ENABLED_MECHANISMS (PLAIN,
//   SCRAM-SHA-256, SCRAM-SHA-512), else UNSUPPORTED_SASL_MECHANISM with the
//   enabled list, and the connection is closed.
// * v0: the client then sends bare SASL tokens (length-prefixed, no Kafka
//   header), each answered the same way; v1: SaslAuthenticate requests.
// * On any other listener, or once authenticated, ILLEGAL_SASL_STATE.
//
// Deviations:
// * No re-authentication (KIP-368): sessions do not expire, and a second
//   handshake on an authenticated connection is ILLEGAL_SASL_STATE.

func handleSASLHandshake(c *conn, req *request) reply {
	r := req.Request.(*kmsg.SASLHandshakeRequest)
	resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
	mechs := c.b.saslMechanisms()
	resp.SupportedMechanisms = mechs
	switch {
	case !c.ln.Protocol.SASL() || c.auth.phase != saslStart:
		resp.ErrorCode = kerr.IllegalSaslState.Code
	case !slices.Contains(mechs, r.Mechanism):
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		c.auth.failed = true
	default:
		sess, err := security.NewSession(r.Mechanism, c.b.credential)
		if err != nil {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			c.auth.failed = true
			break
		}
		c.auth.session, c.auth.mechanism = sess, r.Mechanism
		c.auth.phase = saslAuthenticating
		if r.Version == 0 {
			c.auth.phase = saslRawTokens
		}
	}
	return now(resp)
}

// credential looks up a SCRAM user for SASL.
func (b *Broker) credential(user, mechanism string) (security.ScramCredential, bool) {
	return b.secState().Credential(user, mechanism)
}
