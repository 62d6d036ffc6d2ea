// Package txn is Chronik's transaction coordinator: Kafka's InitProducerId
// with a transactional ID, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
// DescribeTransactions and ListTransactions, with each transactional ID's
// state kept as a record of Kafka's format in the compacted internal topic
// __transaction_state (record.go).
//
// The package sees the broker through small interfaces: Log, the
// partitions of __transaction_state (the shape of group.Log); Markers,
// which writes COMMIT and ABORT control records to data partitions;
// Topics, the data topics; and a producer ID allocator. The broker's
// request handlers are thin adapters over the exported methods.
//
// States are Kafka's. A transactional ID is Empty after InitProducerId,
// Ongoing once it has added a partition, PrepareCommit or PrepareAbort once
// EndTxn decided the outcome, and CompleteCommit or CompleteAbort once the
// markers are written. PrepareEpochFence is the step of fencing an Ongoing
// transaction (InitProducerId of a new instance, a timeout, an operator's
// abort): the epoch is bumped and the transaction aborted; it is a pending
// state only, never written. Dead is the step of expiring an ID, written as
// a tombstone.
//
// Durability: a state change is decided under the ID's lock, which marks
// it pending; appended to the ID's partition of __transaction_state; and
// applied only once the Log says it is durable. The client is answered
// after that. While a change is pending, other requests for the ID get
// CONCURRENT_TRANSACTIONS, so one ID's writes are serialized and reach the
// log in the order they were decided. Once EndTxn's Prepare* record is
// durable the client is answered and a goroutine writes the markers
// (markers.go), retrying while the partition is owned, then the Complete*
// record.
//
// Ownership is as in package group: standalone (Config.Cluster false) the
// coordinator serves every transactional ID, loaded in New. In a cluster it
// serves those of the partitions of __transaction_state handed over with
// SetLeadership, loaded in the background (COORDINATOR_LOAD_IN_PROGRESS
// meanwhile), and drops them when it gives a partition up
// (NOT_COORDINATOR). A loaded transaction in PrepareCommit or PrepareAbort
// resumes its markers; an Ongoing one is kept, and aborted by the timeout
// loop if it is not ended in time.
//
// Concurrency: Coordinator.mu guards the map of transactional IDs and
// ownership; each txn's mu guards that ID's state. Lock order is
// Coordinator.mu, then txn.mu. A record is enqueued to the log under
// Coordinator.mu's read lock, after the ownership check: a partition
// cannot be given up and taken up again between the check and the append,
// so the next load reads every record appended under an earlier ownership.
// Log.Append must therefore only enqueue, never wait for anything that
// calls SetLeadership. Nothing waits for durability, for markers or for a
// producer ID under either lock. Every goroutine of the coordinator (loads, marker writers,
// timeout aborts, the timeout and expiry loop) is started under
// Coordinator.mu while it is not closed and counted in Coordinator.wg;
// Close ends their context and waits for them.
package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/chronik-go/chronik/broker/group"
)

// StateTopic is the internal topic of transaction state.
const StateTopic = "__transaction_state"

// DefaultPartitions is Kafka's transaction.state.log.num.partitions.
const DefaultPartitions = 50

// StateTopicConfigs are the configs Kafka enforces on __transaction_state:
// compacted (the latest record of each transactional ID is its state),
// uncompressed, no unclean leader election.
func StateTopicConfigs() map[string]string {
	return map[string]string{
		"cleanup.policy":                 "compact",
		"compression.type":               "uncompressed",
		"unclean.leader.election.enable": "false",
		"segment.bytes":                  "104857600",
	}
}

// Log is __transaction_state as the coordinator sees it: the same shape as
// group.Log. Records are group.Record; appends return a group.Write.
type Log = group.Log

