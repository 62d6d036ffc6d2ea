package txn

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// In a cluster a transactional ID's coordinator is the leader of its
// partition of __transaction_state (Partition). The broker tells the
// coordinator which partitions it leads (SetLeadership), with their leader
// epochs: the epoch is the coordinator epoch the markers carry, so that
// partition leaders refuse the markers of a deposed coordinator. The
// coordinator loads a partition's transactional IDs from its replica when
// it takes the partition up (requests for them get
// COORDINATOR_LOAD_IN_PROGRESS meanwhile), resumes the markers of
// transactions being ended, and drops the IDs when it gives the partition
// up: their requests get NOT_COORDINATOR, and writes and markers in flight
// stop; the next leader loads what is durable and resumes from there.

// ownedPartition is a partition of __transaction_state this broker leads.
type ownedPartition struct {
	epoch  int32  // the leader epoch it was taken at: the coordinator epoch
	gen    uint64 // unique per ownership (0: standalone); txns remember theirs
	loaded bool   // guarded by Coordinator.mu
	// ctx ends when the ownership does, or with Close: it bounds the
	// waits and retries done for the partition's transactions.
	ctx    context.Context
	cancel context.CancelFunc
}

// SetLeadership tells a cluster's coordinator which partitions of
// __transaction_state this broker leads now, with their leader epochs: it
// takes up the new ones (loading their transactional IDs in the
// background) and gives up those it no longer leads, or leads under
// another epoch (another broker may have led it in between).
func (c *Coordinator) SetLeadership(led map[int32]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.cfg.Cluster {
		return
	}
	for k, o := range c.owned {
		if epoch, ok := led[k]; !ok || epoch != o.epoch {
			c.unloadLocked(k)
		}
	}
	for k, epoch := range led {
		if c.owned[k] != nil {
			continue
		}
		c.ownSeq++
		ctx, cancel := context.WithCancel(c.ctx)
		o := &ownedPartition{epoch: epoch, gen: c.ownSeq, ctx: ctx, cancel: cancel}
		c.owned[k] = o
		c.goLocked(func() { c.load(k, o) })
	}
}

// load reads partition p's transactional IDs and serves them, unless the
// ownership o ended meanwhile. A failed read is retried while o lasts.
func (c *Coordinator) load(p int32, o *ownedPartition) {
	start := time.Now()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		txns, records, err := c.replayPartition(p, o.gen)
		c.mu.Lock()
		if c.closed || c.owned[p] != o {
			c.mu.Unlock()
			return
		}
		if err == nil {
			for id, t := range txns {
				c.txns[id] = t
			}
			o.loaded = true
			resumed := c.resumeLocked(o, txns)
			total := len(c.txns)
			c.mu.Unlock()
			c.log.Info("loaded the transactional IDs of a transaction state partition", "partition", p, "leader_epoch", o.epoch,
				"transactional_ids", len(txns), "records", records, "resumed", resumed, "took", time.Since(start).Round(time.Millisecond))
			if total > c.cfg.MaxTransactionalIDs {
				c.log.Warn("this coordinator keeps more transactional IDs than MaxTransactionalIDs; new ones are refused until some expire",
					"transactional_ids", total, "max", c.cfg.MaxTransactionalIDs)
			}
			return
		}
		c.mu.Unlock()
		c.log.Warn("loading the transactional IDs of a transaction state partition failed; retrying", "partition", p, "err", err)
		select {
		case <-o.ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// resumeLocked starts writing the markers of the transactions of txns
// being ended (in PrepareCommit or PrepareAbort), just loaded under o, and
// returns how many. c.mu is held.
func (c *Coordinator) resumeLocked(o *ownedPartition, txns map[string]*txn) int {
	n := 0
	now := nowMillis()
	for _, t := range txns {
		t.mu.Lock()
		if t.state == statePrepareCommit || t.state == statePrepareAbort {
			prepared := t.currentLocked(t.state, t.lastUpdateMs)
			if done, err := t.completeLocked(now); err == nil {
				c.startMarkersLocked(o, t, prepared, done)
				n++
			}
		}
		t.mu.Unlock()
	}
	return n
}

// unloadLocked gives up partition k: its transactional IDs are dropped,
// and the waits and retries done for them end. Writes in flight are not
// applied here (the next leader reads them from the log). c.mu is held.
func (c *Coordinator) unloadLocked(k int32) {
	o := c.owned[k]
	delete(c.owned, k)
	o.cancel()
	n := 0
	for id, t := range c.txns {
		if t.part != k {
			continue
		}
		delete(c.txns, id)
		t.mu.Lock()
		t.notifyLocked()
		t.mu.Unlock()
		n++
	}
	c.log.Info("gave up a transaction state partition; its transactional IDs move with its leadership", "partition", k, "transactional_ids", n)
}

// partitionOf returns id's partition of __transaction_state.
func (c *Coordinator) partitionOf(id string) (int32, error) {
	n := c.stateLog.Partitions()
	if n <= 0 {
		return 0, errorf(kerr.CoordinatorNotAvailable, "%s does not exist", StateTopic)
	}
	return Partition(id, n), nil
}

// ownerLocked returns the ownership of partition p, or why this
// coordinator does not serve it now. c.mu is held.
func (c *Coordinator) ownerLocked(p int32) (*ownedPartition, error) {
	if c.closed {
		return nil, errorf(kerr.CoordinatorNotAvailable, "the transaction coordinator is shutting down")
	}
	if !c.cfg.Cluster {
		return c.standalone, nil
	}
	o := c.owned[p]
	switch {
	case o == nil:
		return nil, errorf(kerr.NotCoordinator, "this broker does not lead %s partition %d", StateTopic, p)
	case !o.loaded:
		return nil, errorf(kerr.CoordinatorLoadInProgress, "%s partition %d is loading", StateTopic, p)
	}
	return o, nil
}

// ownsLocked returns the ownership t is served under, or why it is not
// (any more). c.mu is held.
func (c *Coordinator) ownsLocked(t *txn) (*ownedPartition, error) {
	o, err := c.ownerLocked(t.part)
	if err != nil {
		return nil, err
	}
	if o.gen != t.gen || c.txns[t.id] != t {
		return nil, errorf(kerr.NotCoordinator, "transactional ID %q moved", t.id)
	}
	return o, nil
}

// lookup returns id's state (nil when unknown), or why this coordinator
// cannot serve id now.
func (c *Coordinator) lookup(id string) (*txn, error) {
	p, err := c.partitionOf(id)
	if err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, err := c.ownerLocked(p); err != nil {
		return nil, err
	}
	return c.txns[id], nil
}

// Unavailable returns the error a request for transactional ID id gets
// when this coordinator cannot serve it now (closed; __transaction_state
// missing; in a cluster, the ID's partition not led or still loading), or
// nil.
func (c *Coordinator) Unavailable(id string) *kerr.Error {
	_, err := c.lookup(id)
	if err != nil {
		return codeOf(err)
	}
	return nil
}
