package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TxnOffsetCommit: v0-4
//
// Behavior:
// * Writes a transactional producer's offsets for a group into the group's
//   partition of __consumer_offsets as one transactional batch (package
//   group), answered once durable. They stay invisible to OffsetFetch
//   until the transaction's commit marker reaches that partition, and an
//   abort marker drops them; OffsetFetch with RequireStable gets
//   UNSTABLE_OFFSET_COMMIT meanwhile.
// * v3+ carry the member and generation, checked as OffsetCommit checks
//   them (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID).
// * The transaction's first offsets for the group are verified with the
//   transaction coordinator, as a transaction's first produce to a
//   partition is (KIP-890): the group's partition of __consumer_offsets
//   must be in the producer's ongoing transaction (AddOffsetsToTxn), else
//   INVALID_TXN_STATE, so a producer that lies cannot leave offsets
//   pending that no marker will ever settle (and RequireStable fetches of
//   the group unstable for ever). A fenced producer gets
//   INVALID_PRODUCER_EPOCH; a coordinator that cannot answer,
//   COORDINATOR_LOAD_IN_PROGRESS (retriable).
// * In a cluster, only the group's coordinator answers (NOT_COORDINATOR
//   elsewhere).
// * ACLs: WRITE on the transactional ID (else every partition gets
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on the group (else
//   GROUP_AUTHORIZATION_FAILED), READ on each topic (else its partitions
//   get TOPIC_AUTHORIZATION_FAILED and the others are written).

func handleTxnOffsetCommit(c *conn, req *request) reply {
	r := req.Request.(*kmsg.TxnOffsetCommitRequest)
	var code *kerr.Error
	switch {
	case !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID):
		code = kerr.TransactionalIDAuthorizationFailed
	case !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeGroup, r.Group):
		code = kerr.GroupAuthorizationFailed
	}
	if code != nil {
		return now(txnOffsetCommitError(r, func(string) *kerr.Error { return code }))
	}
	if code := c.b.verifyTxnOffsets(c.ctx, r); code != nil {
		return now(txnOffsetCommitError(r, func(string) *kerr.Error { return code }))
	}
	allowed, denied := *r, *r
	allowed.Topics, denied.Topics = nil, nil
	for _, rt := range r.Topics {
		if c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, rt.Topic) {
			allowed.Topics = append(allowed.Topics, rt)
		} else {
			denied.Topics = append(denied.Topics, rt)
		}
	}
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	var wait func()
	if len(allowed.Topics) > 0 {
		resp, wait = c.b.groups.TxnOffsetCommit(&allowed)
	}
	resp.Topics = append(resp.Topics, txnOffsetCommitError(&denied, func(string) *kerr.Error { return kerr.TopicAuthorizationFailed }).Topics...)
	return waitThen(resp, wait)
}

// txnOffsetCommitError answers every partition of r with the code of its
// topic.
func txnOffsetCommitError(r *kmsg.TxnOffsetCommitRequest, code func(topic string) *kerr.Error) *kmsg.TxnOffsetCommitResponse {
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code(rt.Topic).Code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
