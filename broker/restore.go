package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/chronik-go/chronik/internal/vfs"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// RestoredPartition is one partition brought back by RestoreTopic: its
// offsets [LogStart, End) are served from the archive.
type RestoredPartition struct {
	Partition     int32
	LogStart, End int64
	Segments      int
}

// RestoreTopic recreates the archived topic named name in the broker data
// directory dataDir, which no broker may be using (disaster recovery onto
// an empty cluster). The topic keeps its ID, partition count and configs
// from the bucket's topic.json; each partition gets a log start and a log
// end checkpoint from its manifest and no local data: a broker started on
// dataDir then serves every archived offset from the store, and new
// records continue at the archived end. Only archived data comes back:
// whatever had not been uploaded when the old cluster was lost is gone.
func RestoreTopic(ctx context.Context, dataDir string, store tier3.Store, name string) ([]RestoredPartition, error) {
	unlock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	fs := vfs.Default
	st, err := loadMeta(fs, dataDir, false, false)
	if err != nil {
		return nil, err
	}
	ti, id, err := tier3.FindTopic(ctx, store, name)
	if err != nil {
		return nil, err
	}
	// The data directory takes the archive's cluster, so a cluster grown
	// from it (or the cluster it is a member of) reads this archive.
	switch ci, err := tier3.ReadClusterInfo(ctx, store); {
	case errors.Is(err, tier3.ErrNotFound):
	case err != nil:
		return nil, err
	case st.ClusterID != ci.ClusterID && (len(st.Topics) > 0 || st.Member):
		return nil, fmt.Errorf("%w: the archive belongs to cluster %s and the data directory %s to cluster %s; "+
			"restore into an empty data directory (a cluster started from it is cluster %s) or into a node of cluster %s",
			ErrOtherCluster, ci.ClusterID, dataDir, st.ClusterID, ci.ClusterID, ci.ClusterID)
	default:
		st.ClusterID = ci.ClusterID
	}
	for _, mt := range st.Topics {
		if mt.Name == name || mt.ID == ti.ID {
			return nil, fmt.Errorf("broker: topic %q already exists in %s; restore onto an empty cluster or delete the topic first", mt.Name, dataDir)
		}
	}
	segRoot := filepath.Join(dataDir, "segments")
	var out []RestoredPartition
	for i := int32(0); i < ti.Partitions; i++ {
		m, err := tier3.LoadManifest(ctx, store, id, i)
		if err != nil {
			return nil, fmt.Errorf("broker: manifest of %s/%d: %w", name, i, err)
		}
		rp := RestoredPartition{Partition: i, LogStart: m.LogStart, End: max(m.End(), m.LogStart), Segments: len(m.Segments)}
		if len(m.Segments) > 0 {
			rp.LogStart = max(rp.LogStart, m.Segments[0].Base)
		}
		dir := tier2.PartitionDir(segRoot, id, i)
		if err := tier2.WriteLogStart(fs, dir, rp.LogStart); err != nil {
			return nil, fmt.Errorf("broker: write log start of %s/%d: %w", name, i, err)
		}
		// The producer checkpoint's end is the log end a restart never
		// goes below: new records continue after the archived ones.
		if err := tier2.WriteProducers(fs, dir, rp.End, nil, tier2.Txns{}); err != nil {
			return nil, fmt.Errorf("broker: write log end of %s/%d: %w", name, i, err)
		}
		out = append(out, rp)
	}
	st.Topics = append(append([]metaTopic(nil), st.Topics...), metaTopic{Name: name, ID: ti.ID, Partitions: ti.Partitions, Configs: ti.Configs})
	if err := saveMeta(fs, dataDir, &st); err != nil {
		return nil, err
	}
	return out, nil
}
