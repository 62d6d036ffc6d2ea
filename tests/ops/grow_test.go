package ops_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/chronik-go/chronik/internal/testharness"
)

// docs/cluster.md, "Grow a standalone broker into a cluster": a standalone
// broker with an archived topic is stopped and started again on the same
// data directory as node 1 of a three-broker cluster. The cluster takes
// the standalone broker's cluster ID, adopts its topic (node 1 its only
// replica and leader) and serves every record, archived ones included;
// new records follow. Before, the new controller's reconciler deleted the
// topic and, with Tier 3 on, its archive.
func TestGrowStandaloneIntoCluster(t *testing.T) {
	archive := t.TempDir()
	env := archiveEnv(archive)
	sa := testharness.Start(t, testharness.Options{Env: env})
	const n = 50_000
	createTopic(t, addrs(sa), "keep", 3, 1, tieredConfigs)
	produce(t, addrs(sa), "keep", 0, n)
	waitArchived(t, archive, 2<<20)
	idBefore := clusterID(t, addrs(sa))
	if err := sa.Stop(); err != nil {
		t.Fatal(err)
	}

	bs := testharness.StartCluster(t, 3, testharness.Options{Env: env, DataDirs: []string{sa.DataDir()}})
	seeds := addrs(bs...)
	waitTopicLeaders(t, seeds, "keep", 3)
	if got := clusterID(t, seeds); got != idBefore {
		t.Fatalf("the grown cluster is %s; the standalone broker's was %s", got, idBefore)
	}
	consumeAll(t, seeds, "keep", n)
	produce(t, seeds, "keep", n, n+5_000)
	consumeAll(t, seeds, "keep", n+5_000)

	// Replicate it: three replicas, acks=all on two; then the first broker
	// may go and every record is still served.
	out, err := runChronik(t, 2*time.Minute, nil, "topic", "reassign", "keep", "--replication-factor", "3", "--wait", "-b", strings.Join(seeds, ","))
	if err != nil {
		t.Fatalf("chronik topic reassign: %v\n%s", err, out)
	}
	t.Logf("chronik topic reassign:\n%s", out)
	if out, err := runChronik(t, time.Minute, nil, "topic", "alter", "keep", "--config", "min.insync.replicas=2", "-b", strings.Join(seeds, ",")); err != nil {
		t.Fatalf("chronik topic alter: %v\n%s", err, out)
	}
	waitFullISR(t, seeds, "keep")
	bs[0].Kill()
	rest := addrs(bs[1:]...)
	produce(t, rest, "keep", n+5_000, n+6_000)
	consumeAll(t, rest, "keep", n+6_000)
}

// clusterID asks the brokers for the cluster's ID.
func clusterID(t *testing.T, seeds []string) string {
	t.Helper()
	adm := kadm.NewClient(client(t, seeds))
	var id string
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		if m.Cluster == "" {
			return fmt.Errorf("no cluster ID yet")
		}
		id = m.Cluster
		return nil
	})
	return id
}

// waitTopicLeaders waits until every partition of topic has a leader.
func waitTopicLeaders(t *testing.T, seeds []string, topic string, partitions int) {
	t.Helper()
	adm := kadm.NewClient(client(t, seeds))
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m, err := adm.Metadata(ctx, topic)
		if err != nil {
			return err
		}
		td, ok := m.Topics[topic]
		if !ok || td.Err != nil || len(td.Partitions) != partitions {
			return fmt.Errorf("topic %s: %v %v", topic, ok, td.Err)
		}
		var bad []string
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				bad = append(bad, fmt.Sprintf("%d: leader %d %v", p.Partition, p.Leader, p.Err))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("partitions without a leader: %s", strings.Join(bad, ", "))
		}
		return nil
	})
}