// TopicPartition names a partition of a data topic (or of
// __consumer_offsets, for a transaction's offset commits).
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Markers writes transaction markers to data partitions (the broker sends
// WriteTxnMarkers to their leaders, or appends locally).
type Markers interface {
	// Write writes a COMMIT (commit true) or ABORT control record for
	// producerID and epoch to every partition in parts and returns once
	// each is durable on its leader, or the partitions it could not write
	// and why: a PartitionErrors, or one error for all of them. Unknown or
	// deleted topics count as written (Kafka drops markers for deleted
	// partitions). coordinatorEpoch is the leader epoch of the
	// __transaction_state partition. Writes are retried until they
	// succeed, so writing a marker twice must be harmless.
	Write(ctx context.Context, producerID int64, epoch int16, coordinatorEpoch int32, commit bool, parts []TopicPartition) error
}

// PartitionErrors is how Markers.Write reports the partitions it could not
// write, each with why (a kerr code, possibly wrapped, says whether to
// retry). Partitions of the call missing from it were written.
type PartitionErrors map[TopicPartition]error

func (e PartitionErrors) Error() string {
	for tp, err := range e {
		return fmt.Sprintf("txn: %d partitions without markers, e.g. %s[%d]: %v", len(e), tp.Topic, tp.Partition, err)
	}
	return "txn: no partition errors"
}

// Topics tells whether a topic partition exists.
type Topics interface {
	// Partitions returns the partition count of topic; 0 when unknown.
	Partitions(topic string) int32
}

// Config is the coordinator's settings. Zero values take Kafka's defaults
// (DefaultConfig).
type Config struct {
	// Cluster: serve only the transactional IDs of the partitions of
	// __transaction_state handed over with SetLeadership. Otherwise all,
	// loaded in New.
	Cluster bool

	// MaxTimeout is transaction.max.timeout.ms: InitProducerId with a
	// longer transaction timeout gets INVALID_TRANSACTION_TIMEOUT.
	MaxTimeout time.Duration
	// AbortCheckInterval is
	// transaction.abort.timed.out.transaction.cleanup.interval.ms: how
	// often transactions past their timeout are looked for and aborted.
	AbortCheckInterval time.Duration
	// IDExpiration is transactional.id.expiration.ms: a transactional ID
	// with no transaction ongoing and no update for this long is
	// forgotten (its record tombstoned). Negative: never.
	IDExpiration time.Duration
	// IDExpirationCheckInterval is
	// transaction.remove.expired.transaction.cleanup.interval.ms.
	IDExpirationCheckInterval time.Duration
	// MaxTransactionalIDs bounds the transactional IDs this coordinator
	// keeps (every partition it serves). Past it, InitProducerId of a new
	// ID gets COORDINATOR_NOT_AVAILABLE, which every client retries
	// (re-finding the coordinator), so producers wait for IDs to expire
	// rather than fail; the broker logs why. IDs loaded from the log are
	// kept even past it.
	MaxTransactionalIDs int
	// WriteTimeout bounds each wait for a __transaction_state write to be
	// durable and each Markers.Write call (Kafka's request.timeout.ms).
	WriteTimeout time.Duration
	// EndTxnWait is how long EndTxn waits, after the decision is
	// durable, for the markers and the completion before it answers
	// (end_txn.go); negative: not at all.
	EndTxnWait time.Duration

	Logger *slog.Logger
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		MaxTimeout:                15 * time.Minute,
		AbortCheckInterval:        10 * time.Second,
		IDExpiration:              7 * 24 * time.Hour,
		IDExpirationCheckInterval: time.Hour,
		MaxTransactionalIDs:       100000,
		WriteTimeout:              30 * time.Second,
		EndTxnWait:                time.Second,
	}
}

