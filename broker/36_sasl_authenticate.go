package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslAuthenticate: v0-2
//
// Behavior:
// * Carries the tokens of the mechanism chosen by SaslHandshake v1 (KIP-152).
// * A wrong password or unknown user: SASL_AUTHENTICATION_FAILED with
//   Kafka's message (which does not tell the two apart), then the
//   connection is closed.
// * Outside an exchange: ILLEGAL_SASL_STATE, and the connection is closed.
// * v1+: SessionLifetimeMillis is 0 (sessions do not expire; no KIP-368).

func handleSASLAuthenticate(c *conn, req *request) reply {
	r := req.Request.(*kmsg.SASLAuthenticateRequest)
	resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if c.auth.phase != saslAuthenticating {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate outside a SASL exchange: send SaslHandshake v1 first"
		resp.ErrorMessage = &msg
		c.auth.failed = true
		return now(resp)
	}
	out, err := c.stepSASL(r.SASLAuthBytes)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := err.Error()
		resp.ErrorMessage = &msg
		return now(resp)
	}
	resp.SASLAuthBytes = out
	return now(resp)
}
