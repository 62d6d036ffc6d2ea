package txn

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Once a transaction's PrepareCommit or PrepareAbort is durable, one
// goroutine per transaction (so at most one per transactional ID, bounded
// by MaxTransactionalIDs) writes its markers through Markers, retrying the
// partitions that failed with a backoff while the coordinator owns the ID,
// then writes CompleteCommit or CompleteAbort, retried the same way (the
// Complete* transition stays pending meanwhile). The transaction's partitions
// shrink as their markers are written (DescribeTransactions shows what is
// left). The markers carry the coordinator epoch (the leader epoch of the
// __transaction_state partition), so a deposed coordinator's markers are
// refused; a coordinator that took the partition up resumes them from the
// Prepare* record. Re-sending a marker is harmless: a partition leader
// ignores a marker for a producer epoch it has already ended.

const (
	markerMinBackoff = 100 * time.Millisecond
	markerMaxBackoff = 5 * time.Second
)

// finish writes the markers of prepared, then done, for t served under o.
func (c *Coordinator) finish(o *ownedPartition, t *txn, prepared, done transit) {
	commit := prepared.to == statePrepareCommit
	log := c.log.With("transactional_id", t.id, "producer_id", prepared.producerID, "producer_epoch", prepared.epoch,
		"result", outcome(commit), "coordinator_epoch", o.epoch)
	remaining := prepared.parts
	for backoff := markerMinBackoff; len(remaining) > 0; backoff = min(2*backoff, markerMaxBackoff) {
		ctx, cancel := context.WithTimeout(o.ctx, c.cfg.WriteTimeout)
		err := c.markers.Write(ctx, prepared.producerID, prepared.epoch, o.epoch, commit, remaining)
		cancel()
		written, retry, stop := c.sortMarkerResult(err, remaining)
		t.mu.Lock()
		for _, tp := range written {
			delete(t.parts, tp)
		}
		t.mu.Unlock()
		if stop != nil {
			// Kafka's reading: the producer or the coordinator moved
			// on, so these markers are no longer this coordinator's to
			// write; the transaction stays in Prepare* until the
			// partition's next load.
			log.Warn("stopped writing transaction markers", "err", stop)
			return
		}
		if len(retry) == 0 {
			break
		}
		log.Info("writing transaction markers failed; retrying", "partitions", len(retry), "err", err, "backoff", backoff)
		remaining = retry
		if !sleep(o.ctx, backoff) {
			return
		}
	}
	for backoff := markerMinBackoff; ; backoff = min(2*backoff, markerMaxBackoff) {
		err := c.commit(o.ctx, t, done, true)
		if err == nil {
			log.Debug("transaction completed", "partitions", len(prepared.parts))
			return
		}
		if o.ctx.Err() != nil || !c.owns(t) {
			log.Info("transaction markers written but not its completion; the partition's next owner completes it", "err", err)
			return
		}
		log.Warn("writing a transaction's completion failed; retrying", "err", err, "backoff", backoff)
		if !sleep(o.ctx, backoff) {
			return
		}
	}
}

// sortMarkerResult sorts the partitions of a Markers.Write call by its
// error: written, to retry, or stop (non-nil) when no partition is to be
// written any more.
func (c *Coordinator) sortMarkerResult(err error, sent []TopicPartition) (written, retry []TopicPartition, stop error) {
	if err == nil {
		return sent, nil, nil
	}
	var pe PartitionErrors
	if !errors.As(err, &pe) {
		if markerStops(err) {
			return nil, nil, err
		}
		retry = c.stillExisting(sent, &written)
		return written, retry, nil
	}
	var again []TopicPartition
	for _, tp := range sent {
		perr := pe[tp]
		switch {
		case perr == nil, errors.Is(perr, kerr.UnsupportedForMessageFormat), errors.Is(perr, kerr.UnsupportedVersion):
			// Kafka drops partitions that cannot take markers: the
			// producer could not have written to them either.
			written = append(written, tp)
		case markerStops(perr):
			stop = perr
		default:
			again = append(again, tp)
		}
	}
	if stop != nil {
		return written, nil, stop
	}
	retry = c.stillExisting(again, &written)
	return written, retry, nil
}

// markerStops: the partition leader refuses the marker for good (the
// producer's epoch, or the coordinator's, is newer).
func markerStops(err error) bool {
	return errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionCoordinatorFenced)
}

// stillExisting returns the partitions of parts whose topic still has
// them; the others (deleted) count as written, appended to written.
func (c *Coordinator) stillExisting(parts []TopicPartition, written *[]TopicPartition) []TopicPartition {
	var out []TopicPartition
	for _, tp := range parts {
		if tp.Partition < c.topics.Partitions(tp.Topic) {
			out = append(out, tp)
		} else {
			*written = append(*written, tp)
		}
	}
	return out
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