// withDefaults returns cfg with every zero setting set to its default.
func (cfg Config) withDefaults() Config {
	d := DefaultConfig()
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = d.MaxTimeout
	}
	if cfg.AbortCheckInterval == 0 {
		cfg.AbortCheckInterval = d.AbortCheckInterval
	}
	if cfg.IDExpiration == 0 {
		cfg.IDExpiration = d.IDExpiration
	}
	if cfg.IDExpirationCheckInterval == 0 {
		cfg.IDExpirationCheckInterval = d.IDExpirationCheckInterval
	}
	if cfg.MaxTransactionalIDs == 0 {
		cfg.MaxTransactionalIDs = d.MaxTransactionalIDs
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = d.WriteTimeout
	}
	if cfg.EndTxnWait == 0 {
		cfg.EndTxnWait = d.EndTxnWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Validate reports settings that cannot work.
func (cfg Config) Validate() error {
	switch {
	case cfg.MaxTimeout < 0 || cfg.MaxTimeout > math.MaxInt32*time.Millisecond:
		return fmt.Errorf("txn: MaxTimeout (transaction.max.timeout.ms) %v is outside 0..%v", cfg.MaxTimeout, math.MaxInt32*time.Millisecond)
	case cfg.AbortCheckInterval < 0:
		return fmt.Errorf("txn: AbortCheckInterval (transaction.abort.timed.out.transaction.cleanup.interval.ms) %v is negative", cfg.AbortCheckInterval)
	case cfg.IDExpirationCheckInterval < 0:
		return fmt.Errorf("txn: IDExpirationCheckInterval (transaction.remove.expired.transaction.cleanup.interval.ms) %v is negative", cfg.IDExpirationCheckInterval)
	case cfg.MaxTransactionalIDs < 0:
		return fmt.Errorf("txn: MaxTransactionalIDs %d is negative", cfg.MaxTransactionalIDs)
	case cfg.WriteTimeout < 0:
		return fmt.Errorf("txn: WriteTimeout %v is negative", cfg.WriteTimeout)
	}
	return nil
}

// Coordinator is the transaction coordinator of one broker.
type Coordinator struct {
	cfg            Config
	log            *slog.Logger
	stateLog       Log // __transaction_state
	markers        Markers
	topics         Topics
	nextProducerID func() (int64, error)

	// ctx ends with Close: every wait of the coordinator's own is bound
	// by it (through an ownership's ctx, its child).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the coordinator's goroutines (goLocked)

	// standalone is the one ownership of every partition when not in a
	// cluster.
	standalone *ownedPartition

	mu     sync.RWMutex // guards the following
	txns   map[string]*txn
	closed bool
	// owned: in a cluster, the partitions of __transaction_state this
	// broker leads, by index; only the IDs of loaded ones are served.
	owned  map[int32]*ownedPartition
	ownSeq uint64

	lastFullWarn atomic.Int64 // unix millis of the last MaxTransactionalIDs warning
}

// New returns a coordinator over log, writing markers with markers and
// allocating producer IDs with nextProducerID. Standalone it loads every
// transactional ID from the log now (and resumes the markers of
// transactions that were being ended); in a cluster it serves nothing
// until SetLeadership hands it partitions.
func New(cfg Config, log Log, markers Markers, topics Topics, nextProducerID func() (int64, error)) (*Coordinator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil || markers == nil || topics == nil || nextProducerID == nil {
		return nil, errors.New("txn: New needs a log, markers, topics and a producer ID allocator")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		cfg:            cfg,
		log:            cfg.Logger,
		stateLog:       log,
		markers:        markers,
		topics:         topics,
		nextProducerID: nextProducerID,
		ctx:            ctx,
		cancel:         cancel,
		txns:           make(map[string]*txn),
		owned:          make(map[int32]*ownedPartition),
	}
	c.standalone = &ownedPartition{loaded: true, ctx: ctx, cancel: func() {}}
	if !cfg.Cluster {
		records := 0
		for p := range log.Partitions() {
			txns, n, err := c.replayPartition(int32(p), 0)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("txn: loading %s partition %d: %w", StateTopic, p, err)
			}
			records += n
			for id, t := range txns {
				c.txns[id] = t
			}
		}
		c.log.Info("recovered transaction state", "records", records, "transactional_ids", len(c.txns))
	}
	c.mu.Lock()
	if !cfg.Cluster {
		c.resumeLocked(c.standalone, c.txns)
	}
	c.goLocked(c.loop)
	c.mu.Unlock()
	return c, nil
}

// goLocked runs fn in a goroutine Close waits for. c.mu is held (read or
// write) and c is not closed, so the Add happens before Close's Wait.
func (c *Coordinator) goLocked(fn func()) {
	c.wg.Go(fn)
}

// Close stops the coordinator: it ends every wait and retry of its own and
// waits for its goroutines. Requests still in flight are answered
// COORDINATOR_NOT_AVAILABLE.
func (c *Coordinator) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, t := range c.txns {
		t.mu.Lock()
		t.notifyLocked() // Abort's waiters
		t.mu.Unlock()
	}
}

// Partition returns transactionalID's partition of __transaction_state:
// Kafka's rule, the same as a group's of __consumer_offsets.
func Partition(transactionalID string, partitions int) int32 {
	return group.Partition(transactionalID, partitions)
}

// Error is a Kafka error code with a message; errors.As finds the code.
type Error struct {
	Code *kerr.Error
	Msg  string
}

func (e *Error) Error() string { return e.Code.Message + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.Code }

func errorf(code *kerr.Error, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// codeOf returns err's Kafka error code (UNKNOWN_SERVER_ERROR when it has
// none), nil for nil.
func codeOf(err error) *kerr.Error {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke
	}
	return kerr.UnknownServerError
}

// errCode is err's code for a response: 0 for nil. Old request versions
// (below fencedSince) know no PRODUCER_FENCED and get
// INVALID_PRODUCER_EPOCH, as Kafka answers them.
func errCode(err error, version, fencedSince int16) int16 {
	code := codeOf(err)
	if code == nil {
		return 0
	}
	if code == kerr.ProducerFenced && version < fencedSince {
		code = kerr.InvalidProducerEpoch
	}
	return code.Code
}

// nowMillis is the coordinator's clock, in Kafka's unit.
func nowMillis() int64 { return time.Now().UnixMilli() }
