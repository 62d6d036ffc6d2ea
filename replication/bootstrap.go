package replication

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Forming a quorum without losing one.
//
// A node with no Raft state does not bootstrap on its own any more. Raft
// would let two such nodes (say, two of three whose disks were replaced)
// form a majority with an empty log and then overwrite the third node's
// metadata, and an empty controller state would make every broker's
// topics look unknown. Instead the node starts Raft unbootstrapped and asks
// every peer (a Probe call on the controller port) what it holds:
//
//   - a peer with Raft state exists: this node joins that quorum. It stays
//     unbootstrapped until the leader replicates the log to it, so it can
//     never out-vote the nodes that hold the metadata;
//   - every peer answered and none has state: a new quorum forms (every
//     node bootstraps with the same voters, as before), unless some node's
//     data directory says it was a member of a cluster: then the quorum's
//     state was lost everywhere, and the nodes refuse (ErrQuorumLost)
//     unless started with Config.Recover, an operator's explicit step;
//   - otherwise (a peer not answering yet) it waits and asks again.
//
// The cluster ID is decided the same way: the first controller leader
// names the cluster only once every peer has answered, and takes the ID
// the peers' data directories carry (a standalone broker grown into a
// cluster keeps its ID; a recovered quorum keeps its cluster's), or a new
// one when none does. Data directories of two different clusters never
// form one (ErrMixedClusters).

// refuseLinger is how long a node that refuses to form a quorum keeps
// answering its peers' probes first.
const refuseLinger = 3 * time.Second

// ErrQuorumLost: no node holds the controller's state, yet a data
// directory shows it was a member of a cluster.
var ErrQuorumLost = errors.New("replication: the controller quorum's state is lost on every node")

// ErrMixedClusters: the peers' data directories belong to different
// clusters.
var ErrMixedClusters = errors.New("replication: the peers' data directories belong to different clusters")

// ProbeInfo is a node's answer to a Probe: what it holds.
type ProbeInfo struct {
	Node     int32 `json:"node"`
	HasState bool  `json:"has_state"` // Raft state: a log, snapshots or a configuration
	// ClusterID is the cluster its Raft state names ("" before InitCluster
	// or without state).
	ClusterID string `json:"cluster_id,omitempty"`
	// DataClusterID and DataMember describe its broker's data directory:
	// the cluster ID it carries, and whether it was a member of that
	// cluster's quorum (as opposed to a standalone broker's data).
	DataClusterID string `json:"data_cluster_id,omitempty"`
	DataMember    bool   `json:"data_member,omitempty"`
	// Process identifies the answering controller instance (random per
	// Open), so a node can tell its own answer from a twin's.
	Process string `json:"process,omitempty"`
}

// probeInfo is this node's own answer.
func (c *Controller) probeInfo() ProbeInfo {
	return ProbeInfo{Node: c.cfg.NodeID, HasState: c.hasState(), ClusterID: c.clusterID(),
		DataClusterID: c.cfg.DataClusterID, DataMember: c.cfg.DataMember, Process: c.process}
}

// clusterID is the cluster this node's Raft state belongs to: the
// state's, or before the log is applied after a restart, the one recorded
// in the raft directory.
func (c *Controller) clusterID() string {
	if id := c.State().ClusterID; id != "" {
		return id
	}
	return c.raftClusterID
}

// clusterIDFile records, in the raft directory, the cluster the Raft
// state belongs to, readable before Raft starts.
const clusterIDFile = "cluster_id"

