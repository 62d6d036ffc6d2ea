package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A follower's fetch in flight at its leader waits up to
// ReplicaFetchWaitMax for data of the partitions it names. A topic created
// meanwhile must not wait for that fetch to end: its first acks=all write
// is acknowledged as soon as the followers have it. With a wait far longer
// than the produce's timeout this holds only if (1) a follower cuts its
// fetch in flight short when it starts following a new partition, (2) a
// leader that has not applied the partition yet answers the follower's
// fetch or truncation at once rather than long-polling the rest, and (3)
// the follower retries that soon, not after its next long poll.
func TestFreshTopicNotHeldByLongPoll(t *testing.T) {
	nodes := testCluster(t, 3, func(i int, c *Config) {
		c.MinInsyncReplicas = 3
		c.ReplicaFetchWaitMax = 30 * time.Second
		c.ReplicaLagTimeMax = 2 * time.Minute // above the wait, as it must be
	})
	var seeds []string
	for _, nd := range nodes {
		seeds = append(seeds, nd.b.Addr().String())
	}
	// A topic every broker leads a partition of: each follower has a
	// fetch in flight at each leader, waiting.
	if _, err := nodes[0].b.createTopic("warm", 3, 3, nil, false); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProduceRequestTimeout(10*time.Second),
		kgo.RecordRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range int32(3) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "warm", Partition: p, Value: []byte("warm")}).FirstErr(); err != nil {
			t.Fatalf("warm-up write to partition %d: %v", p, err)
		}
	}
	for i := range 3 {
		name := fmt.Sprintf("fresh-%d", i)
		if _, err := nodes[i].b.createTopic(name, 1, 3, nil, false); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		err := cl.ProduceSync(pctx, &kgo.Record{Topic: name, Value: []byte("first")}).FirstErr()
		pcancel()
		if err != nil {
			t.Fatalf("first acks=all write to %s (followers' fetches wait up to 30 s): %v", name, err)
		}
		t.Logf("%s: first write acknowledged in %v", name, time.Since(began))
	}
}
