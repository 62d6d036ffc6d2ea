package txn

import (
	"cmp"
	"math"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A transactional ID's states, numbered as Kafka writes them.
const (
	stateEmpty             = kmsg.TransactionStateEmpty
	stateOngoing           = kmsg.TransactionStateOngoing
	statePrepareCommit     = kmsg.TransactionStatePrepareCommit
	statePrepareAbort      = kmsg.TransactionStatePrepareAbort
	stateCompleteCommit    = kmsg.TransactionStateCompleteCommit
	stateCompleteAbort     = kmsg.TransactionStateCompleteAbort
	stateDead              = kmsg.TransactionStateDead
	statePrepareEpochFence = kmsg.TransactionStatePrepareEpochFence

	// noPending: no transition is being written.
	noPending kmsg.TransactionState = -1
)

// maxTxnPartitions bounds the partitions of one transaction, so its record
// stays well under the default max.message.bytes (1 MiB): about 10 bytes a
// partition plus its topic's name once.
const maxTxnPartitions = 50000

// validFrom reports whether Kafka allows a transition from from to to.
func validFrom(to, from kmsg.TransactionState) bool {
	switch to {
	case stateEmpty, stateDead:
		return from == stateEmpty || from == stateCompleteCommit || from == stateCompleteAbort
	case stateOngoing:
		return from == stateOngoing || from == stateEmpty || from == stateCompleteCommit || from == stateCompleteAbort
	case statePrepareCommit, statePrepareAbort, statePrepareEpochFence:
		return from == stateOngoing
	case stateCompleteCommit:
		return from == statePrepareCommit
	case stateCompleteAbort:
		return from == statePrepareAbort
	}
	return false
}

// epochExhausted: the epoch may not be bumped by InitProducerId any more
// (Kafka keeps MaxInt16 for fencing the last one); the next
// InitProducerId gets a new producer ID.
func epochExhausted(epoch int16) bool { return epoch >= math.MaxInt16-1 }

// txn is one transactional ID's state.
type txn struct {
	id   string
	part int32  // its partition of __transaction_state
	gen  uint64 // the ownership it was loaded or created under

	mu         sync.Mutex // guards the following
	producerID int64
	// prevProducerID is the producer ID before the last InitProducerId
	// (another one after a rotation), so that a retried InitProducerId
	// of the old one is recognized (KIP-360); -1 when unknown.
	prevProducerID int64
	epoch          int16
	// lastEpoch is the epoch before the last InitProducerId bump, so that
	// a retry of it gets the same answer; -1 when unknown. Not written
	// (as in Kafka): a retry across a coordinator move is fenced.
	lastEpoch    int16
	timeoutMs    int32
	state        kmsg.TransactionState
	parts        map[TopicPartition]struct{}
	startMs      int64 // when the transaction began; -1: none
	lastUpdateMs int64
	// pending is the state of the transition being written (noPending:
	// none). Invariant: at most one transition of an ID is in flight, so
	// its writes reach the log in the order they were decided; requests
	// meanwhile get CONCURRENT_TRANSACTIONS.
	pending kmsg.TransactionState
	// failedFence: a fence's epoch bump was applied here but its
	// PrepareAbort was not written; the next fence does not bump again
	// (the bumped epoch was never handed out).
	failedFence bool
	// changed is closed and replaced whenever a transition is applied, or
	// the coordinator stops serving the ID (Abort waits on it).
	changed chan struct{}
}

func newTxn(id string, part int32, gen uint64) *txn {
	return &txn{
		id:             id,
		part:           part,
		gen:            gen,
		producerID:     -1,
		prevProducerID: -1,
		epoch:          -1,
		lastEpoch:      -1,
		startMs:        -1,
		pending:        noPending,
		changed:        make(chan struct{}),
	}
}

// transit is a decided transition: the record to write and, once it is
// durable, the state to apply.
type transit struct {
	to             kmsg.TransactionState
	producerID     int64
	prevProducerID int64
	epoch          int16
	lastEpoch      int16
	timeoutMs      int32
	parts          []TopicPartition // sorted
	startMs        int64
	lastUpdateMs   int64
	// fence: the PrepareAbort of a fence, whose failure sets failedFence.
	fence bool
}

// currentLocked returns a transition to to that changes nothing else.
func (t *txn) currentLocked(to kmsg.TransactionState, nowMs int64) transit {
	return transit{
		to:             to,
		producerID:     t.producerID,
		prevProducerID: t.prevProducerID,
		epoch:          t.epoch,
		lastEpoch:      t.lastEpoch,
		timeoutMs:      t.timeoutMs,
		parts:          sortedParts(t.parts),
		startMs:        t.startMs,
		lastUpdateMs:   nowMs,
	}
}

// beginLocked marks tr pending: it is t's next write.
func (t *txn) beginLocked(tr transit) (transit, error) {
	if t.pending != noPending {
		return transit{}, errorf(kerr.ConcurrentTransactions, "transactional ID %q is changing to %v", t.id, t.pending)
	}
	if !validFrom(tr.to, t.state) {
		return transit{}, errorf(kerr.UnknownServerError, "transactional ID %q: no transition from %v to %v", t.id, t.state, tr.to)
	}
	t.pending = tr.to
	return tr, nil
}

// applyLocked installs tr, now durable.
func (t *txn) applyLocked(tr transit) {
	t.producerID = tr.producerID
	t.prevProducerID = tr.prevProducerID
	t.epoch = tr.epoch
	t.lastEpoch = tr.lastEpoch
	t.timeoutMs = tr.timeoutMs
	t.state = tr.to
	t.parts = make(map[TopicPartition]struct{}, len(tr.parts))
	for _, tp := range tr.parts {
		t.parts[tp] = struct{}{}
	}
	t.startMs = tr.startMs
	t.lastUpdateMs = tr.lastUpdateMs
	t.pending = noPending
	if tr.to == stateCompleteCommit || tr.to == stateCompleteAbort {
		t.failedFence = false
	}
	t.notifyLocked()
}

// notifyLocked wakes whoever waits for t to change.
func (t *txn) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// producerEpoch is a producer ID and epoch a request claims.
type producerEpoch struct {
	id    int64
	epoch int16
}

// validClaimLocked is KIP-360's check of the producer an InitProducerId
// claims to be: the current one (its epoch is checked by the bump), any
// when none was handed out yet, or the previous one at an exhausted epoch
// (a retry of the InitProducerId that rotated the producer ID).
func (t *txn) validClaimLocked(claim producerEpoch) bool {
	return t.epoch == -1 || claim.id == t.producerID ||
		(claim.id == t.prevProducerID && epochExhausted(claim.epoch))
}

// initAction is what InitProducerId does to a transactional ID.
type initAction int

const (
	initBump   initAction = iota // write the transition (an epoch bump)
	initRotate                   // allocate a producer ID, then rotateLocked
	initFence                    // abort the ongoing transaction with a bumped epoch
)

// prepareInitLocked decides InitProducerId's transition (Kafka's
// prepareInitProducerIdTransit). For initRotate and initFence the
// transition is marked pending but the caller completes it.
func (t *txn) prepareInitLocked(timeoutMs int32, claim *producerEpoch, nowMs int64) (transit, initAction, error) {
	if t.pending != noPending {
		return transit{}, 0, errorf(kerr.ConcurrentTransactions, "transactional ID %q is changing to %v", t.id, t.pending)
	}
	if claim != nil && !t.validClaimLocked(*claim) {
		return transit{}, 0, errorf(kerr.ProducerFenced, "transactional ID %q has producer ID %d, not %d", t.id, t.producerID, claim.id)
	}
	switch t.state {
	case statePrepareCommit, statePrepareAbort:
		return transit{}, 0, errorf(kerr.ConcurrentTransactions, "transactional ID %q is ending its transaction", t.id)
	case stateOngoing:
		tr, err := t.prepareFenceLocked()
		return tr, initFence, err
	case stateEmpty, stateCompleteCommit, stateCompleteAbort:
		if epochExhausted(t.epoch) && (claim == nil || claim.epoch == t.epoch) {
			t.pending = stateEmpty
			return transit{}, initRotate, nil
		}
		tr, err := t.bumpLocked(timeoutMs, claim, nowMs)
		return tr, initBump, err
	}
	return transit{}, 0, errorf(kerr.UnknownServerError, "transactional ID %q is in state %v", t.id, t.state)
}

// bumpLocked returns the Empty transition of InitProducerId with the
// epoch bumped (Kafka's prepareIncrementProducerEpoch).
func (t *txn) bumpLocked(timeoutMs int32, claim *producerEpoch, nowMs int64) (transit, error) {
	epoch, last, prev := t.epoch+1, int16(-1), t.producerID
	switch {
	case claim == nil:
	case t.epoch == -1 || claim.epoch == t.epoch:
		// The producer recovers from an error (KIP-360); none other
		// was initialized since.
		last = t.epoch
	case claim.epoch == t.lastEpoch:
		// A retry of the bump (or rotation) that answered it: the same
		// answer, and the same producer to retry from.
		epoch, last, prev = t.epoch, t.lastEpoch, t.prevProducerID
	default:
		return transit{}, errorf(kerr.ProducerFenced, "transactional ID %q is at epoch %d, not %d", t.id, t.epoch, claim.epoch)
	}
	if epoch != t.epoch && epochExhausted(t.epoch) {
		// prepareInitLocked rotates the producer ID instead.
		return transit{}, errorf(kerr.UnknownServerError, "transactional ID %q: epoch %d cannot be bumped", t.id, t.epoch)
	}
	tr := t.currentLocked(stateEmpty, nowMs)
	tr.prevProducerID = prev
	tr.epoch, tr.lastEpoch = epoch, last
	tr.timeoutMs = timeoutMs
	tr.parts, tr.startMs = nil, -1
	return t.beginLocked(tr)
}

// rotateLocked returns the Empty transition to producer ID newID at epoch
// 0, t's epoch being exhausted; prepareInitLocked marked it pending.
// claimed: the request named the old producer, whose epoch a retry names.
func (t *txn) rotateLocked(newID int64, timeoutMs int32, claimed bool, nowMs int64) transit {
	tr := t.currentLocked(stateEmpty, nowMs)
	tr.producerID, tr.prevProducerID = newID, t.producerID
	tr.epoch, tr.lastEpoch = 0, -1
	if claimed {
		tr.lastEpoch = t.epoch
	}
	tr.timeoutMs = timeoutMs
	tr.parts, tr.startMs = nil, -1
	return tr
}

// prepareFenceLocked marks t's ongoing transaction for an abort with the
// epoch bumped, and returns the producer and epoch the abort is ended
// with (endLocked applies the bump). After a failed fence the epoch is
// already bumped (Kafka's hasFailedEpochFence).
func (t *txn) prepareFenceLocked() (transit, error) {
	if t.state != stateOngoing {
		return transit{}, errorf(kerr.InvalidTxnState, "transactional ID %q has no ongoing transaction (%v)", t.id, t.state)
	}
	if t.pending != noPending {
		return transit{}, errorf(kerr.ConcurrentTransactions, "transactional ID %q is changing to %v", t.id, t.pending)
	}
	epoch := t.epoch
	if !t.failedFence {
		if epoch == math.MaxInt16 {
			return transit{}, errorf(kerr.UnknownServerError, "transactional ID %q: epoch %d cannot be bumped", t.id, epoch)
		}
		epoch++
	}
	t.pending = statePrepareEpochFence
	return transit{to: statePrepareEpochFence, producerID: t.producerID, epoch: epoch}, nil
}

// endLocked decides EndTxn's transition (Kafka's endTransaction): to
// PrepareCommit or PrepareAbort from Ongoing. done: the transaction
// already ended so (a retry), answered without a write. fromClient false
// is the abort of a fence prepared by prepareFenceLocked, with its epoch.
func (t *txn) endLocked(producerID int64, epoch int16, commit, fromClient bool, nowMs int64) (tr transit, done bool, err error) {
	fencing := !fromClient && t.pending == statePrepareEpochFence
	defer func() {
		if err != nil && fencing && t.pending == statePrepareEpochFence {
			t.pending = noPending
		}
	}()
	validEpoch := epoch == t.epoch
	if !fromClient {
		validEpoch = epoch >= t.epoch
	}
	switch {
	case t.producerID != producerID:
		return transit{}, false, errorf(kerr.InvalidProducerIDMapping, "transactional ID %q has producer ID %d, not %d", t.id, t.producerID, producerID)
	case !validEpoch:
		return transit{}, false, errorf(kerr.ProducerFenced, "transactional ID %q is at epoch %d, not %d", t.id, t.epoch, epoch)
	case t.pending != noPending && !fencing:
		return transit{}, false, errorf(kerr.ConcurrentTransactions, "transactional ID %q is changing to %v", t.id, t.pending)
	}
	invalid := func() (transit, bool, error) {
		return transit{}, false, errorf(kerr.InvalidTxnState, "transactional ID %q is %v: cannot %s", t.id, t.state, outcome(commit))
	}
	switch t.state {
	case stateOngoing:
		to := statePrepareAbort
		if commit {
			to = statePrepareCommit
		}
		if fencing {
			if commit {
				return transit{}, false, errorf(kerr.UnknownServerError, "transactional ID %q: a fence commits", t.id)
			}
			t.pending = noPending
			t.epoch, t.lastEpoch = epoch, -1
		}
		tr, err := t.beginLocked(t.currentLocked(to, nowMs))
		tr.fence = fencing
		return tr, false, err
	case stateCompleteCommit:
		if commit {
			return transit{}, true, nil
		}
		return invalid()
	case stateCompleteAbort:
		if !commit {
			return transit{}, true, nil
		}
		return invalid()
	case statePrepareCommit:
		if commit {
			return transit{}, false, errorf(kerr.ConcurrentTransactions, "transactional ID %q is committing", t.id)
		}
		return invalid()
	case statePrepareAbort:
		if !commit {
			return transit{}, false, errorf(kerr.ConcurrentTransactions, "transactional ID %q is aborting", t.id)
		}
		return invalid()
	case stateEmpty:
		return invalid()
	}
	return transit{}, false, errorf(kerr.UnknownServerError, "transactional ID %q is in state %v", t.id, t.state)
}

func outcome(commit bool) string {
	if commit {
		return "commit"
	}
	return "abort"
}

// completeLocked marks the transition that ends t's Prepare* state once
// its markers are written.
func (t *txn) completeLocked(nowMs int64) (transit, error) {
	to := stateCompleteAbort
	if t.state == statePrepareCommit {
		to = stateCompleteCommit
	}
	tr := t.currentLocked(to, nowMs)
	tr.parts = nil
	return t.beginLocked(tr)
}

// addLocked decides AddPartitionsToTxn's (and AddOffsetsToTxn's)
// transition to Ongoing with parts added. noop: they are in the ongoing
// transaction already, answered without a write.
func (t *txn) addLocked(producerID int64, epoch int16, parts []TopicPartition, nowMs int64) (tr transit, noop bool, err error) {
	switch {
	case t.producerID != producerID:
		return transit{}, false, errorf(kerr.InvalidProducerIDMapping, "transactional ID %q has producer ID %d, not %d", t.id, t.producerID, producerID)
	case t.epoch != epoch:
		return transit{}, false, errorf(kerr.ProducerFenced, "transactional ID %q is at epoch %d, not %d", t.id, t.epoch, epoch)
	case t.pending != noPending:
		return transit{}, false, errorf(kerr.ConcurrentTransactions, "transactional ID %q is changing to %v", t.id, t.pending)
	case t.state == statePrepareCommit || t.state == statePrepareAbort:
		return transit{}, false, errorf(kerr.ConcurrentTransactions, "transactional ID %q is ending its transaction", t.id)
	}
	union := make(map[TopicPartition]struct{}, len(t.parts)+len(parts))
	if t.state == stateOngoing {
		for tp := range t.parts {
			union[tp] = struct{}{}
		}
	}
	added := 0
	for _, tp := range parts {
		if _, ok := union[tp]; !ok {
			union[tp] = struct{}{}
			added++
		}
	}
	if added == 0 && t.state == stateOngoing {
		return transit{}, true, nil
	}
	if len(union) > maxTxnPartitions {
		return transit{}, false, errorf(kerr.UnknownServerError, "transactional ID %q: a transaction may have at most %d partitions", t.id, maxTxnPartitions)
	}
	tr = t.currentLocked(stateOngoing, nowMs)
	tr.parts = sortedParts(union)
	if t.state != stateOngoing {
		tr.startMs = nowMs
	}
	tr, err = t.beginLocked(tr)
	return tr, false, err
}

// verifyLocked is KIP-890's check by a partition leader that tp is in the
// producer's ongoing transaction.
func (t *txn) verifyLocked(producerID int64, epoch int16, tp TopicPartition) error {
	switch {
	case t.producerID != producerID:
		return errorf(kerr.InvalidProducerIDMapping, "transactional ID %q has producer ID %d, not %d", t.id, t.producerID, producerID)
	case t.epoch != epoch:
		return errorf(kerr.ProducerFenced, "transactional ID %q is at epoch %d, not %d", t.id, t.epoch, epoch)
	case t.state == statePrepareCommit || t.state == statePrepareAbort:
		return errorf(kerr.ConcurrentTransactions, "transactional ID %q is ending its transaction", t.id)
	}
	if _, ok := t.parts[tp]; !ok {
		return errorf(kerr.TransactionAbortable, "%s[%d] is not in transactional ID %q's transaction", tp.Topic, tp.Partition, t.id)
	}
	return nil
}

func sortedParts(set map[TopicPartition]struct{}) []TopicPartition {
	out := make([]TopicPartition, 0, len(set))
	for tp := range set {
		out = append(out, tp)
	}
	slices.SortFunc(out, compareParts)
	return out
}

func compareParts(a, b TopicPartition) int {
	if c := cmp.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}
