package cluster_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier2"
)

// TestScrubRepairsFromLeader: a follower's sealed segment gets a flipped
// bit in the middle of its log while the follower is down, where the
// checks made when segments load do not look. On restart the follower's
// scrubber finds the damage in its startup pass and rebuilds the segment
// from the partition's leader, byte for byte what it held before the
// damage (followers store the leader's batches as they are, though the
// two may cut segments at different batches).
func TestScrubRepairsFromLeader(t *testing.T) {
	ns := newNodes(t, testharness.StartCluster(t, 3, testharness.Options{}))
	waitFormed(t, ns, 3)
	ctx := context.Background()

	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "scrubbed", 1, 3
	for k, v := range map[string]string{"segment.bytes": "16384", "min.insync.replicas": "3"} {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = k, &v
		rt.Configs = append(rt.Configs, c)
	}
	req.Topics = append(req.Topics, rt)
	if resp, err := ns[0].request(ctx, req); err != nil || resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode != 0 {
		t.Fatalf("create: %v %+v", err, resp)
	}
	v := waitIdentical(t, ns, []string{"scrubbed"})
	leader := ns[v.Topics["scrubbed"][0].Leader-1]
	follower := ns[leader.id%3] // another broker, a replica with RF 3
	id := topicID(t, ns[0], "scrubbed")

	var seeds []string
	for _, nd := range ns {
		seeds = append(seeds, nd.b.Addr())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("scrubbed"), kgo.ProducerBatchMaxBytes(4<<10),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 3000 // about 20 segments of 16 KiB
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

	// A sealed segment of the follower, not its newest.
	var name string
	testharness.CheckFor(t, time.Minute, 50*time.Millisecond, func() error {
		fl := segmentLogs(follower.b.DataDir(), id)
		if len(fl) < 5 {
			return fmt.Errorf("follower %d holds %d sealed segments", follower.id, len(fl))
		}
		name = fl[len(fl)/2]
		return nil
	})
	if err := follower.b.Stop(); err != nil {
		t.Fatalf("stop follower: %v", err)
	}
	path := filepath.Join(tier2.PartitionDir(filepath.Join(follower.b.DataDir(), "segments"), id, 0), name)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(want)
	// A value byte in the middle batch: covered by its CRC.
	pos := 0
	for pos < len(data)/2 {
		pos += int(binary.BigEndian.Uint32(data[pos+8:])) + 12
	}
	data[pos-3] ^= 0x40
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	follower.b.Restart()
	testharness.CheckFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
		m := follower.b.Scrape()
		if m["chronik_segment_repairs_total"] < 1 || m["chronik_damaged_segments"] != 0 || m["chronik_scrub_bytes_total"] == 0 {
			return fmt.Errorf("follower %d: repairs %v, damaged %v, scrubbed %v bytes", follower.id,
				m["chronik_segment_repairs_total"], m["chronik_damaged_segments"], m["chronik_scrub_bytes_total"])
		}
		return nil
	})
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("repaired %s (%d bytes) differs from what the follower held before the damage (%d bytes)", name, len(got), len(want))
	}
	log, _ := os.ReadFile(follower.b.LogPath())
	if !bytes.Contains(log, []byte("sealed segment is damaged")) {
		t.Fatal("the follower's log does not name the damaged segment")
	}
	if from := fmt.Sprintf(`from="leader %d at `, leader.id); !bytes.Contains(log, []byte(from)) {
		t.Fatalf("the follower's log does not say it repaired the segment from leader %d", leader.id)
	}
}

// topicID asks n for topic's ID.
func topicID(t *testing.T, n *node, topic string) [16]byte {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := n.request(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	m := resp.(*kmsg.MetadataResponse)
	if len(m.Topics) != 1 || m.Topics[0].TopicID == [16]byte{} {
		t.Fatalf("metadata of %s: %+v", topic, m.Topics)
	}
	return m.Topics[0].TopicID
}

// segmentLogs lists the .log files of partition 0 of the topic in a
// broker's data directory, oldest first.
func segmentLogs(dataDir string, id [16]byte) []string {
	ents, _ := os.ReadDir(tier2.PartitionDir(filepath.Join(dataDir, "segments"), id, 0))
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}