func readClusterIDFile(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recordClusterID writes the raft directory's cluster_id once the state
// names the cluster.
func (c *Controller) recordClusterID() {
	id := c.State().ClusterID
	if id == "" || id == c.raftClusterID {
		return
	}
	tmp := filepath.Join(c.cfg.Dir, clusterIDFile+".tmp")
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		c.log.Warn("recording the cluster ID in the raft directory failed", "err", err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(c.cfg.Dir, clusterIDFile)); err != nil {
		c.log.Warn("recording the cluster ID in the raft directory failed", "err", err)
		return
	}
	c.raftClusterID = id
}

// checkPeersCluster refuses, before Raft starts, to take part in another
// cluster's quorum: a node whose Raft state (or, without one, whose data
// directory) belongs to one cluster among peers of another would mix two
// clusters' logs, or reconcile one cluster's topics against the other's
// metadata. Peers that do not answer in time, or whose cluster is not
// named yet, prove nothing either way.
func (c *Controller) checkPeersCluster() error {
	own, what := c.raftClusterID, "Raft state ("+c.cfg.Dir+")"
	if own == "" && c.cfg.DataClusterID != "" {
		own, what = c.cfg.DataClusterID, "data directory"
	}
	if own == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	answers, _ := c.probePeers(ctx)
	for _, id := range slices.Sorted(maps.Keys(answers)) {
		a := answers[id]
		if id != c.cfg.NodeID && a.ClusterID != "" && a.ClusterID != own {
			return fmt.Errorf("%w: this node's %s belongs to cluster %s, but node %d of --peers belongs to cluster %s; "+
				"start this node with an empty data directory to join cluster %s, or point --peers at the controllers of cluster %s",
				ErrMixedClusters, what, own, id, a.ClusterID, a.ClusterID, own)
		}
	}
	return nil
}

// checkNoTwin refuses, before Raft starts, to run beside a live node with
// this node's ID: a second process started with a running broker's
// CHRONIK_NODE_ID would take its Raft votes and fence its registration,
// and the two would take turns. The address --peers gives for this node
// is asked who answers there; a controller with this node ID that is not
// this process is a twin. It is asked again for two session timeouts, in
// case it is a previous run of this node still shutting down.
func (c *Controller) checkNoTwin() error {
	addr := c.peers[c.cfg.NodeID]
	deadline := time.Now().Add(2*c.cfg.SessionTimeout + c.cfg.HeartbeatInterval)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var resp callResponse
		err := c.calls.call(ctx, addr, &callRequest{Probe: true}, &resp)
		cancel()
		twin := err == nil && resp.Probe != nil && resp.Probe.Node == c.cfg.NodeID &&
			resp.Probe.Process != "" && resp.Probe.Process != c.process
		if !twin {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: node ID %d is already served by a live controller at %s (the address --peers gives for it); "+
				"this process would fence it: give this broker another CHRONIK_NODE_ID, or stop the other one first",
				ErrDuplicateBroker, c.cfg.NodeID, addr)
		}
		c.log.Warn("another live process answers at this node's peer address with its node ID; waiting in case it is shutting down",
			"node", c.cfg.NodeID, "addr", addr)
		time.Sleep(c.cfg.HeartbeatInterval)
	}
}

// hasState reports whether this node's Raft holds any state (false before
// Raft is started).
func (c *Controller) hasState() bool {
	if c.raft == nil {
		return false
	}
	return c.raft.LastIndex() > 0 || len(c.raft.GetConfiguration().Configuration().Servers) > 0
}

