package ops_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
)

// startArgs are the arguments that start a broker as node id of a cluster
// whose voters are peers, on b's addresses, in dataDir.
func startArgs(b *testharness.Broker, id int, peers []*testharness.Broker, dataDir string) []string {
	var ps []string
	for i, p := range peers {
		ps = append(ps, fmt.Sprintf("%d@%s", i+1, p.RaftAddr()))
	}
	return []string{"start", "--node-id", fmt.Sprint(id), "--peers", strings.Join(ps, ","), "--raft-addr", b.RaftAddr(),
		"--kafka-addr", b.Addr(), "--advertised-addr", b.Addr(), "--http-addr", b.HTTPAddr(), "--data-dir", dataDir}
}

// untouched returns the listing of dir without the lock file a broker
// holds while it runs.
func untouched(t *testing.T, dir string) string {
	var keep []string
	for _, l := range strings.Split(listing(t, dir), "\n") {
		if !strings.HasPrefix(l, "LOCK ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// A data directory of one cluster started as a node of another is refused
// and left as it was: with its Raft state (the quorum would have to mix
// two clusters' logs) and without it (it would join the other quorum and
// reconcile its topics against it). Before, the second case deleted the
// directory's topics.
func TestDataDirOfAnotherClusterRefused(t *testing.T) {
	archiveA, archiveB := t.TempDir(), t.TempDir()
	a := testharness.StartCluster(t, 3, clusterOpts(archiveA))
	createTopic(t, addrs(a...), "a-topic", 1, 3, nil)
	produce(t, addrs(a...), "a-topic", 0, 1_000)
	idA := clusterID(t, addrs(a...))
	for _, b := range a {
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	bs := testharness.StartCluster(t, 3, clusterOpts(archiveB))
	idB := clusterID(t, addrs(bs...))
	if err := bs[1].Stop(); err != nil {
		t.Fatal(err)
	}
	dirA := a[1].DataDir()

	for _, c := range []struct {
		name string
		prep func()
	}{
		{"with its raft state", func() {}},
		{"without its raft state", func() { os.RemoveAll(filepath.Join(dirA, "raft")) }},
	} {
		c.prep()
		before := untouched(t, dirA)
		out, err := runChronik(t, 90*time.Second, archiveEnv(archiveB), startArgs(bs[1], 2, bs, dirA)...)
		if err == nil || !strings.Contains(out, "belongs to cluster") || !strings.Contains(out, idA) || !strings.Contains(out, idB) {
			t.Fatalf("%s: a node of cluster %s on cluster %s's data directory: %v; want a refusal naming both\n%s", c.name, idB, idA, err, out)
		}
		if after := untouched(t, dirA); after != before {
			t.Fatalf("%s: the refused data directory changed:\nbefore:\n%s\nafter:\n%s", c.name, before, after)
		}
	}
	// Cluster B is unharmed: its node 2 comes back and replicates.
	bs[1].Restart()
	createTopic(t, addrs(bs...), "b-topic", 1, 3, nil)
	waitFullISR(t, addrs(bs...), "b-topic")
}

// An archive claimed by one cluster is refused by a broker of another,
// which touches none of its objects; a fresh archive is claimed.
func TestArchiveOfAnotherClusterRefused(t *testing.T) {
	archive := t.TempDir()
	owner := testharness.Start(t, testharness.Options{Env: archiveEnv(archive)})
	createTopic(t, addrs(owner), "owned", 1, 1, tieredConfigs)
	produce(t, addrs(owner), "owned", 0, 20_000)
	waitArchived(t, archive, 1<<20)
	id := clusterID(t, addrs(owner))
	if err := owner.Stop(); err != nil {
		t.Fatal(err)
	}
	before := listing(t, archive)
	kafka, _ := testharness.FreeAddr()
	httpAddr, _ := testharness.FreeAddr()
	out, err := runChronik(t, 90*time.Second, archiveEnv(archive), "start", "--data-dir", t.TempDir(), "--kafka-addr", kafka, "--http-addr", httpAddr)
	if err == nil || !strings.Contains(out, "the archive") || !strings.Contains(out, id) {
		t.Fatalf("a broker of another cluster on the archive: %v; want a refusal naming cluster %s\n%s", err, id, out)
	}
	if after := listing(t, archive); after != before {
		t.Fatalf("the refused archive changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
