package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func initProducerIDRaw(t *testing.T, c *rawConn, id int64, epoch int16) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.SetVersion(4)
	req.ProducerID, req.ProducerEpoch = id, epoch
	c.send(req)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	if err := c.recv(resp); err != nil {
		t.Fatalf("InitProducerID response: %v", err)
	}
	return resp
}

// A client claiming another client's producer ID and epoch in
// InitProducerID gets a fresh ID, as from Kafka: it can neither take the ID
// over nor fence the producer that owns it.
func TestInitProducerIDClaimDoesNotFenceOwner(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "owned", nil)
	owner, thief := dialRaw(t, b), dialRaw(t, b)

	got := initProducerIDRaw(t, owner, -1, -1)
	if got.ErrorCode != 0 || got.ProducerID < 0 || got.ProducerEpoch != 0 {
		t.Fatalf("owner's InitProducerID: %v id %d epoch %d", kerr.ErrorForCode(got.ErrorCode), got.ProducerID, got.ProducerEpoch)
	}
	id := got.ProducerID
	if r := produceRaw(t, owner, "owned", makeBatch(1, id, 0, 0, 1)); r.ErrorCode != 0 {
		t.Fatalf("owner's first batch: %v", kerr.ErrorForCode(r.ErrorCode))
	}

	stolen := initProducerIDRaw(t, thief, id, 0)
	if stolen.ErrorCode != 0 || stolen.ProducerID == id || stolen.ProducerEpoch != 0 {
		t.Fatalf("claiming producer %d epoch 0 answered %v id %d epoch %d; want a fresh ID at epoch 0",
			id, kerr.ErrorForCode(stolen.ErrorCode), stolen.ProducerID, stolen.ProducerEpoch)
	}
	// The thief writes with what it was given; the owner carries on.
	if r := produceRaw(t, thief, "owned", makeBatch(1, stolen.ProducerID, stolen.ProducerEpoch, 0, 1)); r.ErrorCode != 0 {
		t.Fatalf("thief's batch: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := produceRaw(t, owner, "owned", makeBatch(1, id, 0, 1, 1)); r.ErrorCode != 0 {
		t.Fatalf("owner's second batch after another client claimed its ID: %v", kerr.ErrorForCode(r.ErrorCode))
	}

	// Half a claim is malformed, as Kafka answers it.
	for _, claim := range [][2]int64{{id, -1}, {-1, 0}} {
		if r := initProducerIDRaw(t, thief, claim[0], int16(claim[1])); r.ErrorCode != kerr.InvalidRequest.Code {
			t.Errorf("claim id %d epoch %d: %v, want INVALID_REQUEST", claim[0], claim[1], kerr.ErrorForCode(r.ErrorCode))
		}
	}
}
