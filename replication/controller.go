package replication

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Peer is one controller voter.
type Peer struct {
	ID   int32
	Addr string // host:port of its controller listener, as the others reach it
}

// Config configures a node's controller.
type Config struct {
	NodeID   int32
	BindAddr string // the controller listener (CHRONIK_RAFT_ADDR)
	Peers    []Peer // every voter, this node included (CHRONIK_CLUSTER_PEERS)
	Dir      string // Raft's log, stable store and snapshots

	// HeartbeatInterval is how often a broker tells the controller it is
	// alive; a broker silent for SessionTimeout is fenced.
	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration

	// Raft timing; zero values take DefaultConfig's.
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	SnapshotThreshold    uint64
	SnapshotInterval     time.Duration // how often the threshold is checked

	// DataClusterID is the cluster ID this node's broker data directory
	// carries ("" for a new one), and DataMember whether that directory
	// was a member of the cluster's quorum rather than a standalone
	// broker's: both for forming a quorum (bootstrap.go).
	DataClusterID string
	DataMember    bool
	// Recover lets a quorum form anew although data directories show they
	// were members of a cluster whose Raft state is gone everywhere: the
	// operator's explicit step after losing the controller quorum.
	Recover bool
	// UncleanLeaderElection is the default of the topic config
	// unclean.leader.election.enable: while this node leads the quorum, a
	// partition whose ISR has no live member gets a live replica outside
	// it as leader, losing what that replica lacks.
	UncleanLeaderElection bool
	// MaxPartitions bounds the partitions of all topics together while
	// this node leads the quorum (CHRONIK_MAX_PARTITIONS); 0: unbounded.
	MaxPartitions int32
	// AutoLeaderRebalance, while this node leads the quorum, moves
	// partitions back to their preferred replicas every
	// LeaderImbalanceCheckInterval, for each broker that leads fewer than
	// (100 - LeaderImbalancePerBrokerPercentage) % of the partitions it is
	// preferred for (Kafka's auto.leader.rebalance.enable,
	// leader.imbalance.check.interval.seconds and
	// leader.imbalance.per.broker.percentage).
	AutoLeaderRebalance                bool
	LeaderImbalanceCheckInterval       time.Duration
	LeaderImbalancePerBrokerPercentage int

	// TLS, when set, makes the controller port mutual TLS: ServerTLS
	// (which must ask for and verify client certificates) accepts peers,
	// Raft's and controller calls, only with a certificate it verified;
	// ClientTLS presents this node's certificate when it dials one. AllowPeer, when set, must also accept the peer certificate's
	// principal ("User:CN=..."): a client certificate from the same CA is
	// not a broker's.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	AllowPeer func(principal string) bool

	Logger *slog.Logger
}

// DefaultConfig returns the timing defaults.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval:    200 * time.Millisecond,
		SessionTimeout:       1500 * time.Millisecond,
		RaftHeartbeatTimeout: 500 * time.Millisecond,
		RaftElectionTimeout:  500 * time.Millisecond,
		SnapshotThreshold:    1024,
		SnapshotInterval:     10 * time.Second,
	}
}

// Request is an operation a broker asks of the controller. The controller
// leader turns it into a deterministic Command (choosing assignments) and
// commits it through Raft.
type Request struct {
	CreateTopic      *CreateTopicRequest      `json:"create_topic,omitempty"`
	DeleteTopic      *TopicRef                `json:"delete_topic,omitempty"`
	CreatePartitions *CreatePartitionsRequest `json:"create_partitions,omitempty"`
	SetConfigs       *SetConfigs              `json:"set_configs,omitempty"`
	AllocProducerIDs *AllocProducerIDs        `json:"alloc_producer_ids,omitempty"`
	ChangeISR        *ChangeISR               `json:"change_isr,omitempty"`
	// Shutdown fences the calling broker at once (controlled shutdown), so
	// its partitions move without waiting for its session to time out.
	Shutdown *FenceBroker `json:"shutdown,omitempty"`
	// AdoptTopic takes in a topic a broker holds that the controller does
	// not know (adopt.go).
	AdoptTopic *AdoptTopicRequest `json:"adopt_topic,omitempty"`
	// MarkReplica reports one of the caller's replicas damaged or whole.
	MarkReplica *MarkReplica `json:"mark_replica,omitempty"`
	// Reassign moves a partition's replicas (reassign.go).
	Reassign *Reassign `json:"reassign,omitempty"`
	// Security alters SCRAM users or ACLs (security.go).
	Security *SecurityChange `json:"security,omitempty"`
	// ElectLeader elects a leader for a partition without a live one
	// (an unclean election when the leader is outside the ISR);
	// ElectPreferred moves partitions to their preferred replicas
	// (Kafka's ElectLeaders).
	ElectLeader    *ElectLeader    `json:"elect_leader,omitempty"`
	ElectPreferred *ElectPreferred `json:"elect_preferred,omitempty"`
}

