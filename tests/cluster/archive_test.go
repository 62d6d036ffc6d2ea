package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// TestArchiveAcrossFailover: three brokers share one archive. Only the
// partition's leader uploads; followers delete their local copies once the
// leader's manifest covers them; after the leader is killed, a consumer
// reading from offset 0 gets every record from the new leader, which serves
// what it no longer holds locally from the archive.
func TestArchiveAcrossFailover(t *testing.T) {
	archive := t.TempDir()
	ns := newNodes(t, testharness.StartCluster(t, 3, testharness.Options{
		Env: []string{"CHRONIK_TIER3_URL=file://" + archive},
	}))
	waitFormed(t, ns, 3)
	ctx := context.Background()

	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "archived", 1, 3
	for k, v := range map[string]string{"segment.bytes": "1048576", "local.retention.bytes": "1048576", "min.insync.replicas": "2"} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, &v
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := ns[0].request(ctx, req)
	if err != nil || resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %+v", err, resp)
	}
	v := waitIdentical(t, ns, []string{"archived"})
	leader := ns[v.Topics["archived"][0].Leader-1]

	const n = 100_000
	var seeds []string
	for _, nd := range ns {
		seeds = append(seeds, nd.b.Addr())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("archived"), kgo.ProducerBatchMaxBytes(64<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // 11 MB: about ten segments
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%099d", i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// The leader archives; every replica then deletes its oldest local
	// segments.
	store, err := tier3.Open(ctx, "file://"+archive)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := tier3.FindTopic(ctx, store, "archived")
	if err != nil {
		t.Fatalf("archive has no topic description: %v", err)
	}
	testharness.CheckFor(t, 3*time.Minute, 100*time.Millisecond, func() error {
		m, err := tier3.LoadManifest(ctx, store, id, 0)
		if err != nil {
			return err
		}
		if m.End() < n/2 {
			return fmt.Errorf("archive ends at %d", m.End())
		}
		for _, nd := range ns {
			if base := firstLocalSegment(t, nd.b.DataDir(), id); base <= 0 {
				ents, _ := os.ReadDir(tier2.PartitionDir(filepath.Join(nd.b.DataDir(), "segments"), id, 0))
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				return fmt.Errorf("broker %d (leader %d): oldest local segment at %d; archive ends at %d; holds %v", nd.id, leader.id, base, m.End(), names)
			}
		}
		return nil
	})

	leader.b.Kill()
	c, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("archived"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	next := 0
	for next < n {
		fs := c.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("consumed %d of %d records after the failover", next, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if want := fmt.Sprintf("%099d", next); string(r.Value) != want || r.Offset != int64(next) {
				t.Fatalf("offset %d: got offset %d value %.12s…; want offset %d", next, r.Offset, r.Value, next)
			}
			next++
		})
	}
}

// firstLocalSegment returns the base offset of the oldest sealed segment a
// broker holds for partition 0 of the topic, or -1 without any.
func firstLocalSegment(t *testing.T, dataDir string, id [16]byte) int64 {
	dir := tier2.PartitionDir(filepath.Join(dataDir, "segments"), id, 0)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	first := int64(-1)
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		var base int64
		if _, err := fmt.Sscanf(name, "%d", &base); err == nil && (first < 0 || base < first) {
			first = base
		}
	}
	return first
}
