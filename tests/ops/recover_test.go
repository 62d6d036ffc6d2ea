package ops_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/chronik-go/chronik/internal/testharness"
)

// clusterOpts are the brokers of a three-broker cluster on a shared
// archive, acks=all needing two replicas.
func clusterOpts(archive string) testharness.Options {
	return testharness.Options{Env: archiveEnv(archive),
		Args: []string{"--default-replication-factor", "3", "--min-insync-replicas", "2"}}
}

// startTieredCluster starts three brokers on a new shared archive, with
// topic (RF 3, tiered) holding n acknowledged records in full ISR, and
// returns the brokers, their addresses and the cluster ID.
func startTieredCluster(t *testing.T, topic string, partitions int32, n int) ([]*testharness.Broker, []string, string) {
	t.Helper()
	bs := testharness.StartCluster(t, 3, clusterOpts(t.TempDir()))
	seeds := addrs(bs...)
	createTopic(t, seeds, topic, partitions, 3, tieredConfigs)
	produce(t, seeds, topic, 0, n)
	waitFullISR(t, seeds, topic)
	return bs, seeds, clusterID(t, seeds)
}

// waitFullISR waits until every partition of topic has a leader and all
// three replicas in sync.
func waitFullISR(t *testing.T, seeds []string, topic string) {
	t.Helper()
	adm := kadm.NewClient(client(t, seeds))
	testharness.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := adm.Metadata(ctx, topic)
		if err != nil {
			return err
		}
		td := m.Topics[topic]
		if td.Err != nil || len(td.Partitions) == 0 {
			return fmt.Errorf("topic %s: %v", topic, td.Err)
		}
		for _, p := range td.Partitions {
			if p.Leader < 0 || len(p.ISR) != 3 {
				return fmt.Errorf("partition %d: leader %d ISR %v", p.Partition, p.Leader, p.ISR)
			}
		}
		return nil
	})
}

// docs/cluster.md, "Replace a broker whose disk died": a broker is killed,
// its data directory emptied (a new disk) and it is started again with
// the same node ID and addresses. It joins the controller quorum that
// holds the metadata (it does not bootstrap one), leaves every ISR until
// it has caught up (the leaders' local logs, not the archive), and then
// holds every record: the cluster serves them all after the other two
// brokers are stopped in turn.
func TestReplaceBrokerWhoseDiskDied(t *testing.T) {
	const n = 40_000
	bs, seeds, id := startTieredCluster(t, "orders", 3, n)

	dead := bs[1]
	dead.Kill()
	files, _ := dead.WipeDataDir()
	if files == 0 {
		t.Fatal("the data directory was empty before the wipe")
	}
	produce(t, seeds, "orders", n, n+5_000) // while it is away
	dead.Restart()
	waitFullISR(t, seeds, "orders")
	if got := clusterID(t, addrs(dead)); got != id {
		t.Fatalf("the replaced broker says cluster %s; the cluster is %s", got, id)
	}
	// The new disk alone holds the data: every record is read back with
	// each of the other brokers down in turn.
	for _, other := range []*testharness.Broker{bs[0], bs[2]} {
		if err := other.Stop(); err != nil {
			t.Fatal(err)
		}
		consumeAll(t, seeds, "orders", n+5_000)
		other.Restart()
		waitFullISR(t, seeds, "orders")
	}
}

