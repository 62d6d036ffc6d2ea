package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddPartitionsToTxn: v0-5
//
// Behavior:
// * Adds partitions to the producer's ongoing transaction (starting one
//   from Empty or a completed transaction), written to
//   __transaction_state and answered once durable (package txn). Adding
//   partitions already in it answers at once. CONCURRENT_TRANSACTIONS
//   while the previous transaction is being committed or aborted;
//   PRODUCER_FENCED for an older epoch (INVALID_PRODUCER_EPOCH to versions
//   that predate it, as Kafka); INVALID_PRODUCER_ID_MAPPING for another
//   producer ID.
// * v4+ (KIP-890) batch several transactions and may only verify
//   (VerifyOnly) that partitions are in the ongoing transaction; they are
//   for brokers.
// * In a cluster, the coordinator is the leader of the transactional ID's
//   partition of __transaction_state: NOT_COORDINATOR elsewhere,
//   COORDINATOR_LOAD_IN_PROGRESS while it loads.
// * Unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION and the
//   others OPERATION_NOT_ATTEMPTED.
// * ACLs: v0-3 WRITE on the transactional ID (else every partition gets
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and WRITE on each topic (else
//   its partitions get TOPIC_AUTHORIZATION_FAILED and the others
//   OPERATION_NOT_ATTEMPTED); v4+ CLUSTER_ACTION on the cluster, else
//   CLUSTER_AUTHORIZATION_FAILED.

func handleAddPartitionsToTxn(c *conn, req *request) reply {
	r := req.Request.(*kmsg.AddPartitionsToTxnRequest)
	if r.Version >= 4 {
		if !c.allowedCluster(kmsg.ACLOperationClusterAction) {
			resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
			resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
			return now(resp)
		}
	} else if !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, r.TransactionalID) {
		resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewAddPartitionsToTxnResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				sp.Partition, sp.ErrorCode = p, kerr.TransactionalIDAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return now(resp)
	}
	mayWrite := func(topic string) bool {
		return c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, topic)
	}
	return func() kmsg.Response { return c.b.txns.AddPartitionsToTxn(c.ctx, r, mayWrite) }
}
