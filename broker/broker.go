// Package broker is Chronik's Kafka protocol front end: the listener, the
// per-connection request loop and one file per API key. Every request and
// response is encoded and decoded by franz-go's kmsg.
package broker

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/chronik-go/chronik/broker/group"
	"github.com/chronik-go/chronik/broker/txn"
	"github.com/chronik-go/chronik/internal/inflate"
	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/replication"
	"github.com/chronik-go/chronik/security"
	"github.com/chronik-go/chronik/tier1"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// Broker is one standalone Chronik broker.
type Broker struct {
	cfg Config
	log *slog.Logger
	fs  vfs.FS
	wal *tier1.WAL

	groups *group.Coordinator // consumer groups and their committed offsets (broker/group)
	txns   *txn.Coordinator   // transactions (broker/txn)

	metrics *metrics // always set; exported only when cfg.Metrics is

	reqBytes *semaphore.Weighted // request bytes held across all connections

	replicaAddrs replicaAddrs // what brokers' internal hosts resolve to (replica_addr.go)

	// adminMu serialises metadata changes (topic create, delete, alter) so
	// each is persisted before it becomes visible.
	adminMu sync.Mutex
	meta    metaState // guarded by adminMu

	mu         sync.RWMutex // guards the following
	topics     map[string]*topic
	topicsByID map[[16]byte]*topic

	pidMu   sync.Mutex // guards the following
	pidNext int64      // next producer ID to hand out
	pidMax  int64      // IDs below pidMax are reserved in meta

	lnMu       sync.Mutex   // guards the following
	ln         net.Listener // the first listener's
	lns        []*listener
	conns      map[*conn]struct{}
	connsPerIP map[netip.Addr]int // open connections by remote IP
	closed     bool
	closing    chan struct{} // closed by Close
	connWG     sync.WaitGroup
	started    time.Time
	acceptWG   sync.WaitGroup

	unlock func() // releases the data dir lock

	// identified is set once the data directory is known to belong to the
	// controller quorum's cluster (always, standalone): identity.go.
	identified atomic.Bool
	walErr     atomic.Pointer[error] // the WAL failed for good (walFailed)
	fatal      chan struct{}         // closed by fail: the broker refuses to go on
	fatalOnce  sync.Once
	fatalErr   error

	// Tier 2 (retention.go).
	files     *tier2.FileCache
	sealKick  chan struct{} // capacity 1
	cleanKick chan struct{} // capacity 1
	maintWG   sync.WaitGroup

	maintMu      sync.Mutex   // guards the following
	deletedParts []*partition // deleted topics' partitions whose segments are not yet removed

	unknownDirs map[string]bool // partition directories of no known topic, warned of once; owned by the cleaner

	tier tierState // Tier 3 (tier3.go); tier.arch is nil without it

	sec securityStore // a standalone broker's users and ACLs (security.go)

	scrub scrubState // the scrubber (scrub.go)

	// Cluster mode (cluster.go); ctl is nil for a standalone broker.
	ctl           *replication.Controller
	reconciledMu  sync.Mutex    // guards the following
	reconciledIdx uint64        // the metadata index the local topics reflect
	reconciled    chan struct{} // closed and replaced when reconciledIdx grows
	fetchers      fetchers      // replica fetchers (replica_fetcher.go)
	// adoptTried: when each unknown local topic was last offered to the
	// controller for adoption. Owned by the reconciler goroutine.
	adoptTried map[[16]byte]time.Time
	// offsetsCreating: a proposal creating __consumer_offsets is out.
	offsetsCreating atomic.Bool
	// offsetsRaising: reassignments raising its replication are out.
	offsetsRaising atomic.Bool
	// The same for __transaction_state.
	txnStateCreating, txnStateRaising atomic.Bool
	// reconcileHold, set only by tests, holds the reconciler until it is
	// closed: a broker slow to apply the controller's changes.
	reconcileHold atomic.Pointer[chan struct{}]
	peers         peerClients // clients of the other brokers
	markers       *txnMarkers
	// standaloneData: a cluster broker started on a data directory that
	// was not yet a member of a cluster but has a cluster ID (a standalone
	// broker's, or one a restore wrote): its topics are adopted with
	// min.insync.replicas 1. Set by open.
	standaloneData bool
}

