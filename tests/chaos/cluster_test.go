package chaos_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
)

// node is one broker and a client pinned to it.
type node struct {
	id int32
	b  *testharness.Broker
	cl *kgo.Client
}

func newNodes(t *testing.T, bs []*testharness.Broker) []*node {
	var ns []*node
	for i, b := range bs {
		// Kafka 2.8's versions: Fetch v12 names topics (v13+ use IDs) and
		// reads from followers (KIP-392, v11+).
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.MaxVersions(kversion.V2_8_0()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		ns = append(ns, &node{id: int32(i + 1), b: b, cl: cl})
	}
	return ns
}

func (n *node) request(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.cl.SeedBrokers()[0].Request(ctx, req)
}

func (s *suite) node(id int32) *node { return s.nodes[id-1] }

// partitionMeta is one broker's view of a partition.
type partitionMeta struct {
	leader, epoch int32
	isr           []int32
}

// view is one broker's answer to Metadata for the topic.
type view struct {
	from       int32
	controller int32
	parts      map[int32]partitionMeta
}

// ask asks broker n for the topic's metadata; an answer with a partition
// error (no lease, no leader) is an error.
func (s *suite) ask(n *node) (view, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	name := topic
	rt.Topic = &name
	req.Topics = append(req.Topics, rt)
	resp, err := n.request(req, 3*time.Second)
	if err != nil {
		return view{}, fmt.Errorf("broker %d: %w", n.id, err)
	}
	mr := resp.(*kmsg.MetadataResponse)
	v := view{from: n.id, controller: mr.ControllerID, parts: map[int32]partitionMeta{}}
	for _, t := range mr.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return v, fmt.Errorf("broker %d: topic: %w", n.id, err)
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return v, fmt.Errorf("broker %d: partition %d: %w", n.id, p.Partition, err)
			}
			v.parts[p.Partition] = partitionMeta{leader: p.Leader, epoch: p.LeaderEpoch, isr: p.ISR}
		}
	}
	if len(v.parts) != partitions {
		return v, fmt.Errorf("broker %d: %d partitions, want %d", n.id, len(v.parts), partitions)
	}
	return v, nil
}

