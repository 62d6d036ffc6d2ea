// Package group is Chronik's group coordinator: Kafka's classic group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), KIP-848's consumer
// protocol (ConsumerGroupHeartbeat), and committed offsets (OffsetCommit,
// OffsetFetch, OffsetDelete, DeleteGroups, expiry), kept as records of
// Kafka's formats in __consumer_offsets.
//
// The package sees the broker through two small interfaces: Log, the
// partitions of __consumer_offsets (append, read, end, and a notification
// when an append is durable), and Topics, the data topics a group commits
// and subscribes to. The broker's request handlers are thin adapters over
// the exported methods.
//
// Transactional offsets (TxnOffsetCommit, txn.go): a transactional
// producer's offsets are written to the group's partition as one
// transactional batch of the producer (Log.AppendTxn) and kept pending per
// group and producer, invisible to OffsetFetch (RequireStable answers
// UNSTABLE_OFFSET_COMMIT on their partitions), until the transaction's
// COMMIT or ABORT marker in that partition: live, the broker reports it
// with CompleteTxn once durable; loading, Read yields it as a control
// record in log order. A marker commits or drops the producer's offsets
// written before it; of a committed offset and a plain one, the later in
// the log wins, as in Kafka.
//
// Ownership: standalone (Config.Cluster false) the coordinator serves every
// group. In a cluster it serves the groups of the partitions of
// __consumer_offsets it leads, loaded from the log when it takes one up
// (SetLeadership) and dropped when it gives it up.
//
// Concurrency: Coordinator.mu guards the group map and ownership; each
// group's mutex guards that group. Lock order is a group's append lock
// (Coordinator.appendLocks), then Coordinator.mu, then group.mu. Nothing
// waits on the log or on a client while holding either of the last two:
// JoinGroup and SyncGroup park a buffered (capacity 1) channel in the member
// and wait for it in the reply, and OffsetCommit waits for durability in the
// reply, after a goroutine has applied the durable commit (so it is applied
// even if no reply is sent).
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// OffsetsTopic is the internal topic of committed offsets.
const OffsetsTopic = "__consumer_offsets"

// Record is one key and value (nil: a tombstone) of __consumer_offsets.
type Record struct {
	Key, Value []byte
}

// Log is __consumer_offsets as the coordinator sees it.
type Log interface {
	// Partitions returns the topic's partition count; 0 when it does not
	// exist.
	Partitions() int
	// Append enqueues records to partition p as one batch and returns the
	// write, whose offsets follow one another from its Base. It fails when
	// this broker may not write p (in a cluster: it does not lead it, or
	// too few replicas are in sync).
	Append(ctx context.Context, p int32, records []Record) (Write, error)
	// AppendTxn is Append for a transaction: one transactional batch
	// (attribute bit 0x10) of producer producerID at epoch, with no
	// sequence number (-1). The records count once a COMMIT marker of
	// that producer follows them in p; an ABORT marker drops them.
	AppendTxn(ctx context.Context, p int32, producerID int64, epoch int16, records []Record) (Write, error)
	// Read calls fn with every record of partition p below end, in offset
	// order, transaction markers (control records) included.
	Read(p int32, end int64, fn func(LogRecord)) error
	// End returns the end of what this broker holds of partition p.
	End(p int32) int64
}

// LogRecord is a record of __consumer_offsets as Read finds it, with what
// its batch's header says of it.
type LogRecord struct {
	Offset     int64
	Key, Value []byte
	// ProducerID is the producer of the record's batch; -1 when none.
	ProducerID int64
	// Transactional: the batch is part of ProducerID's transaction.
	// Control: the record is a transaction marker, its key a version
	// (int16) and a type (int16: 0 abort, 1 commit).
	Transactional, Control bool
}

// Write is an append on its way to durability.
type Write interface {
	// Base is the offset of the write's first record.
	Base() int64
	// Wait returns once the write is durable (in a cluster: replicated to
	// min.insync.replicas), or why it will not be.
	Wait(ctx context.Context) error
}

// Topics is the data topics as the coordinator sees them.
type Topics interface {
	// Partitions returns the partition count of topic name; 0 when
	// unknown.
	Partitions(name string) int32
	// ID returns topic name's ID.
	ID(name string) ([16]byte, bool)
	// Name returns the name of the topic with ID id.
	Name(id [16]byte) (string, bool)
	// Names returns every topic's name.
	Names() []string
}

