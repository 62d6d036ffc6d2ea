package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/replication"
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
//
// Deviations:
// * A transactional ID gets INVALID_REQUEST: transactions are not supported
//   yet.

const producerIDBlock = 1000

func handleInitProducerID(c *conn, req *request) reply {
	r := req.Request.(*kmsg.InitProducerIDRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
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
