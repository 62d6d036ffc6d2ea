package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
)

// InitProducerID: v0-4
//
// Behavior:
// * Hands out producer IDs that are never reused: IDs are reserved in blocks
//   persisted in the metadata file before any is handed out; in a cluster
//   the blocks come from the controller's log, so no two brokers share one.
// * Without a transactional ID every request gets a fresh producer ID at
//   epoch 0, whatever producer ID and epoch it claims (v3+, KIP-360), as
//   Kafka's TransactionCoordinator does: the claim is unauthenticated, and
//   bumping it would let any client fence the producer that owns the ID.
//   A fresh ID resets the client's sequences just as well.
// * A claim with exactly one of producer ID and epoch set (-1) is
//   INVALID_REQUEST, as Kafka answers it.
// * With a transactional ID the transaction coordinator answers (package
//   txn): a new ID gets a fresh producer ID at epoch 0; a known one its
//   producer ID at the next epoch, which fences the previous producer
//   (its next write or transaction request fails); an ongoing
//   transaction is aborted first (CONCURRENT_TRANSACTIONS until it is).
//   KIP-360: a claim must name the current (or just bumped) producer and
//   epoch. A TransactionTimeoutMillis over transaction.max.timeout.ms gets
//   INVALID_TRANSACTION_TIMEOUT. In a cluster only the coordinator
//   answers (NOT_COORDINATOR elsewhere).
// * ACLs: with a transactional ID, WRITE on it, else
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Without one, IDEMPOTENT_WRITE
//   on the cluster, or WRITE on some topic (KIP-679: an ALLOW binding on
//   topics that no DENY binding covers, whether or not such a topic
//   exists yet), else CLUSTER_AUTHORIZATION_FAILED.

const producerIDBlock = 1000

func handleInitProducerID(c *conn, req *request) reply {
	r := req.Request.(*kmsg.InitProducerIDRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		if !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, *r.TransactionalID) {
			resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			return now(resp)
		}
		return func() kmsg.Response { return b.txns.InitProducerID(c.ctx, r) }
	}
	if !c.allowedCluster(kmsg.ACLOperationIdempotentWrite) && !c.mayWriteSomeTopic() {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	if (r.ProducerID == -1) != (r.ProducerEpoch == -1) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return now(resp)
	}
	id, err := b.nextProducerID()
	if err != nil {
		b.log.Error("allocate producer id failed", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		if b.ctl != nil {
			resp.ErrorCode = kafkaErr(err).Code // retriable: the controller is unreachable
		}
		return now(resp)
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return now(resp)
}

// mayWriteSomeTopic is Kafka's authorizeByResourceType(WRITE, TOPIC): may
// the principal write to some topic, existing or not? It may when a topic
// no binding covers is writable (a super user, or
// allow.everyone.if.no.acl.found), or when an ALLOW of WRITE (or ALL) on
// topics that matches it is not overridden by a matching DENY: one on
// every topic, a literal one on the same name, or a prefixed one whose
// prefix starts the allowed name or prefix.
func (c *conn) mayWriteSomeTopic() bool {
	az := c.b.cfg.Authorizer
	if az == nil {
		return true
	}
	st := c.b.secState()
	// Kafka asks about a topic name no binding is likely to cover.
	if az.Authorize(st, c.auth.principal, c.host, kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, "hardcode") {
		return true
	}
	if st == nil {
		return false
	}
	var allowLiteral, allowPrefixed []string
	allowAny := false
	denyLiteral, denyPrefixed := map[string]bool{}, map[string]bool{}
	for _, acl := range st.ACLs {
		switch {
		case acl.ResourceType != kmsg.ACLResourceTypeTopic,
			acl.Principal != c.auth.principal && acl.Principal != security.WildcardPrincipal,
			acl.Host != c.host && acl.Host != security.WildcardHost,
			acl.Operation != kmsg.ACLOperationWrite && acl.Operation != kmsg.ACLOperationAll:
			continue
		}
		literal := acl.PatternType == kmsg.ACLResourcePatternTypeLiteral
		switch {
		case acl.Permission == kmsg.ACLPermissionTypeDeny && literal && acl.ResourceName == security.WildcardResource:
			return false
		case acl.Permission == kmsg.ACLPermissionTypeDeny && literal:
			denyLiteral[acl.ResourceName] = true
		case acl.Permission == kmsg.ACLPermissionTypeDeny:
			denyPrefixed[acl.ResourceName] = true
		case literal && acl.ResourceName == security.WildcardResource:
			allowAny = true // unless a DENY on every topic follows
		case literal:
			allowLiteral = append(allowLiteral, acl.ResourceName)
		default:
			allowPrefixed = append(allowPrefixed, acl.ResourceName)
		}
	}
	if allowAny {
		return true
	}
	deniedByPrefix := func(name string) bool {
		for i := 1; i <= len(name); i++ {
			if denyPrefixed[name[:i]] {
				return true
			}
		}
		return false
	}
	for _, name := range allowLiteral {
		if !denyLiteral[name] && !deniedByPrefix(name) {
			return true
		}
	}
	for _, prefix := range allowPrefixed {
		if !deniedByPrefix(prefix) {
			return true
		}
	}
	return false
}

func (b *Broker) nextProducerID() (int64, error) {
	b.pidMu.Lock()
	defer b.pidMu.Unlock()
	if b.pidNext >= b.pidMax && b.ctl != nil {
		res, err := b.propose(context.Background(), &replication.Request{AllocProducerIDs: &replication.AllocProducerIDs{Broker: b.cfg.NodeID, Count: producerIDBlock}})
		if err != nil {
			return 0, err
		}
		b.pidNext, b.pidMax = res.Value, res.Value+producerIDBlock
	}
	if b.pidNext >= b.pidMax {
		b.adminMu.Lock()
		st := b.meta
		st.NextProducerID = b.pidNext + producerIDBlock
		err := saveMeta(b.fs, b.cfg.DataDir, &st)
		if err == nil {
			b.meta = st
		}
		b.adminMu.Unlock()
		if err != nil {
			return 0, err
		}
		b.pidMax = st.NextProducerID
	}
	id := b.pidNext
	b.pidNext++
	return id, nil
}
