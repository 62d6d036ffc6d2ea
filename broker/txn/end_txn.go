package txn

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-5
//
// Behavior:
//   - An Ongoing transaction goes to PrepareCommit or PrepareAbort; once
//     that is durable the markers are written to every partition of the
//     transaction (retried while this coordinator owns the transactional
//     ID), then CompleteCommit or CompleteAbort. The client is answered
//     once the transaction completes, or Config.EndTxnWait after the
//     decision was durable, whichever is first: the decision stands either
//     way. Kafka answers at once and the producer's next
//     AddPartitionsToTxn meets CONCURRENT_TRANSACTIONS and backs off
//     until the markers are written; waiting here for the few
//     milliseconds they usually take keeps a producer that commits often
//     from losing its backoff at every commit.
//   - A retry after the transaction ended the same way succeeds; the other
//     way, or with no transaction (Empty), is INVALID_TXN_STATE. While it
//     is being ended (markers being written): CONCURRENT_TRANSACTIONS,
//     whichever way, as Kafka answers.
//   - Unknown transactional ID or another producer ID:
//     INVALID_PRODUCER_ID_MAPPING; another epoch: PRODUCER_FENCED
//     (INVALID_PRODUCER_EPOCH below v2).
//   - v5 answers the producer ID and epoch, unchanged.
//
// Deviations:
//   - KIP-890 part 2 (transaction version 2: an epoch bump on every
//     EndTxn) is not served: v5 is answered as v4 is, the epoch unchanged.
//     Advertise EndTxn v0-4 (and no transaction.version 2 feature), so
//     clients do not expect the bump.
func (c *Coordinator) EndTxn(ctx context.Context, r *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := r.ResponseKind().(*kmsg.EndTxnResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	err := c.endTxn(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit)
	if err != nil {
		c.log.Debug("EndTxn refused", "transactional_id", r.TransactionalID, "commit", r.Commit, "err", err)
		resp.ErrorCode = errCode(err, r.Version, 2)
		return resp
	}
	c.awaitCompletion(ctx, r.TransactionalID, r.ProducerID, r.ProducerEpoch)
	resp.ProducerID, resp.ProducerEpoch = r.ProducerID, r.ProducerEpoch
	return resp
}

// awaitCompletion waits, at most Config.EndTxnWait, until the transaction
// of producerID at epoch that id just decided to end is complete (or the
// coordinator stops serving id).
func (c *Coordinator) awaitCompletion(ctx context.Context, id string, producerID int64, epoch int16) {
	if c.cfg.EndTxnWait <= 0 {
		return
	}
	t, err := c.lookup(id)
	if err != nil || t == nil {
		return
	}
	timer := time.NewTimer(c.cfg.EndTxnWait)
	defer timer.Stop()
	for {
		t.mu.Lock()
		ending := (t.state == statePrepareCommit || t.state == statePrepareAbort) && t.producerID == producerID && t.epoch == epoch
		changed := t.changed
		t.mu.Unlock()
		if !ending {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Coordinator) endTxn(ctx context.Context, id string, producerID int64, epoch int16, commit bool) error {
	if id == "" {
		return errorf(kerr.InvalidRequest, "empty transactional ID")
	}
	t, err := c.lookup(id)
	if err != nil {
		return err
	}
	if t == nil {
		return errorf(kerr.InvalidProducerIDMapping, "unknown transactional ID %q", id)
	}
	return c.endTxnOn(ctx, t, producerID, epoch, commit, true)
}

// endTxnOn ends t's ongoing transaction: PrepareCommit or PrepareAbort is
// written and, once durable, its markers are started. fromClient false is
// the abort of a fence (prepareFenceLocked), at the fence's epoch.
func (c *Coordinator) endTxnOn(ctx context.Context, t *txn, producerID int64, epoch int16, commit, fromClient bool) error {
	t.mu.Lock()
	tr, done, err := t.endLocked(producerID, epoch, commit, fromClient, nowMillis())
	t.mu.Unlock()
	if err != nil || done {
		return err
	}
	if err := c.commit(ctx, t, tr, false); err != nil {
		return err
	}

	// Durable: hand the markers over, unless t changed hands or state in
	// between (Kafka's check after the append).
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, err := c.ownsLocked(t)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.producerID != tr.producerID:
		return errorf(kerr.InvalidProducerIDMapping, "transactional ID %q has producer ID %d, not %d", t.id, t.producerID, tr.producerID)
	case t.epoch != tr.epoch:
		return errorf(kerr.ProducerFenced, "transactional ID %q is at epoch %d, not %d", t.id, t.epoch, tr.epoch)
	case t.state != tr.to:
		return errorf(kerr.InvalidTxnState, "transactional ID %q is %v, not %v", t.id, t.state, tr.to)
	}
	done2, err := t.completeLocked(nowMillis())
	if err != nil {
		return err
	}
	c.startMarkersLocked(o, t, tr, done2)
	return nil
}

// startMarkersLocked starts writing the markers of prepared (t's durable
// Prepare* transition), then done (its Complete*, pending on t). c.mu is
// held and t is served under o.
func (c *Coordinator) startMarkersLocked(o *ownedPartition, t *txn, prepared, done transit) {
	c.goLocked(func() { c.finish(o, t, prepared, done) })
}