// docs/cluster.md, "Recover from a lost controller quorum": every node
// loses its Raft directory (the metadata) while the data directories
// survive. Started again, the nodes refuse to form an empty quorum over
// that data and exit saying how to recover; started once with
// --controller-recover, they form a new quorum under the same cluster ID,
// adopt every topic back from the brokers' logs and serve every record.
// Before, the nodes formed a new, empty cluster and deleted every topic.
func TestRecoverLostControllerQuorum(t *testing.T) {
	const n = 30_000
	bs, seeds, id := startTieredCluster(t, "ledger", 3, n)
	for _, b := range bs {
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bs {
		if err := os.RemoveAll(filepath.Join(b.DataDir(), "raft")); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bs {
		b.TryRestart() // the last to come refuses at once, the others once it answers
	}
	for i, b := range bs {
		err, exited := b.Exited(60 * time.Second)
		if !exited || err == nil {
			t.Fatalf("broker %d over a lost quorum: exited %v (%v); want it to refuse", i+1, exited, err)
		}
	}
	for i, b := range bs {
		if log, _ := os.ReadFile(b.LogPath()); !strings.Contains(string(log), "--controller-recover") {
			t.Fatalf("broker %d's refusal does not name --controller-recover", i+1)
		}
	}

	for _, b := range bs {
		b.AddArgs("--controller-recover")
		b.Restart()
	}
	waitTopicLeaders(t, seeds, "ledger", 3)
	if got := clusterID(t, seeds); got != id {
		t.Fatalf("the recovered cluster is %s; it was %s", got, id)
	}
	consumeAll(t, seeds, "ledger", n)
	waitFullISR(t, seeds, "ledger")
	produce(t, seeds, "ledger", n, n+1_000)
	consumeAll(t, seeds, "ledger", n+1_000)
}

// docs/tier3.md, "Restore a topic into a new cluster": the cluster is lost
// with every data directory; its archive survives. The topic is restored
// into the data directory of one node of a new cluster, which takes the
// archive's cluster ID, and the new cluster adopts the topic: every
// archived record is served and new records continue after them.
func TestRestoreTopicIntoNewCluster(t *testing.T) {
	archive := t.TempDir()
	old := testharness.StartCluster(t, 3, clusterOpts(archive))
	seeds := addrs(old...)
	const n = 30_000
	createTopic(t, seeds, "events", 2, 3, tieredConfigs)
	produce(t, seeds, "events", 0, n)
	id := clusterID(t, seeds)
	// Everything sealed and archived: the restore brings back what the
	// archive holds.
	archivedEnd := waitArchiveEnds(t, seeds, "events", n)
	for _, b := range old {
		b.Kill()
	}

	dir := t.TempDir()
	out, err := runChronik(t, time.Minute, archiveEnv(archive), "topic", "restore", "events", "--data-dir", dir)
	if err != nil {
		t.Fatalf("chronik topic restore: %v\n%s", err, out)
	}
	bs := testharness.StartCluster(t, 3, testharness.Options{Env: archiveEnv(archive), DataDirs: []string{dir},
		Args: []string{"--default-replication-factor", "3", "--min-insync-replicas", "2"}})
	seeds = addrs(bs...)
	waitTopicLeaders(t, seeds, "events", 2)
	if got := clusterID(t, seeds); got != id {
		t.Fatalf("the new cluster is %s; the archive's cluster was %s", got, id)
	}
	if archivedEnd != n {
		t.Fatalf("the archive ends at %d records of %d", archivedEnd, n)
	}
	consumeAll(t, seeds, "events", n)
	produce(t, seeds, "events", n, n+2_000)
	consumeAll(t, seeds, "events", n+2_000)
}

// waitArchiveEnds waits until the archive holds every one of the topic's
// want records (ListOffsets latest tiered, summed over partitions) and
// returns how many it holds.
func waitArchiveEnds(t *testing.T, seeds []string, topic string, want int) int {
	t.Helper()
	adm := kadm.NewClient(client(t, seeds))
	var got int
	testharness.CheckFor(t, 2*time.Minute, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		offs, err := adm.ListOffsetsAfterMilli(ctx, -5, topic) // -5: the last archived offset
		if err != nil {
			return err
		}
		got = 0
		var ferr error
		offs.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				ferr = o.Err
			}
			got += int(o.Offset + 1)
		})
		if ferr != nil {
			return ferr
		}
		if got < want {
			return fmt.Errorf("the archive holds %d of %d records", got, want)
		}
		return nil
	})
	return got
}
