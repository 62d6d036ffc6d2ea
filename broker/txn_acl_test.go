package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// The transactional APIs check Kafka's ACLs: WRITE on the transactional
// ID for the producer's requests, DESCRIBE on it to find its coordinator,
// CLUSTER_ACTION for what only brokers send; with them granted, a
// transactional producer works.
func TestTransactionACLs(t *testing.T) {
	_, addr := aclBroker(t, &security.Authorizer{SuperUsers: []string{"User:admin"}})
	e := newACLEnv(t, addr, "ledger")
	alice := aclClient(t, addr, "alice")
	tiaf := code(kerr.TransactionalIDAuthorizationFailed)

	findTxn := func() int16 {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType, req.CoordinatorKey, req.CoordinatorKeys = 1, "ledger-txn", []string{"ledger-txn"}
		resp := e.issue(alice, req).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) > 0 {
			return resp.Coordinators[0].ErrorCode
		}
		return resp.ErrorCode
	}
	initPID := func() int16 {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr("ledger-txn"), 10000
		req.ProducerID, req.ProducerEpoch = -1, -1
		return e.issue(alice, req).(*kmsg.InitProducerIDResponse).ErrorCode
	}
	endTxn := func() int16 {
		req := kmsg.NewPtrEndTxnRequest()
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = "ledger-txn", 1, 0, true
		return e.issue(alice, req).(*kmsg.EndTxnResponse).ErrorCode
	}
	markers := func() int16 {
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch = 1, 0
		m.Topics = []kmsg.WriteTxnMarkersRequestMarkerTopic{{Topic: "ledger", Partitions: []int32{0}}}
		req.Markers = append(req.Markers, m)
		return e.issue(alice, req).(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	verifyOnly := func() int16 {
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
		tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tx.VerifyOnly = "ledger-txn", 1, 0, true
		tx.Topics = []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "ledger", Partitions: []int32{0}}}
		req.Transactions = append(req.Transactions, tx)
		return e.issue(alice, req).(*kmsg.AddPartitionsToTxnResponse).ErrorCode
	}
	for name, c := range map[string]struct {
		got  int16
		want int16
	}{
		"FindCoordinator type 1": {findTxn(), tiaf},
		"InitProducerId":         {initPID(), tiaf},
		"EndTxn":                 {endTxn(), tiaf},
		"WriteTxnMarkers":        {markers(), code(kerr.ClusterAuthorizationFailed)},
		"AddPartitionsToTxn v4+": {verifyOnly(), code(kerr.ClusterAuthorizationFailed)},
	} {
		if c.got != c.want {
			t.Errorf("%s without ACLs: %v, want %v", name, kerr.ErrorForCode(c.got), kerr.ErrorForCode(c.want))
		}
	}

	// Granted WRITE (and so DESCRIBE) on the ID and WRITE on the topic,
	// alice's transactional producer commits.
	e.grant(kadm.NewACLs().Allow("User:alice").TransactionalIDs("ledger-txn").Operations(kadm.OpWrite))
	e.grant(kadm.NewACLs().Allow("User:alice").Topics("ledger").Operations(kadm.OpWrite, kadm.OpRead))
	p := aclClient(t, addr, "alice", kgo.TransactionalID("ledger-txn"), kgo.RequestRetries(10))
	runTxns(t, p, "ledger", 1, true)
}