// CreateTopicRequest creates a topic. The ID is chosen by the broker that
// took the client's request, so a retried request is recognised.
type CreateTopicRequest struct {
	Name              string            `json:"name"`
	ID                TopicID           `json:"id"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int16             `json:"replication_factor"`
	Configs           map[string]string `json:"configs,omitempty"`
	ValidateOnly      bool              `json:"validate_only,omitempty"`
}

// CreatePartitionsRequest grows a topic to Count partitions.
type CreatePartitionsRequest struct {
	TopicRef
	Count        int32 `json:"count"`
	ValidateOnly bool  `json:"validate_only,omitempty"`
}

type callRequest struct {
	Heartbeat *BrokerInfo `json:"heartbeat,omitempty"`
	Propose   *Request    `json:"propose,omitempty"`
	// Probe asks any node (leader or not) what it holds (bootstrap.go).
	Probe bool `json:"probe,omitempty"`
}

type callResponse struct {
	NotLeader bool   `json:"not_leader,omitempty"`
	Result    Result `json:"result"`
	// Heartbeats: the leader's applied index when it answered.
	Index uint64 `json:"index,omitempty"`
	// Refused: the heartbeat's registration was refused (another live
	// broker holds its ID).
	Refused *Error     `json:"refused,omitempty"`
	Probe   *ProbeInfo `json:"probe,omitempty"`
}

// ErrNoController means no controller leader could be reached before the
// deadline: the quorum is down or this node is cut off from it.
var ErrNoController = errors.New("no controller quorum reachable")

// ErrDuplicateBroker means another broker with this node's ID, from
// another data directory, is registered and live: this one must not
// replace it.
var ErrDuplicateBroker = errors.New("replication: another live broker has this node ID")

// Controller is a node's member of the controller quorum: it runs Raft,
// applies the metadata log, heartbeats on behalf of its broker, and while it
// leads, fences brokers that go silent.
type Controller struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *fsm
	mux   *mux
	calls *callConns // to the leader: heartbeats and forwarded proposals
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	peers map[int32]string

	self     atomic.Pointer[BrokerInfo] // set by Start; nil before
	stopping atomic.Bool                // controlled shutdown began: no more heartbeats

	opened      atomic.Bool // Raft is running: calls may use c.raft
	proposeMu   sync.Mutex  // serialises planning and committing on the leader
	leaderReady atomic.Bool // leader, and its FSM has caught up (barrier)
	// lastRebalance is when leaderLoop last checked the leaders' balance;
	// zero while this node does not lead. Only leaderLoop uses it.
	lastRebalance time.Time

	hbMu sync.Mutex
	hb   map[int32]time.Time // leader only: last heartbeat per broker

	leaseMu     sync.Mutex // guards the following
	validSent   time.Time  // send time of the newest acknowledged heartbeat whose index is applied here
	pendingSent time.Time
	pendingIdx  uint64

	probedMu sync.Mutex
	probed   map[int32]ProbeInfo // each peer's last answer to a Probe (bootstrap.go)
	process  string              // random per Open: tells this process's Probe answers from a twin's

	// raftClusterID is the cluster the Raft state belongs to, as the raft
	// directory records it (cluster_id); written by the leader loop only.
	raftClusterID string

	fatal     chan struct{} // closed by fail
	fatalOnce sync.Once
	fatalErr  error

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Open starts the node's Raft member. A node with no Raft state joins the
// quorum its peers hold, or forms a new one with them once every peer has
// answered that none holds state (bootstrap.go).
func Open(cfg Config) (*Controller, error) {
	d := DefaultConfig()
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = d.HeartbeatInterval
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = d.SessionTimeout
	}
	if cfg.RaftHeartbeatTimeout <= 0 {
		cfg.RaftHeartbeatTimeout = d.RaftHeartbeatTimeout
	}
	if cfg.RaftElectionTimeout <= 0 {
		cfg.RaftElectionTimeout = d.RaftElectionTimeout
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = d.SnapshotThreshold
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = d.SnapshotInterval
	}
	if cfg.SessionTimeout < 3*cfg.HeartbeatInterval {
		return nil, fmt.Errorf("replication: session timeout %v must be at least 3 heartbeat intervals (%v)", cfg.SessionTimeout, cfg.HeartbeatInterval)
	}
	c := &Controller{cfg: cfg, log: cfg.Logger, fsm: newFSM(), calls: newCallConns(cfg.ClientTLS), peers: map[int32]string{}, hb: map[int32]time.Time{},
		probed: map[int32]ProbeInfo{}, fatal: make(chan struct{}), closing: make(chan struct{}), process: rand.Text()}
	if c.log == nil {
		c.log = slog.Default()
	}
	var selfAddr string
	for _, p := range cfg.Peers {
		if _, dup := c.peers[p.ID]; dup {
			return nil, fmt.Errorf("replication: node id %d appears twice in the peers list", p.ID)
		}
		c.peers[p.ID] = p.Addr
		if p.ID == cfg.NodeID {
			selfAddr = p.Addr
		}
	}
	if selfAddr == "" {
		return nil, fmt.Errorf("replication: node id %d is not in the peers list %v: add %d@host:port for this node", cfg.NodeID, cfg.Peers, cfg.NodeID)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("replication: listen on %s: %w", cfg.BindAddr, err)
	}
	sec := muxTLS{server: cfg.ServerTLS, client: cfg.ClientTLS, allowPeer: cfg.AllowPeer, log: cfg.Logger}
	if c.mux, err = newMux(ln, selfAddr, c.serveCall, sec); err != nil {
		ln.Close()
		return nil, err
	}
	c.raftClusterID = readClusterIDFile(cfg.Dir)
	if err := c.checkPeersCluster(); err != nil {
		c.mux.Close()
		return nil, err
	}
	if err := c.checkNoTwin(); err != nil {
		c.mux.Close()
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		c.mux.Close()
		return nil, fmt.Errorf("replication: create %s: %w", cfg.Dir, err)
	}
	has, err := c.openRaft()
	if err != nil {
		c.mux.Close()
		if c.store != nil {
			c.store.Close()
		}
		return nil, err
	}
	c.opened.Store(true)
	c.wg.Add(1)
	go c.leaderLoop()
	if !has {
		c.wg.Add(1)
		go c.bootstrapLoop()
	}
	return c, nil
}

// openRaft starts Raft and reports whether this node had Raft state.
func (c *Controller) openRaft() (bool, error) {
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{c.log}, DisableTime: true})
	rc := raft.DefaultConfig()
	rc.LocalID = serverID(c.cfg.NodeID)
	rc.HeartbeatTimeout = c.cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = c.cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = c.cfg.RaftHeartbeatTimeout / 2
	// How often the leader tells followers the commit index when idle: the
	// delay before they apply a change (the default, 50 ms, slows metadata
	// propagation; 5 ms costs several percent of a core while idle).
	rc.CommitTimeout = 20 * time.Millisecond
	rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	rc.SnapshotInterval = c.cfg.SnapshotInterval
	rc.TrailingLogs = c.cfg.SnapshotThreshold
	rc.Logger = hl

	var err error
	c.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(c.cfg.Dir, "raft.db")})
	if err != nil {
		return false, fmt.Errorf("replication: open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.cfg.Dir, 2, hl)
	if err != nil {
		return false, fmt.Errorf("replication: open snapshots: %w", err)
	}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: c.mux, MaxPool: 3, Timeout: 2 * time.Second, Logger: hl,
		ServerAddressProvider: addrProvider(c.peers),
	})
	has, err := raft.HasExistingState(c.store, c.store, snaps)
	if err != nil {
		return false, fmt.Errorf("replication: read raft state: %w", err)
	}
	if c.raft, err = raft.NewRaft(rc, c.fsm, c.store, c.store, snaps, c.trans); err != nil {
		return false, fmt.Errorf("replication: start raft: %w", err)
	}
	return has, nil
}

func serverID(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

// peerAddr is where to call the controller node id: its entry in the
// peers list, else the address Raft knows it by.
func (c *Controller) peerAddr(id raft.ServerID, addr raft.ServerAddress) string {
	if n, err := strconv.ParseInt(string(id), 10, 32); err == nil {
		if a, ok := c.peers[int32(n)]; ok {
			return a
		}
	}
	return string(addr)
}

// addrProvider resolves peers from the configured list, so a peer whose
// address changed between restarts is still found.
type addrProvider map[int32]string

func (p addrProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	n, err := strconv.Atoi(string(id))
	if err == nil {
		if a, ok := p[int32(n)]; ok {
			return raft.ServerAddress(a), nil
		}
	}
	return "", fmt.Errorf("replication: unknown peer %q", id)
}

// Start begins heartbeating for this node's broker, which registers it.
func (c *Controller) Start(self BrokerInfo) {
	self.ID = c.cfg.NodeID
	self.RaftAddr = c.peers[c.cfg.NodeID]
	self.Incarnation = newIncarnation()
	c.self.Store(&self)
	c.wg.Add(1)
	go c.heartbeatLoop()
}

func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// State returns the newest applied metadata. It is immutable.
func (c *Controller) State() *State { return c.fsm.current() }

// Changed is nudged (capacity 1) after every apply.
func (c *Controller) Changed() <-chan struct{} { return c.fsm.changed }

// Self is this node's broker as it registers, or nil before Start.
func (c *Controller) Self() *BrokerInfo { return c.self.Load() }

// NodeID is this node's ID.
func (c *Controller) NodeID() int32 { return c.cfg.NodeID }

// LeaderID returns the controller leader's node ID, or -1 when unknown.
func (c *Controller) LeaderID() int32 {
	_, id := c.raft.LeaderWithID()
	n, err := strconv.Atoi(string(id))
	if err != nil {
		return -1
	}
	return int32(n)
}

// RaftState is Raft's view of this node: Leader, Follower, Candidate.
func (c *Controller) RaftState() string { return c.raft.State().String() }

// Current reports whether this node's metadata may be served as current:
// the controller acknowledged a heartbeat less than a session timeout ago
// (so the controller has not fenced it), this node has applied the log up
// to where the controller was then, and it is registered and unfenced. A
// node cut off from the quorum, or paused, stops being current before the
// controller can fence it and move its partitions.
func (c *Controller) Current() bool {
	st := c.State()
	self := c.self.Load()
	if self == nil || !st.Live(self.ID) || st.Brokers[self.ID].Incarnation != self.Incarnation {
		return false
	}
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	if !c.pendingSent.IsZero() && st.Index >= c.pendingIdx {
		c.validSent, c.pendingSent = c.pendingSent, time.Time{}
	}
	return !c.validSent.IsZero() && time.Since(c.validSent) < c.cfg.SessionTimeout-c.cfg.HeartbeatInterval
}

// WaitApplied blocks until this node has applied the log up to index.
func (c *Controller) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := c.fsm.appliedCh()
		if c.State().Index >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replication: waiting for metadata index %d (at %d): %w", index, c.State().Index, ctx.Err())
		case <-c.closing:
			return errors.New("replication: controller closed")
		}
	}
}

// Propose asks the controller leader to carry out req and waits until this
// node has applied the result, so the caller sees its own change. It
// retries through leader changes until ctx ends. The returned error is an
// *Error for refusals (with a Kafka code) or ErrNoController.
func (c *Controller) Propose(ctx context.Context, req *Request) (Result, error) {
	var resp callResponse
	if err := c.callLeader(ctx, &callRequest{Propose: req}, &resp); err != nil {
		return Result{}, err
	}
	if resp.Result.Err != nil {
		return resp.Result, resp.Result.Err
	}
	if err := c.WaitApplied(ctx, resp.Result.Index); err != nil {
		return resp.Result, err
	}
	return resp.Result, nil
}

// callLeader sends a call to the current controller leader, retrying with
// backoff while there is none or it moves.
func (c *Controller) callLeader(ctx context.Context, req *callRequest, resp *callResponse) error {
	backoff := 20 * time.Millisecond
	var last error
	for {
		addr, id := c.raft.LeaderWithID()
		if id != "" {
			*resp = callResponse{}
			var err error
			// By ID: Raft names the leader by the address it resolved
			// its own to, which is neither this node's peers entry nor,
			// with TLS, a name on its certificate. The peers list's
			// address is dialled for the same reason.
			if id == serverID(c.cfg.NodeID) {
				*resp = c.handle(ctx, req)
			} else {
				err = c.calls.call(ctx, c.peerAddr(id, addr), req, resp)
			}
			if err == nil && !resp.NotLeader {
				return nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("%w: %v", ErrNoController, last)
		case <-c.closing:
			return fmt.Errorf("%w: controller closed", ErrNoController)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// serveCall answers the calls another node sends on one connection, until
// it closes the connection, stays idle for callIdleTimeout, or the mux
// closes.
func (c *Controller) serveCall(nc net.Conn) {
	defer nc.Close()
	for {
		nc.SetReadDeadline(time.Now().Add(callIdleTimeout))
		b, err := readFrame(nc)
		if err != nil {
			return
		}
		var req callRequest
		if err := json.Unmarshal(b, &req); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		resp := c.handle(ctx, &req)
		cancel()
		out, err := json.Marshal(&resp)
		if err != nil {
			return
		}
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(appendFrame(make([]byte, 0, 4+len(out)), out)); err != nil {
			return
		}
	}
}

// handle runs a call on this node, which must be the ready leader.
func (c *Controller) handle(ctx context.Context, req *callRequest) callResponse {
	if !c.opened.Load() {
		return callResponse{NotLeader: true} // still opening: ask again
	}
	if req.Probe {
		info := c.probeInfo()
		return callResponse{Probe: &info}
	}
	if !c.leaderReady.Load() {
		return callResponse{NotLeader: true}
	}
	switch {
	case req.Heartbeat != nil:
		return c.handleHeartbeat(req.Heartbeat)
	case req.Propose != nil:
		res, notLeader := c.plan(req.Propose)
		return callResponse{NotLeader: notLeader, Result: res}
	}
	return callResponse{Result: Result{Err: errorf(CodeInvalidRequest, "empty controller call")}}
}

func (c *Controller) handleHeartbeat(b *BrokerInfo) callResponse {
	// A leader that was paused or cut off may not know yet that it was
	// deposed; acknowledging a heartbeat then would renew a lease on stale
	// state (its own broker's included). Confirm leadership with a quorum
	// first.
	if err := c.raft.VerifyLeader().Error(); err != nil {
		c.leaderReady.Store(false)
		return callResponse{NotLeader: true}
	}
	cur := c.State().Brokers[b.ID]
	if cur != nil && !cur.Fenced && cur.Incarnation != b.Incarnation && cur.StorageID != "" && b.StorageID != "" && cur.StorageID != b.StorageID {
		// Another process from another data directory claims a live
		// broker's ID: registering it would fence the live one, and the
		// two would take turns. Refuse, as KRaft refuses a registration
		// while the old one's session is valid. A restart from the same
		// directory (same StorageID) is let through below, and one from
		// another directory once the old session expired.
		c.hbMu.Lock()
		last, ok := c.hb[b.ID]
		c.hbMu.Unlock()
		if ok && time.Since(last) <= c.cfg.SessionTimeout {
			return callResponse{Refused: errorf(CodeDuplicateBrokerRegistration,
				"node ID %d is already registered by a live broker at %s (storage ID %s, last heartbeat %v ago); "+
					"this broker (storage ID %s) will not replace it: give it another CHRONIK_NODE_ID, or stop the other broker first",
				b.ID, net.JoinHostPort(cur.Host, strconv.Itoa(int(cur.Port))), cur.StorageID, time.Since(last).Round(time.Millisecond), b.StorageID)}
		}
	}
	c.hbMu.Lock()
	c.hb[b.ID] = time.Now()
	c.hbMu.Unlock()
	if cur == nil || cur.Fenced || cur.Incarnation != b.Incarnation || cur.Host != b.Host || cur.Port != b.Port || cur.RaftAddr != b.RaftAddr ||
		cur.InternalHost != b.InternalHost || cur.InternalPort != b.InternalPort || cur.StorageID != b.StorageID ||
		!maps.Equal(cur.Endpoints, b.Endpoints) {
		res, notLeader := c.commit(&Command{RegisterBroker: b})
		if notLeader || res.Err != nil {
			return callResponse{NotLeader: true}
		}
		if cur == nil || cur.Incarnation != b.Incarnation {
			c.log.Info("broker registered", "broker", b.ID, "addr", net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))))
		} else if cur.Fenced {
			c.log.Info("broker unfenced", "broker", b.ID)
		}
	}
	return callResponse{Index: c.State().Index}
}

// OffsetsTopic is the internal topic of committed offsets and TxnStateTopic
// that of transactions; the brokers create them, and they do not count
// against MaxPartitions.
const (
	OffsetsTopic  = "__consumer_offsets"
	TxnStateTopic = "__transaction_state"
)

// internalTopic reports whether name is one of the brokers' internal topics.
func internalTopic(name string) bool { return name == OffsetsTopic || name == TxnStateTopic }

// checkPartitionLimit refuses adding n partitions to st past
// Config.MaxPartitions: every partition costs each replica memory, files
// and replication work, so clients must not create them without bound.
func (c *Controller) checkPartitionLimit(st *State, n int) *Error {
	limit := int(c.cfg.MaxPartitions)
	if limit <= 0 {
		return nil
	}
	if n > limit {
		return errorf(CodeInvalidPartitions, "%d partitions exceed the cluster's limit of %d (CHRONIK_MAX_PARTITIONS)", n, limit)
	}
	total := 0
	for _, t := range st.Topics {
		if !internalTopic(t.Name) {
			total += len(t.Partitions)
		}
	}
	if total+n > limit {
		return errorf(CodePolicyViolation, "adding %d partitions to the cluster's %d would pass its limit of %d (CHRONIK_MAX_PARTITIONS)", n, total, limit)
	}
	return nil
}

// plan turns a request into a command against the newest state and commits
// it. The second result is true when this node stopped leading.
func (c *Controller) plan(req *Request) (Result, bool) {
	c.proposeMu.Lock()
	defer c.proposeMu.Unlock()
	st := c.State()
	var cmd Command
	switch {
	case req.CreateTopic != nil:
		r := req.CreateTopic
		if t := st.Topics[r.Name]; t != nil {
			if t.ID == r.ID {
				return Result{Index: st.Index}, false // a retry of a create that committed
			}
			return Result{Err: errorf(CodeTopicAlreadyExists, "topic %q already exists", r.Name)}, false
		}
		if internalTopic(r.Name) {
			// Created by the brokers, outside the limit (as standalone).
		} else if err := c.checkPartitionLimit(st, int(r.Partitions)); err != nil {
			return Result{Err: err}, false
		}
		parts, err := assign(st, int(r.Partitions), int(r.ReplicationFactor))
		if err != nil {
			return Result{Err: err}, false
		}
		if r.ValidateOnly {
			return Result{Index: st.Index}, false
		}
		cmd.CreateTopic = &TopicInfo{Name: r.Name, ID: r.ID, Configs: r.Configs, Partitions: parts}
	case req.CreatePartitions != nil:
		r := req.CreatePartitions
		t, err := st.topic(r.TopicRef)
		if err != nil {
			return Result{Err: err}, false
		}
		if int(r.Count) <= len(t.Partitions) {
			return Result{Err: errorf(CodeInvalidPartitions, "topic %q has %d partitions; the new count %d must be larger", t.Name, len(t.Partitions), r.Count)}, false
		}
		if err := c.checkPartitionLimit(st, int(r.Count)-len(t.Partitions)); err != nil {
			return Result{Err: err}, false
		}
		rf := 1
		if len(t.Partitions) > 0 {
			rf = len(t.Partitions[0].Replicas)
		}
		add, aerr := assign(st, int(r.Count)-len(t.Partitions), rf)
		if aerr != nil {
			return Result{Err: aerr}, false
		}
		if r.ValidateOnly {
			return Result{Index: st.Index}, false
		}
		cmd.CreatePartitions = &CreatePartitions{TopicRef: r.TopicRef, Add: add}
	case req.DeleteTopic != nil:
		cmd.DeleteTopic = req.DeleteTopic
	case req.SetConfigs != nil:
		cmd.SetConfigs = req.SetConfigs
	case req.AllocProducerIDs != nil:
		cmd.AllocProducerIDs = req.AllocProducerIDs
	case req.ChangeISR != nil:
		cmd.ChangeISR = req.ChangeISR
	case req.Shutdown != nil:
		cmd.FenceBroker = req.Shutdown
	case req.MarkReplica != nil:
		cmd.MarkReplica = req.MarkReplica
	case req.Reassign != nil:
		cmd.Reassign = req.Reassign
	case req.Security != nil:
		cmd.Security = req.Security
	case req.ElectLeader != nil:
		cmd.ElectLeader = req.ElectLeader
	case req.ElectPreferred != nil:
		cmd.ElectPreferred = req.ElectPreferred
	case req.AdoptTopic != nil:
		t, err := planAdopt(st, req.AdoptTopic)
		if err != nil {
			return Result{Err: err}, false
		}
		cmd.AdoptTopic = t
	default:
		return Result{Err: errorf(CodeInvalidRequest, "empty controller request")}, false
	}
	return c.commitLocked(&cmd)
}

func (c *Controller) commit(cmd *Command) (Result, bool) {
	c.proposeMu.Lock()
	defer c.proposeMu.Unlock()
	return c.commitLocked(cmd)
}

// commitLocked appends cmd to the Raft log and waits until this (leader)
// node applied it.
func (c *Controller) commitLocked(cmd *Command) (Result, bool) {
	data, err := encodeCommand(cmd)
	if err != nil {
		return Result{Err: errorf(CodeInvalidRequest, "%v", err)}, false
	}
	f := c.raft.Apply(data, 5*time.Second)
	if err := f.Error(); err != nil {
		// Not leader, leadership lost, or timed out: the caller retries
		// against whoever leads now (commands are idempotent or checked).
		c.log.Debug("metadata proposal not committed", "err", err)
		return Result{}, true
	}
	res, _ := f.Response().(Result)
	return res, false
}

// heartbeatLoop tells the controller leader this broker is alive and keeps
// the lease Current reads.
func (c *Controller) heartbeatLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	var refusedSince time.Time
	for {
		if c.stopping.Load() {
			return // a heartbeat now would unfence this broker again
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.SessionTimeout/2)
		var resp callResponse
		err := c.callLeader(ctx, &callRequest{Heartbeat: c.self.Load()}, &resp)
		cancel()
		switch {
		case err == nil && resp.Refused != nil:
			// Keep asking for a full session: a broker that died
			// holding this ID is fenced by then, a live one is not.
			if refusedSince.IsZero() {
				refusedSince = sent
				c.log.Warn("registration refused; retrying until the other broker's session would have expired", "err", resp.Refused.Message)
			}
			if time.Since(refusedSince) > 2*c.cfg.SessionTimeout+c.cfg.HeartbeatInterval {
				c.fail(fmt.Errorf("%w: %s", ErrDuplicateBroker, resp.Refused.Message))
				return
			}
		case err == nil:
			refusedSince = time.Time{}
			wasCurrent := c.Current()
			c.leaseMu.Lock()
			c.pendingSent, c.pendingIdx = sent, resp.Index
			c.leaseMu.Unlock()
			if !wasCurrent {
				// The lease may just have become current: let the
				// subscriber act on the state now rather than at its
				// next tick.
				select {
				case c.fsm.changed <- struct{}{}:
				default:
				}
			}
		}
		select {
		case <-c.closing:
			return
		case <-t.C:
		}
	}
}

// leaderLoop runs the leader's duties while this node leads: it waits for
// its FSM to catch up, names the cluster, and fences silent brokers.
func (c *Controller) leaderLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
		}
		c.recordClusterID()
		if c.raft.State() != raft.Leader {
			c.leaderReady.Store(false)
			c.lastRebalance = time.Time{}
			continue
		}
		if !c.leaderReady.Load() {
			if err := c.raft.Barrier(5 * time.Second).Error(); err != nil {
				continue
			}
			// Every broker gets a full session from the moment this node
			// leads: it has not heard from any of them yet.
			c.hbMu.Lock()
			clear(c.hb)
			now := time.Now()
			for id := range c.State().Brokers {
				c.hb[id] = now
			}
			c.hbMu.Unlock()
			if c.State().ClusterID == "" {
				id, ok, err := c.initClusterID(context.Background())
				if err != nil {
					c.fail(err)
					return
				}
				if !ok {
					continue // a peer has not answered yet
				}
				if _, lost := c.commit(&Command{InitCluster: &InitCluster{ClusterID: id}}); lost {
					continue
				}
				c.log.Info("named the cluster", "cluster_id", c.State().ClusterID)
			}
			c.leaderReady.Store(true)
			c.log.Info("controller leader", "node", c.cfg.NodeID, "term_index", c.State().Index)
		}
		c.fenceSilent()
		c.electUnclean()
		c.rebalanceLeaders()
	}
}

// rebalanceLeaders runs the preferred leader election of brokers that lead
// too few of their preferred partitions, once every check interval while
// this node leads the quorum: a broker that restarted leads nothing until
// then, and the others carry its load.
func (c *Controller) rebalanceLeaders() {
	if !c.cfg.AutoLeaderRebalance || c.cfg.LeaderImbalanceCheckInterval <= 0 {
		return
	}
	now := time.Now()
	if c.lastRebalance.IsZero() {
		c.lastRebalance = now // a new quorum leader waits a whole interval
		return
	}
	if now.Sub(c.lastRebalance) < c.cfg.LeaderImbalanceCheckInterval {
		return
	}
	c.lastRebalance = now
	st := c.State()
	refs := ImbalancedPartitions(st, c.cfg.LeaderImbalancePerBrokerPercentage)
	if len(refs) == 0 {
		return
	}
	if _, lost := c.commit(&Command{ElectPreferred: &ElectPreferred{Partitions: refs}}); lost {
		return
	}
	c.log.Info("moved partitions back to their preferred leaders", "partitions", len(refs))
}

// ImbalancedPartitions lists, for each live broker that leads more than
// percent % fewer of the partitions it is the preferred replica of than it
// could, those of its partitions that can move back to it now.
func ImbalancedPartitions(st *State, percent int) []PartitionRef {
	type count struct{ preferred, notLeading int }
	counts := map[int32]*count{}
	for _, t := range st.Topics {
		for _, p := range t.Partitions {
			if len(p.Replicas) == 0 {
				continue
			}
			pref := p.Replicas[0]
			n := counts[pref]
			if n == nil {
				n = &count{}
				counts[pref] = n
			}
			n.preferred++
			if p.Leader != pref {
				n.notLeading++
			}
		}
	}
	var refs []PartitionRef
	for _, name := range slices.Sorted(maps.Keys(st.Topics)) {
		t := st.Topics[name]
		for i, p := range t.Partitions {
			if len(p.Replicas) == 0 {
				continue
			}
			n := counts[p.Replicas[0]]
			if n.notLeading*100 <= percent*n.preferred || PreferredLeaderCheck(st, p) != nil {
				continue
			}
			refs = append(refs, PartitionRef{TopicRef: TopicRef{Name: t.Name, ID: t.ID}, Partition: int32(i)})
		}
	}
	return refs
}

// uncleanConfig is the topic config that opts a topic into unclean leader
// election (Kafka's name).
const uncleanConfig = "unclean.leader.election.enable"

// electUnclean gives a leader to each partition whose ISR has no live
// member and whose topic allows unclean election: the first live replica
// in preference order, preferring one that holds data and is not damaged.
func (c *Controller) electUnclean() {
	st := c.State()
	for _, t := range st.Topics {
		allow := c.cfg.UncleanLeaderElection
		if v, ok := t.Configs[uncleanConfig]; ok {
			allow = v == "true"
		}
		if !allow {
			continue
		}
		for i, p := range t.Partitions {
			if p.Leader >= 0 && st.Live(p.Leader) || slices.ContainsFunc(p.ISR, st.Live) {
				continue
			}
			pick := UncleanCandidate(st, p)
			if pick < 0 {
				continue
			}
			res, lost := c.commit(&Command{ElectLeader: &ElectLeader{TopicRef: TopicRef{Name: t.Name, ID: t.ID}, Partition: int32(i), Leader: pick, Unclean: true}})
			if lost {
				return
			}
			if res.Err == nil {
				c.log.Warn("unclean leader election: records the new leader lacks are lost", "topic", t.Name, "partition", i, "leader", pick, "isr_was", p.ISR)
			}
		}
	}
}

// UncleanCandidate is the replica an unclean election of p picks: the
// first live one in preference order, preferring those not known to be
// empty (a replaced disk), then not damaged; -1 when none is live.
func UncleanCandidate(st *State, p PartitionInfo) int32 {
	rank := func(r int32) int {
		n := 0
		if slices.Contains(p.Empty, r) {
			n += 2
		}
		if slices.Contains(p.Offline, r) {
			n++
		}
		return n
	}
	pick := int32(-1)
	for _, r := range p.Replicas {
		if st.Live(r) && (pick < 0 || rank(r) < rank(pick)) {
			pick = r
		}
	}
	return pick
}

// Resign fences this node's broker and stops its heartbeats, so its
// partitions get new leaders, while the node stays a controller voter: its
// broker can no longer write its log. Only a restart registers it again.
func (c *Controller) Resign(ctx context.Context) error {
	c.stopping.Store(true)
	self := c.self.Load()
	if self == nil {
		return nil
	}
	_, err := c.Propose(ctx, &Request{Shutdown: &FenceBroker{ID: self.ID, Incarnation: self.Incarnation}})
	return err
}

func (c *Controller) fenceSilent() {
	st := c.State()
	now := time.Now()
	for _, b := range st.LiveBrokers() {
		c.hbMu.Lock()
		last, ok := c.hb[b.ID]
		if !ok {
			c.hb[b.ID], last = now, now
		}
		c.hbMu.Unlock()
		if now.Sub(last) <= c.cfg.SessionTimeout {
			continue
		}
		if _, lost := c.commit(&Command{FenceBroker: &FenceBroker{ID: b.ID, Incarnation: b.Incarnation}}); lost {
			return
		}
		c.log.Warn("broker fenced: no heartbeat", "broker", b.ID, "silent_for", now.Sub(last).Round(time.Millisecond))
	}
}

func newClusterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close fences this broker (controlled shutdown, best effort), hands Raft
// leadership to another voter if this node holds it, and stops.
func (c *Controller) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.stopping.Store(true)
		if self := c.self.Load(); self != nil && len(c.peers) > 1 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = c.Propose(ctx, &Request{Shutdown: &FenceBroker{ID: self.ID, Incarnation: self.Incarnation}})
			cancel()
			if c.raft.State() == raft.Leader {
				_ = c.raft.LeadershipTransfer().Error()
			}
		}
		close(c.closing)
		c.wg.Wait()
		err = c.raft.Shutdown().Error()
		c.trans.Close()
		c.mux.Close()
		c.calls.close()
		if cerr := c.store.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// slogWriter hands Raft's log lines (hclog) to the node's slog logger, so
// they share its format and destination.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if rest, ok := strings.CutPrefix(line, "[ERROR]"); ok {
		level, line = slog.LevelError, rest
	} else if rest, ok := strings.CutPrefix(line, "[WARN]"); ok {
		line = rest
	}
	w.log.Log(context.Background(), level, strings.TrimSpace(line))
	return len(p), nil
}