// topic is a topic's in-memory state. name and id never change.
type topic struct {
	name string
	id   [16]byte

	// partitions and configs are replaced, never mutated, under Broker.mu.
	partitions []*partition
	configs    map[string]string

	// Settings read on the produce path, kept in sync with configs.
	maxMessageBytes atomic.Int32
	logAppendTime   atomic.Bool
	segmentBytes    atomic.Int32
	tsBeforeMax     atomic.Int64 // message.timestamp.before.max.ms
	tsAfterMax      atomic.Int64 // message.timestamp.after.max.ms

	producerLimits producerLimits // idempotent producer state bounds (Config)

	fs       vfs.FS         // the broker's filesystem
	cluster  bool           // a cluster broker's topic: batches carry leader epochs
	segRoot  string         // <data>/segments
	sealKick chan struct{}  // nudges the sealer (non-blocking sends)
	arch     *tier3.Archive // nil without Tier 3
}

// New opens the data directory, recovers the WAL and the topic metadata, and
// returns a broker that is ready to Start.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:         cfg,
		log:         cfg.Logger,
		fs:          cfg.FS,
		topics:      make(map[string]*topic),
		topicsByID:  make(map[[16]byte]*topic),
		conns:       make(map[*conn]struct{}),
		connsPerIP:  make(map[netip.Addr]int),
		closing:     make(chan struct{}),
		files:       tier2.NewFileCache(cfg.MaxOpenSegmentFiles),
		sealKick:    make(chan struct{}, 1),
		cleanKick:   make(chan struct{}, 1),
		fatal:       make(chan struct{}),
		adoptTried:  make(map[[16]byte]time.Time),
		unknownDirs: make(map[string]bool),
		scrub:       scrubState{kick: make(chan struct{}, 1)},
	}
	b.peers.b = b
	b.identified.Store(cfg.Cluster == nil)
	b.metrics = newMetrics(b)
	b.reqBytes = semaphore.NewWeighted(cfg.QueuedMaxRequestBytes)
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if b.fs == nil {
		b.fs = vfs.Default
	}
	if err := b.fs.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: create data dir %s: %w", cfg.DataDir, err)
	}
	if cfg.FS == nil {
		unlock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		b.unlock = unlock
	}
	err := b.openTier3()
	if err == nil {
		_, err = b.open()
	}
	if err == nil && cfg.Cluster != nil {
		if err = b.startCluster(); err != nil {
			b.wal.Close()
		}
	}
	if err != nil {
		b.files.Close()
		if b.unlock != nil {
			b.unlock()
		}
		return nil, err
	}
	b.startMaintenance()
	if cfg.Metrics != nil {
		// Registered only now: the scrape-time gauges read state that open
		// builds without locks.
		if err := b.metrics.register(cfg.Metrics); err != nil {
			b.Close()
			return nil, fmt.Errorf("broker: register metrics: %w", err)
		}
	}
	return b, nil
}

