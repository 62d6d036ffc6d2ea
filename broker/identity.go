package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chronik-go/chronik/tier3"
)

// Identity: a data directory and an archive each belong to one cluster.
//
//   - meta.json carries the cluster ID. A standalone broker names its own
//     at creation; a cluster broker's new directory takes the controller
//     quorum's. A broker whose directory belongs to another cluster than
//     its controller quorum's refuses to serve (ErrOtherCluster) before it
//     registers, so nothing is reconciled, deleted or archived.
//   - A standalone directory grows into a cluster: the quorum formed over
//     it takes its cluster ID (replication/bootstrap.go) and its topics are
//     adopted (cluster.go).
//   - A node ID belongs to one data directory while its broker is live: the
//     controller refuses a registration under a live broker's ID from
//     another directory (another StorageID), and the newcomer stops with
//     replication.ErrDuplicateBroker. The same directory starting again
//     (a restart, even after kill -9) registers at once.
//   - The archive's root holds cluster.json (tier3.ClusterInfo), claimed by
//     the first broker that archives there. A broker never archives to,
//     sweeps or reads manifests from an archive of another cluster; it
//     refuses to serve instead.

// ErrOtherCluster: the data directory or the archive belongs to another
// cluster than this broker's.
var ErrOtherCluster = errors.New("broker: belongs to another cluster")

// fail stops the broker from serving for good: an error no retry can fix
// (another cluster's data, a lost controller quorum). The process running
// the broker watches Fatal and exits.
func (b *Broker) fail(err error) {
	b.fatalOnce.Do(func() {
		b.log.Error("refusing to run", "err", err)
		b.fatalErr = err
		close(b.fatal)
	})
}

// Fatal is closed when the broker refused to go on; Err says why.
func (b *Broker) Fatal() <-chan struct{} { return b.fatal }

// Err is the error that closed Fatal, or nil.
func (b *Broker) Err() error {
	select {
	case <-b.fatal:
		return b.fatalErr
	default:
		return nil
	}
}

// hadRaftState reports whether the data directory holds a controller's
// Raft state from an earlier run.
func hadRaftState(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "raft", "raft.db"))
	return err == nil
}

// identityLoop waits for the controller quorum's cluster ID, checks the
// data directory belongs to that cluster (adopting the ID into a new
// directory), and only then registers the broker; then it watches for the
// controller refusing to run (replication.ErrDuplicateBroker).
func (b *Broker) identityLoop() {
	defer b.maintWG.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if id := b.ctl.State().ClusterID; id != "" {
			if err := b.adoptClusterID(id); err != nil {
				b.fail(err)
				return
			}
			b.identified.Store(true)
			b.joinCluster()
			// The controller may still refuse the registration for good
			// (another live broker has this node ID).
			select {
			case <-b.closing:
			case <-b.ctl.Fatal():
				b.fail(b.ctl.Err())
			}
			return
		}
		select {
		case <-b.closing:
			return
		case <-b.ctl.Fatal():
			b.fail(b.ctl.Err())
			return
		case <-b.ctl.Changed():
		case <-tick.C:
		}
	}
}

// adoptClusterID makes the data directory a member of cluster id, or
// refuses when it belongs to another.
func (b *Broker) adoptClusterID(id string) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	st := b.meta
	switch st.ClusterID {
	case id:
		if st.Member {
			return nil
		}
	case "":
		st.ClusterID = id
	default:
		return fmt.Errorf("%w: the data directory %s belongs to cluster %s, but the controller quorum (--peers) is cluster %s; "+
			"start this node with an empty data directory to join cluster %s, or point --peers at the controllers of cluster %s",
			ErrOtherCluster, b.cfg.DataDir, st.ClusterID, id, id, st.ClusterID)
	}
	st.Member = true
	if err := saveMeta(b.fs, b.cfg.DataDir, &st); err != nil {
		return err
	}
	if b.meta.ClusterID == "" {
		b.log.Info("joined cluster", "cluster_id", id)
	}
	b.meta = st
	return nil
}

// dataClusterID is the cluster ID this data directory carries for forming
// a controller quorum ("" for a new or unidentified one), and whether it
// was a member of that cluster's quorum.
func (b *Broker) dataClusterID() (string, bool) {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	return b.meta.ClusterID, b.meta.Member
}

// verifyArchive checks that the archive belongs to this broker's cluster,
// claiming an archive that belongs to none. It reports false while the
// answer is not known yet (the cluster ID not yet adopted, the store
// unreachable: err says why); a foreign archive fails the broker.
func (b *Broker) verifyArchive(ctx context.Context) (bool, error) {
	if b.ctl != nil && !b.identified.Load() {
		return false, nil
	}
	id, _ := b.dataClusterID()
	store := b.tier.arch.Store()
	info, err := tier3.ReadClusterInfo(ctx, store)
	if errors.Is(err, tier3.ErrNotFound) {
		info, err = tier3.ClaimCluster(ctx, store, id)
		if err == nil && info.ClusterID == id {
			b.log.Info("claimed the archive for this cluster", "cluster_id", id)
		}
	}
	if err != nil {
		return false, err
	}
	if info.ClusterID != id {
		err := fmt.Errorf("%w: the archive (CHRONIK_TIER3_URL) belongs to cluster %s, but this broker's data directory %s belongs to cluster %s; "+
			"point CHRONIK_TIER3_URL at this cluster's archive or at an empty prefix, or start with a data directory of cluster %s",
			ErrOtherCluster, info.ClusterID, b.cfg.DataDir, id, info.ClusterID)
		b.fail(err)
		return false, err
	}
	return true, nil
}
