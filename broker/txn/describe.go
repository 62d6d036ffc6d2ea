package txn

import (
	"regexp"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTransactions: v0
//
// Behavior:
//   - mayDescribe (DESCRIBE on the transactional ID) false:
//     TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Empty ID: INVALID_REQUEST.
//     Unknown ID: TRANSACTIONAL_ID_NOT_FOUND.
//   - The partitions are those still without markers while the transaction
//     is being ended. The caller drops the topics the principal may not
//     describe, as Kafka does.
func (c *Coordinator) DescribeTransactions(r *kmsg.DescribeTransactionsRequest, mayDescribe func(id string) bool) *kmsg.DescribeTransactionsResponse {
	resp := r.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range r.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		switch {
		case mayDescribe != nil && !mayDescribe(id):
			st.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		case id == "":
			st.ErrorCode = kerr.InvalidRequest.Code
		default:
			c.describe(id, &st)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

func (c *Coordinator) describe(id string, st *kmsg.DescribeTransactionsResponseTransactionState) {
	t, err := c.lookup(id)
	if err != nil {
		st.ErrorCode = codeOf(err).Code
		return
	}
	if t == nil {
		st.ErrorCode = kerr.TransactionalIDNotFound.Code
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == stateDead {
		st.ErrorCode = kerr.TransactionalIDNotFound.Code
		return
	}
	st.State = t.state.String()
	st.ProducerID = t.producerID
	st.ProducerEpoch = t.epoch
	st.TimeoutMillis = t.timeoutMs
	st.StartTimestamp = t.startMs
	for _, topic := range topicsOf(sortedParts(t.parts)) {
		st.Topics = append(st.Topics, kmsg.DescribeTransactionsResponseTransactionStateTopic{Topic: topic.Topic, Partitions: topic.Partitions})
	}
}

// ListTransactions: v0-2
//
// Behavior:
//   - The transactional IDs of every partition this coordinator serves,
//     sorted, that mayDescribe allows (DESCRIBE on the ID), filtered as
//     Kafka filters: by state names (exact; unknown ones are answered in
//     UnknownStateFilters and match nothing), producer IDs, v1+ a duration
//     (only transactions that started longer ago than it; IDs with no
//     transaction count as started at -1, as in Kafka), v2+ a transactional
//     ID pattern.
//   - While a partition is loading: COORDINATOR_LOAD_IN_PROGRESS.
//
// Deviations:
//   - The pattern (KIP-1152) is Go's RE2 syntax, matched against the whole
//     ID; an invalid one is INVALID_REGULAR_EXPRESSION.
func (c *Coordinator) ListTransactions(r *kmsg.ListTransactionsRequest, mayDescribe func(id string) bool) *kmsg.ListTransactionsResponse {
	resp := r.ResponseKind().(*kmsg.ListTransactionsResponse)
	states := make(map[kmsg.TransactionState]bool)
	for _, name := range r.StateFilters {
		if s, ok := stateNamed(name); ok {
			states[s] = true
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
		}
	}
	producers := make(map[int64]bool, len(r.ProducerIDFilters))
	for _, id := range r.ProducerIDFilters {
		producers[id] = true
	}
	duration := int64(-1)
	if r.Version >= 1 {
		duration = r.DurationFilterMillis
	}
	var pattern *regexp.Regexp
	if r.Version >= 2 && r.TransactionalIDPattern != nil && *r.TransactionalIDPattern != "" {
		var err error
		if pattern, err = regexp.Compile(`^(?:` + *r.TransactionalIDPattern + `)$`); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
	}

	now := nowMillis()
	var out []kmsg.ListTransactionsResponseTransactionState
	c.mu.RLock()
	if err := c.listableLocked(); err != nil {
		c.mu.RUnlock()
		resp.ErrorCode = codeOf(err).Code
		return resp
	}
	for _, t := range c.txns {
		t.mu.Lock()
		include := t.state != stateDead &&
			(len(producers) == 0 || producers[t.producerID]) &&
			(len(r.StateFilters) == 0 || states[t.state]) &&
			(duration < 0 || now-t.startMs > duration)
		if include {
			out = append(out, kmsg.ListTransactionsResponseTransactionState{
				TransactionalID:  t.id,
				ProducerID:       t.producerID,
				TransactionState: t.state.String(),
			})
		}
		t.mu.Unlock()
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b kmsg.ListTransactionsResponseTransactionState) int {
		return strings.Compare(a.TransactionalID, b.TransactionalID)
	})
	for _, st := range out {
		if (pattern == nil || pattern.MatchString(st.TransactionalID)) && (mayDescribe == nil || mayDescribe(st.TransactionalID)) {
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
	}
	return resp
}

// listableLocked returns why the coordinator cannot list now: closed, or a
// partition loading. c.mu is held.
func (c *Coordinator) listableLocked() error {
	if c.closed {
		return errorf(kerr.CoordinatorNotAvailable, "the transaction coordinator is shutting down")
	}
	for p, o := range c.owned {
		if !o.loaded {
			return errorf(kerr.CoordinatorLoadInProgress, "%s partition %d is loading", StateTopic, p)
		}
	}
	return nil
}

// stateNamed returns the state Kafka names name (exactly).
func stateNamed(name string) (kmsg.TransactionState, bool) {
	for s := stateEmpty; s <= statePrepareEpochFence; s++ {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}
