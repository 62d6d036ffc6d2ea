package txn

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/broker/group"
)

// commit is the one way a transactional ID's state changes: it writes tr,
// decided on t and pending there, to t's partition of __transaction_state
// and applies it once the log says it is durable. ctx bounds the enqueue;
// the wait for durability is bounded by Config.WriteTimeout and the
// ownership, not by ctx, so that a transition begun is always settled.
//
// On failure the pending transition is dropped (the client retries), or
// kept when keep is set (the caller retries it while it owns t). A record
// that failed to be durable in time may still become so; the next
// transition of the ID, or the next load, supersedes it.
func (c *Coordinator) commit(ctx context.Context, t *txn, tr transit, keep bool) error {
	rec := encodeRecord(t.id, tr)
	c.mu.RLock()
	o, err := c.ownsLocked(t)
	var w group.Write
	if err == nil {
		w, err = c.stateLog.Append(ctx, t.part, []group.Record{rec})
	}
	c.mu.RUnlock()
	if err == nil {
		wctx, cancel := context.WithTimeout(o.ctx, c.cfg.WriteTimeout)
		err = w.Wait(wctx)
		cancel()
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, oerr := c.ownsLocked(t); oerr != nil {
		// Given up meanwhile: t is not served any more; the next
		// owner reads whatever of it is durable.
		return oerr
	}
	if err != nil {
		err = logError(err)
		if !keep {
			t.pending = noPending
		}
		if tr.fence {
			t.failedFence = true
		}
		return err
	}
	t.applyLocked(tr)
	return nil
}

// owns reports whether t is still served (not given up, not closed).
func (c *Coordinator) owns(t *txn) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, err := c.ownsLocked(t)
	return err == nil
}

// logError maps a failed write of __transaction_state to the error a
// client gets, as Kafka maps it: retriable codes it knows how to handle.
func logError(err error) error {
	var coded *Error
	if errors.As(err, &coded) && coded.Code == kerr.CoordinatorNotAvailable {
		return err
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		// A timeout (context) or an I/O error: retriable.
		return &Error{Code: kerr.CoordinatorNotAvailable, Msg: "writing " + StateTopic + ": " + err.Error()}
	}
	code := ke
	switch ke {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
		code = kerr.CoordinatorNotAvailable
	case kerr.NotLeaderForPartition, kerr.KafkaStorageError:
		code = kerr.NotCoordinator
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		code = kerr.UnknownServerError
	}
	return &Error{Code: code, Msg: "writing " + StateTopic + ": " + err.Error()}
}
