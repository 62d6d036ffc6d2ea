package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddOffsetsToTxn: v0-4
//
// Behavior:
// * Adds the group's partition of __consumer_offsets to the producer's
//   transaction, as AddPartitionsToTxn does, so the transaction's marker
//   reaches it and commits or drops the offsets TxnOffsetCommit wrote.
//   COORDINATOR_NOT_AVAILABLE until __consumer_offsets exists (the first
//   FindCoordinator for a group creates it).
// * ACLs: WRITE on the transactional ID (else
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then READ on the group (else
//   GROUP_AUTHORIZATION_FAILED).

func handleAddOffsetsToTxn(c *conn, req *request) reply {
	r := req.Request.(*kmsg.AddOffsetsToTxnRequest)
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID):
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return now(resp)
	case !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group):
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return now(resp)
	}
	tp, ok := c.b.offsetsPartitionOf(r.Group)
	if !ok {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return now(resp)
	}
	return func() kmsg.Response { return c.b.txns.AddOffsetsToTxn(c.ctx, r, tp) }
}
