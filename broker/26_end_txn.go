package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-4
//
// Behavior:
// * Commits or aborts the producer's ongoing transaction: the decision
//   (PrepareCommit or PrepareAbort) is written to __transaction_state and
//   answered once durable; the markers then go to every partition of the
//   transaction (those this broker leads are appended here, the others
//   sent to their leaders as WriteTxnMarkers), and the transaction
//   completes once all are durable. The next transaction of the producer
//   gets CONCURRENT_TRANSACTIONS until then. A retried EndTxn with the same
//   outcome succeeds; the other outcome gets INVALID_TXN_STATE, as does
//   EndTxn with no transaction.
// * ACLs: WRITE on the transactional ID, else
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//
// Deviations:
// * v5 (KIP-890 part 2: an epoch bump at every commit) is not served.

func handleEndTxn(c *conn, req *request) reply {
	r := req.Request.(*kmsg.EndTxnRequest)
	if !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID) {
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return now(resp)
	}
	return func() kmsg.Response { return c.b.txns.EndTxn(c.ctx, r) }
}