// Config is the coordinator's settings.
type Config struct {
	// Cluster: serve only the groups of the __consumer_offsets partitions
	// handed over with SetLeadership. Otherwise every group.
	Cluster bool

	GroupMinSessionTimeout     time.Duration
	GroupMaxSessionTimeout     time.Duration
	GroupInitialRebalanceDelay time.Duration

	ConsumerGroupHeartbeatInterval time.Duration
	ConsumerGroupSessionTimeout    time.Duration

	// OffsetsRetention expires the committed offsets of empty groups
	// (offsets.retention.minutes); checked every
	// OffsetsRetentionCheckInterval (0: never).
	OffsetsRetention              time.Duration
	OffsetsRetentionCheckInterval time.Duration

	// MaxOffsetMetadata bounds a commit's metadata (Kafka's
	// offset.metadata.max.bytes, 4096 when 0).
	MaxOffsetMetadata int

	Logger *slog.Logger
}

// Coordinator is the group coordinator of one broker.
type Coordinator struct {
	cfg    Config
	log    *slog.Logger
	olog   Log
	topics Topics

	// ctx ends with Close: every wait of the coordinator's own is bound
	// by it.
	ctx     context.Context
	cancel  context.CancelFunc
	closing <-chan struct{} // ctx.Done()

	mu     sync.Mutex // guards the following
	groups map[string]*group
	closed bool
	// owned: in a cluster, the partitions of __consumer_offsets this
	// broker leads, by index; only the groups of loaded ones are served.
	owned  map[int32]*ownedPartition
	ownSeq uint64
	// txns: the producers with transactional offsets pending or in
	// flight, by partition of __consumer_offsets (txn.go), so a
	// transaction marker finds their groups without a scan.
	txns map[txnKey]*openTxn

	// appendLocks serialize, per group name (striped), the check and
	// enqueue of every __consumer_offsets write (commits, OffsetDelete,
	// DeleteGroups and expiry tombstones), so that the log order of a
	// group's writes is the order of their checks. Only the enqueue is
	// done under it, never the wait for durability. Lock order:
	// appendLock, then Coordinator.mu, then group.mu.
	appendLocks [64]sync.Mutex

	stopExpiry chan struct{}
	expiryDone chan struct{}
}

// New returns a coordinator over log and topics. Standalone it loads every
// group from the log now; in a cluster it serves nothing until
// SetLeadership hands it partitions.
func New(cfg Config, log Log, topics Topics) (*Coordinator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxOffsetMetadata <= 0 {
		cfg.MaxOffsetMetadata = maxOffsetMetadata
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{
		ctx:        ctx,
		cancel:     cancel,
		closing:    ctx.Done(),
		cfg:        cfg,
		log:        cfg.Logger,
		olog:       log,
		topics:     topics,
		groups:     make(map[string]*group),
		owned:      make(map[int32]*ownedPartition),
		txns:       make(map[txnKey]*openTxn),
		stopExpiry: make(chan struct{}),
		expiryDone: make(chan struct{}),
	}
	if !cfg.Cluster {
		records := 0
		for p := range log.Partitions() {
			n, err := c.replayPartition(int32(p), c.groups)
			if err != nil {
				return nil, err
			}
			records += n
		}
		c.indexTxnsLocked(c.groups)
		c.log.Info("recovered committed offsets", "records", records, "groups", len(c.groups))
	}
	go c.expiryLoop()
	return c, nil
}

// partitionOf returns name's partition of __consumer_offsets, or -1 when
// the topic does not exist.
func (c *Coordinator) partitionOf(name string) int32 {
	n := c.olog.Partitions()
	if n == 0 {
		return -1
	}
	return Partition(name, n)
}

// ctxUntilClose returns a context ended with parent or by Close.
func (c *Coordinator) ctxUntilClose(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
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
// none).
func codeOf(err error) *kerr.Error {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke
	}
	return kerr.UnknownServerError
}

// Close stops every timer and answers every parked waiter.
func (c *Coordinator) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	groups := c.groups
	c.mu.Unlock()
	c.cancel()
	close(c.stopExpiry)
	<-c.expiryDone
	for _, g := range groups {
		g.mu.Lock()
		g.stopLocked(kerr.CoordinatorNotAvailable)
		g.mu.Unlock()
	}
}

// stopLocked stops every timer of g and answers its parked members with
// code: the coordinator no longer serves g. g.mu is held.
func (g *group) stopLocked(code *kerr.Error) {
	g.stopGroupTimersLocked()
	for _, m := range g.members {
		if m.session != nil {
			m.session.Stop()
		}
		m.sessionSeq++
		g.failWaitersLocked(m, code)
	}
	if g.cg != nil {
		for _, m := range g.cg.members {
			stopCgMember(m)
		}
	}
}
