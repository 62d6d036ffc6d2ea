package txn

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID: v0-5, with a transactional ID
//
// Behavior:
//   - A transaction timeout above Config.MaxTimeout, or not positive, is
//     INVALID_TRANSACTION_TIMEOUT.
//   - A new transactional ID gets a fresh producer ID at epoch 0; a known
//     one the epoch bumped, which fences the producer that held it. At an
//     exhausted epoch (32766) it gets a new producer ID at epoch 0.
//   - While its transaction is being ended (Prepare*), or another change of
//     it is being written: CONCURRENT_TRANSACTIONS. An ongoing transaction
//     is aborted with the epoch bumped (fencing the old producer) and the
//     request answered CONCURRENT_TRANSACTIONS, so the client retries and
//     bumps again once the abort is complete.
//   - v3+ (KIP-360) with a producer ID and epoch: they must be the current
//     producer's (the epoch is bumped), or the last one's (a retry of the
//     bump answered the same), or the producer ID rotated away from at an
//     exhausted epoch; else PRODUCER_FENCED (INVALID_PRODUCER_EPOCH below
//     v4). Exactly one of them set is INVALID_REQUEST.
//   - Past Config.MaxTransactionalIDs a new transactional ID gets
//     COORDINATOR_NOT_AVAILABLE, retriable in every client.
//   - A failed producer ID allocation is its error code when it has one,
//     else COORDINATOR_NOT_AVAILABLE (retriable).
//
// The caller checks the ACL (WRITE on the transactional ID) and serves
// requests without a transactional ID itself.
func (c *Coordinator) InitProducerID(ctx context.Context, r *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	var claim *producerEpoch
	if r.Version >= 3 {
		if (r.ProducerID == -1) != (r.ProducerEpoch == -1) {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp
		}
		if r.ProducerID != -1 {
			claim = &producerEpoch{r.ProducerID, r.ProducerEpoch}
		}
	}
	if r.TransactionalID == nil {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	id, epoch, err := c.initProducerID(ctx, *r.TransactionalID, r.TransactionTimeoutMillis, claim)
	if err != nil {
		c.log.Debug("InitProducerId refused", "transactional_id", *r.TransactionalID, "err", err)
		resp.ErrorCode = errCode(err, r.Version, 4)
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, epoch
	return resp
}

func (c *Coordinator) initProducerID(ctx context.Context, id string, timeoutMs int32, claim *producerEpoch) (int64, int16, error) {
	if id == "" {
		return -1, -1, errorf(kerr.InvalidRequest, "empty transactional ID")
	}
	if timeoutMs <= 0 || time.Duration(timeoutMs)*time.Millisecond > c.cfg.MaxTimeout {
		return -1, -1, errorf(kerr.InvalidTransactionTimeout, "transaction timeout %d ms is outside 1..%d ms (transaction.max.timeout.ms)", timeoutMs, c.cfg.MaxTimeout.Milliseconds())
	}
	t, err := c.getOrCreate(id)
	if err != nil {
		return -1, -1, err
	}
	now := nowMillis()
	t.mu.Lock()
	tr, action, err := t.prepareInitLocked(timeoutMs, claim, now)
	t.mu.Unlock()
	if err != nil {
		return -1, -1, err
	}
	switch action {
	case initFence:
		if err := c.endTxnOn(ctx, t, tr.producerID, tr.epoch, false, false); err != nil {
			return -1, -1, err
		}
		return -1, -1, errorf(kerr.ConcurrentTransactions, "transactional ID %q had an ongoing transaction: it is being aborted", id)
	case initRotate:
		// Allocated without the lock: it may ask the controller. The
		// pending Empty keeps every other change of t out meanwhile.
		newID, err := c.nextProducerID()
		t.mu.Lock()
		if err != nil {
			t.pending = noPending
			t.mu.Unlock()
			return -1, -1, producerIDError(err)
		}
		tr = t.rotateLocked(newID, timeoutMs, claim != nil, now)
		t.mu.Unlock()
		c.log.Info("transactional ID exhausted its producer epochs; rotated its producer ID", "transactional_id", id, "producer_id", newID)
	}
	if err := c.commit(ctx, t, tr, false); err != nil {
		return -1, -1, err
	}
	return tr.producerID, tr.epoch, nil
}

// getOrCreate returns id's state, created (with a fresh producer ID, at
// no epoch yet) when unknown.
func (c *Coordinator) getOrCreate(id string) (*txn, error) {
	t, err := c.lookup(id)
	if err != nil || t != nil {
		return t, err
	}
	if err := c.roomForOne(); err != nil {
		return nil, err
	}
	producerID, err := c.nextProducerID()
	if err != nil {
		return nil, producerIDError(err)
	}
	p, err := c.partitionOf(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	o, err := c.ownerLocked(p)
	if err != nil {
		return nil, err
	}
	if t := c.txns[id]; t != nil {
		return t, nil // created meanwhile; the producer ID is not used
	}
	if len(c.txns) >= c.cfg.MaxTransactionalIDs {
		return nil, c.fullError()
	}
	t = newTxn(id, p, o.gen)
	t.producerID = producerID
	t.state = stateEmpty
	t.lastUpdateMs = nowMillis()
	c.txns[id] = t
	return t, nil
}

// roomForOne fails when the coordinator keeps MaxTransactionalIDs IDs
// already (before a producer ID is spent on a new one).
func (c *Coordinator) roomForOne() error {
	c.mu.RLock()
	full := len(c.txns) >= c.cfg.MaxTransactionalIDs
	c.mu.RUnlock()
	if full {
		return c.fullError()
	}
	return nil
}

// fullError is the refusal of a new transactional ID past
// MaxTransactionalIDs, logged at most once a minute.
func (c *Coordinator) fullError() error {
	now := time.Now().UnixMilli()
	if last := c.lastFullWarn.Load(); now-last >= time.Minute.Milliseconds() && c.lastFullWarn.CompareAndSwap(last, now) {
		c.log.Warn("refusing new transactional IDs: the coordinator keeps MaxTransactionalIDs already; they are admitted as IDs expire (transactional.id.expiration.ms)",
			"max", c.cfg.MaxTransactionalIDs)
	}
	return errorf(kerr.CoordinatorNotAvailable, "the coordinator keeps %d transactional IDs, its bound; retry once some expire", c.cfg.MaxTransactionalIDs)
}

// producerIDError is a failed producer ID allocation as a client sees it.
func producerIDError(err error) error {
	if code := codeOf(err); code != kerr.UnknownServerError {
		return err
	}
	return &Error{Code: kerr.CoordinatorNotAvailable, Msg: "allocating a producer ID: " + err.Error()}
}