// open loads the metadata and recovers the WAL.
func (b *Broker) open() (*Broker, error) {
	cfg := b.cfg
	st, err := loadMeta(b.fs, cfg.DataDir, cfg.Cluster != nil, cfg.FS == nil && hadRaftState(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	b.meta = st
	// A cluster broker reads it too: a standalone broker's users and
	// ACLs, adopted when it grows into a cluster (adoptSecurity).
	if err := b.loadSecurity(); err != nil {
		return nil, err
	}
	b.standaloneData = cfg.Cluster != nil && st.ClusterID != "" && !st.Member
	for _, mt := range st.Topics {
		id, err := parseTopicID(mt.ID)
		if err != nil {
			return nil, err
		}
		t := b.newTopic(mt.Name, id, mt.Partitions, mt.Configs, 0)
		b.topics[t.name] = t
		b.topicsByID[id] = t
	}
	b.pidNext, b.pidMax = st.NextProducerID, st.NextProducerID

	start := time.Now()
	nsegs, err := b.loadPartitions()
	if err != nil {
		return nil, err
	}
	b.log.Info("loaded sealed segments", "segments", nsegs, "took", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	walDir := filepath.Join(cfg.DataDir, "wal") // tier1.Open creates and syncs it
	var skipped int
	wal, rep, err := tier1.Open(tier1.Config{
		Dir:     walDir,
		FS:      b.fs,
		Profile: cfg.WALProfile,
		MaxWait: cfg.FsyncBatchTimeout,
		Fsync:   cfg.Fsync,
		Logger:  b.log,

		SegmentBytes: cfg.WALSegmentBytes,
		OnGroup:      b.metrics.observeGroup,
		OnFailed:     b.walFailed,
	}, func(e tier1.Entry) error {
		t := b.topicsByID[e.TP.TopicID]
		if t == nil || int(e.TP.Partition) >= len(t.partitions) {
			skipped++ // a deleted topic's entries
			return nil
		}
		return t.partitions[e.TP.Partition].replay(e)
	})
	if err != nil {
		return nil, fmt.Errorf("broker: recover wal: %w", err)
	}
	b.wal = wal
	b.metrics.wal.Store(wal)
	for _, t := range b.topics {
		for _, p := range t.partitions {
			p.finishRecovery()
			if err := p.saveEpochs(); err != nil {
				return nil, fmt.Errorf("broker: checkpoint leader epochs of %s/%d: %w", t.name, p.index, err)
			}
		}
	}
	for _, c := range rep.Corruptions {
		b.log.Error("wal corruption found; the damaged entries are not served", "segment", c.Segment, "offset", c.Offset, "reason", c.Reason)
	}
	b.log.Info("recovered wal", "segments", rep.Segments, "entries", rep.Entries, "truncated_bytes", rep.TruncatedBytes,
		"corruptions", len(rep.Corruptions), "deleted_topic_entries", skipped, "topics", len(b.topics), "took", time.Since(start).Round(time.Millisecond))
	if b.groups, err = b.startGroups(); err != nil {
		wal.Close()
		return nil, err
	}
	if b.txns, err = b.startTxns(); err != nil {
		b.groups.Close()
		wal.Close()
		return nil, err
	}
	return b, nil
}

func (b *Broker) newTopic(name string, id [16]byte, partitions int32, configs map[string]string, firstPartition int32) *topic {
	t := &topic{name: name, id: id, configs: configs, fs: b.fs, cluster: b.cfg.Cluster != nil, segRoot: b.segRoot(), sealKick: b.sealKick, arch: b.tier.arch,
		producerLimits: producerLimits{expireMs: b.cfg.ProducerIDExpiration.Milliseconds(), max: b.cfg.ProducerIDsMaxPerPartition}}
	if t.configs == nil {
		t.configs = map[string]string{}
	}
	b.applyTopicSettings(t)
	for i := firstPartition; i < partitions; i++ {
		t.partitions = append(t.partitions, newPartition(t, i))
	}
	return t
}

// applyTopicSettings refreshes the produce-path copies of t's configs.
func (b *Broker) applyTopicSettings(t *topic) {
	v, _ := b.effectiveConfig(t, "max.message.bytes")
	n, _ := strconv.Atoi(v)
	t.maxMessageBytes.Store(int32(n))
	v, _ = b.effectiveConfig(t, "message.timestamp.type")
	t.logAppendTime.Store(v == "LogAppendTime")
	t.segmentBytes.Store(int32(b.configInt(t, "segment.bytes")))
	t.tsBeforeMax.Store(b.configInt(t, "message.timestamp.before.max.ms"))
	t.tsAfterMax.Store(b.configInt(t, "message.timestamp.after.max.ms"))
}

// inflateLimit bounds t's batches' records once inflated, on every path
// that inflates them.
func (t *topic) inflateLimit() int { return inflate.Limit(int64(t.maxMessageBytes.Load())) }

// produceRules are what a producer's batch to t is held to at now (unix
// milliseconds).
func (t *topic) produceRules(now int64) batchRules {
	return batchRules{
		inflateLimit:  t.inflateLimit(),
		client:        true,
		logAppendTime: t.logAppendTime.Load(),
		now:           now,
		beforeMax:     t.tsBeforeMax.Load(),
		afterMax:      t.tsAfterMax.Load(),
	}
}

// Start binds the Kafka listeners and serves connections until Close.
func (b *Broker) Start() error {
	specs, err := b.listenerSpecs()
	if err != nil {
		return err
	}
	var lns []*listener
	closeAll := func() {
		for _, l := range lns {
			l.ln.Close()
		}
	}
	for _, spec := range specs {
		ln, err := net.Listen("tcp", spec.Addr())
		if err != nil {
			closeAll()
			return fmt.Errorf("broker: listen on %s: %w", spec, err)
		}
		l := &listener{Listener: spec, ln: ln}
		b.advertise(l, len(lns) == 0)
		lns = append(lns, l)
	}
	b.lnMu.Lock()
	if b.closed {
		b.lnMu.Unlock()
		closeAll()
		return errors.New("broker: closed")
	}
	b.lns = lns
	b.ln = lns[0].ln
	b.started = time.Now()
	b.lnMu.Unlock()
	for _, l := range lns {
		b.acceptWG.Add(1)
		go b.acceptLoop(l)
	}
	if b.ctl != nil {
		// Registration waits until the data directory is known to belong
		// to the quorum's cluster.
		b.maintWG.Add(1)
		go b.identityLoop()
	}
	b.startSecurity()
	return nil
}

// Ready returns nil once the broker serves clients: its log is recovered,
// its sealed segments are loaded (both done by New) and its Kafka listener
// is up. Otherwise, and from Close on, it says why not.
func (b *Broker) Ready() error {
	b.lnMu.Lock()
	defer b.lnMu.Unlock()
	switch {
	case b.closed:
		return errors.New("broker closed")
	case b.ln == nil:
		return errors.New("kafka listener not started")
	case b.walErr.Load() != nil:
		return fmt.Errorf("the write-ahead log failed: %v", *b.walErr.Load())
	case b.ctl != nil && !b.ctl.Current():
		return errors.New("not joined to the cluster: no current lease from the controller quorum")
	}
	return nil
}

// Addr is the bound Kafka listener address, or nil before Start.
func (b *Broker) Addr() net.Addr {
	b.lnMu.Lock()
	defer b.lnMu.Unlock()
	if b.ln == nil {
		return nil
	}
	return b.ln.Addr()
}

func (b *Broker) acceptLoop(l *listener) {
	defer b.acceptWG.Done()
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-b.closing:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				b.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			b.log.Error("accept failed; listener stopped", "err", err)
			return
		}
		backoff = 0
		ip := remoteIP(nc)
		b.lnMu.Lock()
		if b.closed {
			b.lnMu.Unlock()
			nc.Close()
			return
		}
		if reason := b.admitLocked(ip); reason != "" {
			// As Kafka: accepted, then closed at once, so the client sees
			// a closed connection rather than a full backlog.
			b.lnMu.Unlock()
			nc.Close()
			b.metrics.connsClosed.inc(reason)
			b.log.Debug("refusing connection", "remote", nc.RemoteAddr().String(), "reason", reason)
			continue
		}
		switch {
		case l.Protocol == security.SaslSSL && b.cfg.SASLServerTLS != nil:
			nc = tls.Server(nc, b.cfg.SASLServerTLS) // handshakes in serve
		case l.Protocol.TLS():
			nc = tls.Server(nc, b.cfg.ServerTLS)
		}
		c := newConn(b, nc, l, ip)
		b.conns[c] = struct{}{}
		b.connsPerIP[ip]++
		b.connWG.Add(1)
		b.lnMu.Unlock()
		go func() {
			defer b.connWG.Done()
			c.serve()
			b.lnMu.Lock()
			delete(b.conns, c)
			if b.connsPerIP[ip]--; b.connsPerIP[ip] <= 0 {
				delete(b.connsPerIP, ip)
			}
			b.lnMu.Unlock()
		}()
	}
}

// Close stops the listener, closes every connection, waits for in-flight
// appends to become durable and closes the WAL.
func (b *Broker) Close() error {
	b.lnMu.Lock()
	if b.closed {
		b.lnMu.Unlock()
		return nil
	}
	b.closed = true
	b.lnMu.Unlock()
	var ctlErr error
	if b.ctl != nil {
		// Controlled shutdown first: the controller moves this broker's
		// partitions while it still answers.
		ctlErr = b.ctl.Close()
	}
	b.lnMu.Lock()
	close(b.closing)
	for _, l := range b.lns {
		l.ln.Close()
	}
	for c := range b.conns {
		c.nc.Close()
	}
	b.lnMu.Unlock()
	b.groups.Close() // answers members parked in a join or sync round
	b.txns.Close()
	b.peers.close()
	b.acceptWG.Wait()
	b.connWG.Wait()
	b.maintWG.Wait()
	b.fetchers.wg.Wait()
	if b.cfg.Metrics != nil {
		b.metrics.unregister(b.cfg.Metrics)
	}
	err := b.wal.Close()
	b.files.Close()
	if b.unlock != nil {
		b.unlock()
	}
	if err == nil {
		err = ctlErr
	}
	return err
}

func (b *Broker) clusterID() string {
	if b.ctl != nil {
		return b.ctl.State().ClusterID
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	return b.meta.ClusterID
}

// lookupTopic returns the named topic, or nil.
func (b *Broker) lookupTopic(name string) *topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.topics[name]
}

func (b *Broker) lookupTopicID(id [16]byte) *topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.topicsByID[id]
}

// partitionOf returns the partition or nil.
func (b *Broker) partitionOf(t *topic, p int32) *partition {
	if t == nil {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if p < 0 || int(p) >= len(t.partitions) {
		return nil
	}
	return t.partitions[p]
}

// snapshotTopics returns every topic and its partition count.
func (b *Broker) snapshotTopics() []*topic {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		out = append(out, t)
	}
	return out
}

func (b *Broker) topicPartitionCount(t *topic) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(t.partitions)
}

func (b *Broker) topicConfigs(t *topic) map[string]string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return t.configs
}

func topicIDString(id [16]byte) string { return hex.EncodeToString(id[:]) }

// ctxUntilClose returns a context cancelled when the broker closes.
func (b *Broker) ctxUntilClose(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-b.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