// metadata returns the first complete answer of a running broker other
// than skip (0 skips none): a paused or cut-off broker would only time out.
func (s *suite) metadata(skip int32) (view, error) {
	var errs []error
	for _, n := range s.nodes {
		if n.id == skip || !n.b.Running() {
			continue
		}
		v, err := s.ask(n)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return view{}, fmt.Errorf("no broker answered metadata: %w", errors.Join(errs...))
}

// agreedView waits until every broker answers Metadata with the same
// leader and epoch for every partition, and returns that view: a fault
// then targets the leader the whole cluster knows, not a stale one.
func (s *suite) agreedView(timeout time.Duration) (view, error) {
	var out view
	err := poll(timeout, 50*time.Millisecond, func() error {
		for i, n := range s.nodes {
			v, err := s.ask(n)
			if err != nil {
				return err
			}
			if i == 0 {
				out = v
				continue
			}
			for p, m := range v.parts {
				if o := out.parts[p]; o.leader != m.leader || o.epoch != m.epoch {
					return fmt.Errorf("partition %d: broker %d sees leader %d at epoch %d, broker %d leader %d at epoch %d",
						p, out.from, o.leader, o.epoch, n.id, m.leader, m.epoch)
				}
			}
		}
		return nil
	})
	return out, err
}

// waitFullISR waits until every broker answers Metadata with every
// partition led, by the same leaders, with all three replicas in the ISR.
// It returns how long that took.
func (s *suite) waitFullISR(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := testharness.Poll(timeout, 100*time.Millisecond, func() error {
		var first view
		for i, n := range s.nodes {
			v, err := s.ask(n)
			if err != nil {
				return err
			}
			for p, m := range v.parts {
				if m.leader < 1 || len(m.isr) != 3 {
					return fmt.Errorf("broker %d sees partition %d with leader %d, ISR %v", n.id, p, m.leader, m.isr)
				}
				if i > 0 && first.parts[p].leader != m.leader {
					return fmt.Errorf("partition %d: broker %d sees leader %d, broker %d leader %d",
						p, first.from, first.parts[p].leader, n.id, m.leader)
				}
			}
			if i == 0 {
				first = v
			}
		}
		return nil
	})
	return time.Since(start), err
}

// waitLeaderMoved waits until a broker other than skip names a leader of
// p other than old, at an epoch above oldEpoch: the fault really moved
// the partition.
func (s *suite) waitLeaderMoved(p, old, oldEpoch, skip int32) (partitionMeta, error) {
	var got partitionMeta
	err := testharness.Poll(30*time.Second, 50*time.Millisecond, func() error {
		v, err := s.metadata(skip)
		if err != nil {
			return err
		}
		got = v.parts[p]
		if got.leader == old || got.leader < 1 || got.epoch <= oldEpoch {
			return fmt.Errorf("partition %d: leader %d epoch %d (was %d at epoch %d)", p, got.leader, got.epoch, old, oldEpoch)
		}
		return nil
	})
	return got, err
}

// controller returns the controller (Raft) leader that two brokers other
// than skip name in Metadata (asked for no topics, so partitions without
// a leader do not matter).
func (s *suite) controller(skip int32) (int32, error) {
	votes := map[int32]int{}
	var errs []error
	for _, n := range s.nodes {
		if n.id == skip || !n.b.Running() {
			continue
		}
		req := kmsg.NewPtrMetadataRequest()
		req.Topics = []kmsg.MetadataRequestTopic{} // none (null would be all)
		resp, err := n.request(req, 3*time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %d: %w", n.id, err))
			continue
		}
		votes[resp.(*kmsg.MetadataResponse).ControllerID]++
	}
	for id, n := range votes {
		if id > 0 && id != skip && n >= 2 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no controller named by two brokers: votes %v, errors %v", votes, errors.Join(errs...))
}

func (s *suite) admin() *kadm.Client {
	var seeds []string
	for _, n := range s.nodes {
		seeds = append(seeds, n.b.Addr())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func (s *suite) createTopic() {
	t := s.t
	configs := map[string]*string{
		"min.insync.replicas":   kadm.StringPtr("2"),
		"segment.ms":            kadm.StringPtr(strconv.Itoa(segmentMs)),
		"segment.bytes":         kadm.StringPtr(strconv.Itoa(segmentBytes)),
		"local.retention.bytes": kadm.StringPtr(strconv.Itoa(localRetentionBytes)),
		// The whole log is kept (archive included), so it must read back
		// from offset 0 at the end.
		"retention.ms":    kadm.StringPtr("-1"),
		"retention.bytes": kadm.StringPtr("-1"),
	}
	adm := s.admin()
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, partitions, 3, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("create topic: %w (%s)", err, resp.ErrMessage)
		}
		s.topicID = resp.ID
		return nil
	})
}

// alterTopic sets topic configs through IncrementalAlterConfigs.
func (s *suite) alterTopic(kv ...string) error {
	var cs []kadm.AlterConfig
	for i := 0; i < len(kv); i += 2 {
		cs = append(cs, kadm.AlterConfig{Name: kv[i], Value: kadm.StringPtr(kv[i+1])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resps, err := s.admin().AlterTopicConfigs(ctx, cs, topic)
	if err != nil {
		return err
	}
	for _, r := range resps {
		if r.Err != nil {
			return fmt.Errorf("%s: %w (%s)", r.Name, r.Err, r.ErrMessage)
		}
	}
	return nil
}

// manifest reads partition p's archive manifest as stored, without the
// validation tier3.LoadManifest does, so a broken one can be described.
// A partition never archived has an empty manifest.
func (s *suite) manifest(p int32) (*tier3.Manifest, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, _, err := tier3.ReadAll(ctx, s.store, tier3.PartitionPrefix(s.topicID, p)+"manifest.json")
	if errors.Is(err, tier3.ErrNotFound) {
		return &tier3.Manifest{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("partition %d: reading the manifest: %w", p, err)
	}
	var m tier3.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("partition %d: manifest: %w", p, err)
	}
	return &m, nil
}

// overlaps describes the first place where partition p's archive
// overlaps itself or has a gap, or returns "".
func overlaps(m *tier3.Manifest) string {
	for i := 1; i < len(m.Segments); i++ {
		prev, e := m.Segments[i-1], m.Segments[i]
		if e.Base < prev.Next {
			return fmt.Sprintf("segment [%d,%d) overlaps [%d,%d)", e.Base, e.Next, prev.Base, prev.Next)
		}
		if e.Base > prev.Next {
			return fmt.Sprintf("offsets [%d,%d) missing", prev.Next, e.Base)
		}
	}
	return ""
}

// describeSegments lists a manifest's segments compactly, for failure
// messages: [base,next) size.
func describeSegments(m *tier3.Manifest, around int64) string {
	var parts []string
	for i, e := range m.Segments {
		if around >= 0 && (e.Next < around-20000 || e.Base > around+20000) {
			continue
		}
		parts = append(parts, fmt.Sprintf("#%d [%d,%d) %dB", i, e.Base, e.Next, e.Size))
	}
	return strings.Join(parts, " ")
}

// partDir is broker n's directory of partition p's sealed segments.
func (s *suite) partDir(n *node, p int32) string {
	return filepath.Join(n.b.DataDir(), "segments", hex.EncodeToString(s.topicID[:])+"-"+strconv.Itoa(int(p)))
}

// localSegments returns the sealed segment files (.log) in a partition
// directory and their total size.
func localSegments(dir string) (count int, bytes int64, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted by retention meanwhile
		}
		if err != nil {
			return 0, 0, err
		}
		count++
		bytes += info.Size()
	}
	return count, bytes, nil
}

type rec struct {
	offset int64
	value  string
}

// highWatermark asks broker n for partition p's high watermark with an
// empty fetch at from (at or below the high watermark it is answered
// without reading a record), else at offset 0.
func (s *suite) highWatermark(n *node, p int32, from int64) (int64, error) {
	frp, err := s.fetch(n, p, from, 1)
	if err != nil && from > 0 {
		frp, err = s.fetch(n, p, 0, 1)
	}
	if err != nil {
		return 0, err
	}
	return frp.HighWatermark, nil
}

func (s *suite) fetch(n *node, p int32, offset int64, maxBytes int32) (*kmsg.FetchResponseTopicPartition, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MaxBytes = max(maxBytes, 1)
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, offset, maxBytes
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := n.request(req, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("fetch %d@%d from broker %d: %w", p, offset, n.id, err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
		return nil, fmt.Errorf("fetch %d@%d from broker %d: %d topics in the response", p, offset, n.id, len(fr.Topics))
	}
	frp := &fr.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(frp.ErrorCode); err != nil {
		return frp, fmt.Errorf("fetch %d@%d from broker %d: %w", p, offset, n.id, err)
	}
	return frp, nil
}

// readReplica reads partition p from broker n (leader or follower,
// KIP-392) from offset 0 up to its high watermark. A retriable error or
// an empty answer below the high watermark (an archive still loading) is
// retried for up to 30 s at that offset, and not after deadline.
func (s *suite) readReplica(n *node, p int32, deadline time.Time) ([]rec, int64, error) {
	var out []rec
	var hw int64 = -1
	offset := int64(0)
	var stuckSince time.Time
	for hw < 0 || offset < hw {
		frp, err := s.fetch(n, p, offset, 4<<20)
		var fp kgo.FetchPartition
		if err == nil {
			hw = frp.HighWatermark
			fp, _ = kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: topic, Partition: p, Offset: offset},
				frp, kgo.DefaultDecompressor(), nil)
			err = fp.Err
			if err == nil && len(fp.Records) == 0 && offset < hw {
				err = fmt.Errorf("broker %d returned nothing for partition %d at %d below its high watermark %d", n.id, p, offset, hw)
			}
		}
		if err != nil {
			var ke *kerr.Error
			if errors.As(err, &ke) && !ke.Retriable {
				return out, hw, err
			}
			if stuckSince.IsZero() {
				stuckSince = time.Now()
			}
			if time.Since(stuckSince) > 30*time.Second || time.Now().After(deadline) {
				return out, hw, fmt.Errorf("for %v: %w", time.Since(stuckSince).Round(time.Second), err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		stuckSince = time.Time{}
		for _, r := range fp.Records {
			if r.Offset >= hw {
				return out, hw, fmt.Errorf("broker %d served offset %d of partition %d above its high watermark %d", n.id, r.Offset, p, hw)
			}
			out = append(out, rec{r.Offset, string(r.Value)})
			offset = r.Offset + 1
		}
	}
	return out, hw, nil
}

// equalRecs compares two replicas' records and describes the first
// difference.
func equalRecs(a, b []rec) string {
	if slices.Equal(a, b) {
		return ""
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at index %d: offset %d %q vs offset %d %q", i, a[i].offset, a[i].value, b[i].offset, b[i].value)
		}
	}
	return fmt.Sprintf("%d vs %d records, equal as far as both go", len(a), len(b))
}
