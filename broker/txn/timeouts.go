package txn

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/broker/group"
)

// One goroutine (loop) aborts transactions past their timeout every
// AbortCheckInterval, and forgets transactional IDs idle longer than
// IDExpiration every IDExpirationCheckInterval, as Kafka's scheduler does.
// An abort fences: the epoch is bumped before PrepareAbort is written, so
// the zombie producer's next request or produce is refused.

// maxTombstonesPerWrite bounds one expiry append.
const maxTombstonesPerWrite = 500

func (c *Coordinator) loop() {
	abort := time.NewTicker(c.cfg.AbortCheckInterval)
	defer abort.Stop()
	var expire <-chan time.Time
	if c.cfg.IDExpiration > 0 {
		t := time.NewTicker(c.cfg.IDExpirationCheckInterval)
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-abort.C:
			c.abortTimedOut(now)
		case now := <-expire:
			c.expireIDs(now)
		}
	}
}

// abortTimedOut starts aborting every Ongoing transaction older than its
// timeout.
func (c *Coordinator) abortTimedOut(now time.Time) {
	nowMs := now.UnixMilli()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, t := range c.txns {
		t.mu.Lock()
		if t.pending == noPending && t.state == stateOngoing && t.startMs+int64(t.timeoutMs) < nowMs {
			c.fenceLocked(t, "timed out")
		}
		t.mu.Unlock()
	}
}

// fenceLocked starts aborting t's ongoing transaction with its epoch
// bumped. c.mu and t.mu are held; t is in c.txns.
func (c *Coordinator) fenceLocked(t *txn, why string) {
	o, err := c.ownsLocked(t)
	if err != nil {
		return
	}
	tr, err := t.prepareFenceLocked()
	if err != nil {
		c.log.Warn("cannot abort a transaction", "transactional_id", t.id, "why", why, "err", err)
		return
	}
	elapsed := time.Duration(nowMillis()-t.startMs) * time.Millisecond
	c.log.Info("aborting a transaction", "transactional_id", t.id, "why", why, "producer_id", tr.producerID,
		"fenced_epoch", t.epoch, "elapsed", elapsed, "timeout_ms", t.timeoutMs)
	c.goLocked(func() {
		if err := c.endTxnOn(o.ctx, t, tr.producerID, tr.epoch, false, false); err != nil {
			c.log.Warn("aborting a transaction failed; it is retried on the next check", "transactional_id", t.id, "why", why, "err", err)
		}
	})
}

// Abort aborts transactionalID's ongoing transaction as the timeout does,
// with its epoch bumped (fencing its producer), for an operator. It
// returns once the abort is complete (CompleteAbort durable), or an error:
// INVALID_TXN_STATE with no transaction ongoing, CONCURRENT_TRANSACTIONS
// while it is changing, TRANSACTIONAL_ID_NOT_FOUND, or why the coordinator
// does not serve it. When ctx ends after the abort was decided
// (PrepareAbort durable) the error says so: the abort then completes in
// the background.
func (c *Coordinator) Abort(ctx context.Context, transactionalID string) error {
	t, err := c.lookup(transactionalID)
	if err != nil {
		return err
	}
	if t == nil {
		return errorf(kerr.TransactionalIDNotFound, "unknown transactional ID %q", transactionalID)
	}
	c.mu.RLock()
	_, err = c.ownsLocked(t)
	var tr transit
	if err == nil {
		t.mu.Lock()
		tr, err = t.prepareFenceLocked()
		t.mu.Unlock()
	}
	c.mu.RUnlock()
	if err != nil {
		return err
	}
	c.log.Info("aborting a transaction", "transactional_id", transactionalID, "why", "operator", "producer_id", tr.producerID)
	if err := c.endTxnOn(ctx, t, tr.producerID, tr.epoch, false, false); err != nil {
		return err
	}
	for {
		c.mu.RLock()
		_, err := c.ownsLocked(t)
		t.mu.Lock()
		aborting := t.state == statePrepareAbort && t.producerID == tr.producerID && t.epoch == tr.epoch
		changed := t.changed
		t.mu.Unlock()
		c.mu.RUnlock()
		switch {
		case err != nil:
			return errorf(codeOf(err), "the abort of %q is decided; this coordinator stopped serving it before the markers were written: %v", transactionalID, err)
		case !aborting:
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return errorf(kerr.RequestTimedOut, "the abort of %q is decided; its markers are still being written", transactionalID)
		}
	}
}

// expireIDs forgets the transactional IDs idle past IDExpiration: it
// writes their tombstones, one append per partition and chunk, and drops
// them once durable.
func (c *Coordinator) expireIDs(now time.Time) {
	cutoff := now.Add(-c.cfg.IDExpiration).UnixMilli()
	byPart := make(map[int32][]*txn)
	c.mu.RLock()
	for _, t := range c.txns {
		t.mu.Lock()
		expirable := t.state == stateEmpty || t.state == stateCompleteCommit || t.state == stateCompleteAbort
		if t.pending == noPending && expirable && t.lastUpdateMs <= cutoff {
			t.pending = stateDead
			byPart[t.part] = append(byPart[t.part], t)
		}
		t.mu.Unlock()
	}
	c.mu.RUnlock()
	for p, ts := range byPart {
		for chunk := range slices.Chunk(ts, maxTombstonesPerWrite) {
			c.tombstone(p, chunk)
		}
	}
}

// tombstone writes the tombstones of ts, of partition p and pending Dead,
// and drops them once durable (else they stay, not pending any more).
func (c *Coordinator) tombstone(p int32, ts []*txn) {
	recs := make([]group.Record, len(ts))
	for i, t := range ts {
		recs[i] = encodeRecord(t.id, transit{to: stateDead})
	}
	c.mu.RLock()
	var o *ownedPartition
	var err error
	for _, t := range ts {
		if o, err = c.ownsLocked(t); err != nil {
			break
		}
	}
	var w group.Write
	if err == nil {
		w, err = c.stateLog.Append(o.ctx, p, recs)
	}
	c.mu.RUnlock()
	if err == nil {
		ctx, cancel := context.WithTimeout(o.ctx, c.cfg.WriteTimeout)
		err = w.Wait(ctx)
		cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	expired := 0
	for _, t := range ts {
		t.mu.Lock()
		if t.pending == stateDead {
			t.pending = noPending
			if err == nil && c.txns[t.id] == t {
				delete(c.txns, t.id)
				t.state = stateDead
				t.notifyLocked()
				expired++
			}
		}
		t.mu.Unlock()
	}
	if err != nil {
		c.log.Warn("expiring transactional IDs failed; retrying on the next check", "partition", p, "transactional_ids", len(ts), "err", err)
		return
	}
	c.log.Info("expired idle transactional IDs", "partition", p, "transactional_ids", expired)
}