// probePeers asks every other voter what it holds. It returns the answers
// and the IDs of the peers that never answered. A peer that answered once
// and does not now counts with its last answer: a node without Raft state
// gets some only from a quorum forming (which needs every answer) or from
// a leader replicating to it, so "no state" stays true while it is away.
func (c *Controller) probePeers(ctx context.Context) (map[int32]ProbeInfo, []int32) {
	out := map[int32]ProbeInfo{c.cfg.NodeID: c.probeInfo()}
	var missing []int32
	for id, addr := range c.peers {
		if id == c.cfg.NodeID {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		var resp callResponse
		err := c.calls.call(cctx, addr, &callRequest{Probe: true}, &resp)
		cancel()
		c.probedMu.Lock()
		if err == nil && resp.Probe != nil {
			c.probed[id] = *resp.Probe
		}
		a, ok := c.probed[id]
		c.probedMu.Unlock()
		if !ok {
			missing = append(missing, id)
			continue
		}
		out[id] = a
	}
	slices.Sort(missing)
	return out, missing
}

// dataClusterID is the cluster ID the peers' data directories agree on
// ("" when none carries one), or ErrMixedClusters.
func dataClusterID(answers map[int32]ProbeInfo) (string, error) {
	byID := map[string][]int32{}
	for node, a := range answers {
		if a.DataClusterID != "" {
			byID[a.DataClusterID] = append(byID[a.DataClusterID], node)
		}
	}
	if len(byID) > 1 {
		var parts []string
		for id, nodes := range byID {
			slices.Sort(nodes)
			parts = append(parts, fmt.Sprintf("%s (nodes %v)", id, nodes))
		}
		sort.Strings(parts)
		return "", fmt.Errorf("%w: %s; a cluster grows from one of them: start the other nodes with empty data directories", ErrMixedClusters, strings.Join(parts, ", "))
	}
	for id := range byID {
		return id, nil
	}
	return "", nil
}

// bootstrapLoop runs on a node that started without Raft state, until it
// joins a quorum or forms a new one (see the top of this file).
func (c *Controller) bootstrapLoop() {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-c.closing
		cancel()
	}()
	var lastLog, refuseAt time.Time
	for {
		if c.hasState() {
			return // the leader has replicated to us
		}
		answers, missing := c.probePeers(ctx)
		var holders []int32
		for id, a := range answers {
			if a.HasState {
				holders = append(holders, id)
			}
		}
		err := error(nil)
		switch {
		case len(holders) > 0:
			slices.Sort(holders)
			c.log.Info("joining the existing controller quorum; waiting for its leader to replicate the metadata", "holders", holders)
			return
		case len(missing) == 0:
			if _, err = dataClusterID(answers); err != nil {
				break
			}
			if err = c.checkNotLost(answers); err != nil {
				break
			}
			err = c.raft.BootstrapCluster(c.configuration()).Error()
			if err == nil || errors.Is(err, raft.ErrCantBootstrap) {
				c.log.Info("formed a new controller quorum", "voters", len(c.peers), "recover", c.cfg.Recover)
				return
			}
		case c.cfg.DataMember && !c.cfg.Recover && len(answers) > len(c.peers)/2:
			// A majority, this node among them, holds no Raft state, and
			// this node's data says it was a member: the quorum's state is
			// lost unless a silent peer holds it. Refuse rather than wait
			// for it: nothing is formed or deleted either way.
			err = fmt.Errorf("%w: this node was a member of cluster %s and, like nodes %v, has no Raft state (the raft directory); nodes %v did not answer. "+
				"If one of them holds the state, start it and then this node again; if the state is lost everywhere, start every node once with "+
				"--controller-recover (CHRONIK_CONTROLLER_RECOVER=true) to form a new quorum from the brokers' data; see docs/cluster.md",
				ErrQuorumLost, c.cfg.DataClusterID, slices.Sorted(maps.Keys(answers)), missing)
		default:
			if time.Since(lastLog) > 10*time.Second {
				c.log.Info("no Raft state here; waiting for every controller peer to answer before forming a quorum", "not_answering", missing)
				lastLog = time.Now()
			}
		}
		if err != nil && (errors.Is(err, ErrQuorumLost) || errors.Is(err, ErrMixedClusters)) {
			// Keep answering probes a little longer before refusing, so
			// the peers starting alongside learn what this node holds
			// and refuse too, instead of waiting for it.
			if refuseAt.IsZero() {
				refuseAt = time.Now().Add(refuseLinger)
			}
			if time.Now().After(refuseAt) {
				c.fail(err)
				return
			}
		}
		select {
		case <-c.closing:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkNotLost refuses to form a new quorum over data directories that
// were members of a cluster, unless recovering.
func (c *Controller) checkNotLost(answers map[int32]ProbeInfo) error {
	if c.cfg.Recover {
		return nil
	}
	var members []int32
	id := ""
	for node, a := range answers {
		if a.DataMember {
			members = append(members, node)
			id = a.DataClusterID
		}
	}
	if len(members) == 0 {
		return nil
	}
	slices.Sort(members)
	return fmt.Errorf("%w: nodes %v were members of cluster %s, and no node has its Raft state (the raft directory); "+
		"to form a new quorum from the brokers' data, start every node once with --controller-recover (CHRONIK_CONTROLLER_RECOVER=true); see docs/cluster.md",
		ErrQuorumLost, members, id)
}

// configuration is the voters of the configured peers.
func (c *Controller) configuration() raft.Configuration {
	var conf raft.Configuration
	for id, addr := range c.peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: serverID(id), Address: raft.ServerAddress(addr)})
	}
	sort.Slice(conf.Servers, func(i, j int) bool { return conf.Servers[i].ID < conf.Servers[j].ID })
	return conf
}

// initClusterID decides the ID the first leader names the cluster with:
// the one the peers' data directories carry, or a new one. It reports
// false while a peer has not answered.
func (c *Controller) initClusterID(ctx context.Context) (string, bool, error) {
	answers, missing := c.probePeers(ctx)
	if len(missing) > 0 {
		return "", false, nil
	}
	id, err := dataClusterID(answers)
	if err != nil {
		return "", false, err
	}
	if id == "" {
		id = newClusterID()
	}
	return id, true, nil
}

// fail reports a fatal error once: the node cannot take part in a quorum.
func (c *Controller) fail(err error) {
	c.fatalOnce.Do(func() {
		c.log.Error("controller cannot start", "err", err)
		c.fatalErr = err
		close(c.fatal)
	})
}

// Fatal is closed when the controller hit an error it cannot get past
// (ErrQuorumLost, ErrMixedClusters); Err then says which.
func (c *Controller) Fatal() <-chan struct{} { return c.fatal }

// Err is the fatal error, once Fatal is closed.
func (c *Controller) Err() error {
	select {
	case <-c.fatal:
		return c.fatalErr
	default:
		return nil
	}
}
