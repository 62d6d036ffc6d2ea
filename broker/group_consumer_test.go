package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// consumerGroupBroker is groupBroker with a fast KIP-848 heartbeat.
func consumerGroupBroker(t testing.TB) *Broker {
	return testBroker(t, t.TempDir(), func(c *Config) {
		c.GroupInitialRebalanceDelay = 0
		c.GroupMinSessionTimeout = 500 * time.Millisecond
		c.ConsumerGroupHeartbeatInterval = 100 * time.Millisecond
		c.ConsumerGroupSessionTimeout = 2 * time.Second
	})
}

type cgClient struct {
	t     *testing.T
	cl    *kgo.Client
	group string
	topic [16]byte
}

// hb sends one heartbeat; owned nil sends Topics nil (unchanged).
func (c *cgClient) hb(member string, epoch int32, owned []int32, mod func(*kmsg.ConsumerGroupHeartbeatRequest)) *kmsg.ConsumerGroupHeartbeatResponse {
	c.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version = 1
	req.Group, req.MemberID, req.MemberEpoch = c.group, member, epoch
	if epoch == 0 {
		req.SubscribedTopicNames = []string{"cg"}
		req.RebalanceTimeoutMillis = 2000
		uniform := "uniform"
		req.ServerAssignor = &uniform
	}
	if owned != nil || epoch == 0 {
		rt := kmsg.NewConsumerGroupHeartbeatRequestTopic()
		rt.TopicID, rt.Partitions = c.topic, owned
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if len(owned) > 0 {
			req.Topics = append(req.Topics, rt)
		}
	}
	if mod != nil {
		mod(req)
	}
	resp, err := req.RequestWith(context.Background(), c.cl)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func assigned(resp *kmsg.ConsumerGroupHeartbeatResponse) []int32 {
	if resp.Assignment == nil {
		return nil
	}
	var out []int32
	for _, t := range resp.Assignment.Topics {
		out = append(out, t.Partitions...)
	}
	slices.Sort(out)
	if out == nil {
		out = []int32{}
	}
	return out
}

func wantHB(t *testing.T, what string, resp *kmsg.ConsumerGroupHeartbeatResponse, code *kerr.Error, epoch int32, parts []int32) {
	t.Helper()
	if got := kerr.ErrorForCode(resp.ErrorCode); got != error(code) && !(got == nil && code == nil) {
		msg := ""
		if resp.ErrorMessage != nil {
			msg = *resp.ErrorMessage
		}
		t.Fatalf("%s: error %v (%s), want %v", what, got, msg, code)
	}
	if code != nil {
		return
	}
	if resp.MemberEpoch != epoch {
		t.Fatalf("%s: epoch %d, want %d", what, resp.MemberEpoch, epoch)
	}
	if got := assigned(resp); !slices.Equal(got, parts) {
		t.Fatalf("%s: assignment %v, want %v", what, got, parts)
	}
}

// TestConsumerGroupReconciliation drives the KIP-848 state machine by hand:
// a partition moves to a new member only after its old owner released it.
func TestConsumerGroupReconciliation(t *testing.T) {
	b := consumerGroupBroker(t)
	cl := testClient(t, b)
	groupCreateTopic(t, kadm.NewClient(cl), "cg", 4)
	c := &cgClient{t: t, cl: cl, group: "g848", topic: b.lookupTopic("cg").id}

	r := c.hb("m1", 0, nil, nil)
	wantHB(t, "m1 joins", r, nil, 1, []int32{0, 1, 2, 3})
	wantHB(t, "m1 steady", c.hb("m1", 1, []int32{0, 1, 2, 3}, nil), nil, 1, nil)

	wantHB(t, "m2 joins", c.hb("m2", 0, nil, nil), nil, 2, []int32{})
	// m1 must first give up two partitions, keeping its epoch.
	r = c.hb("m1", 1, nil, nil)
	wantHB(t, "m1 told to revoke", r, nil, 1, assigned(r))
	keep := assigned(r)
	if len(keep) != 2 {
		t.Fatalf("m1 keeps %v; want 2 partitions", keep)
	}
	// Until m1 releases them, m2 gets nothing and m1 stays at epoch 1.
	wantHB(t, "m2 waits", c.hb("m2", 2, []int32{}, nil), nil, 2, nil)
	wantHB(t, "m1 still owning", c.hb("m1", 1, []int32{0, 1, 2, 3}, nil), nil, 1, keep)
	// OffsetCommit at the old epoch is fine while revoking.
	commit := func(member string, epoch int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version = 9
		req.Group, req.MemberID, req.Generation = "g848", member, epoch
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "cg", c.topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = keep[0], 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(context.Background(), cl)
		if err != nil {
			t.Fatal(err)
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit("m1", 1); err != nil {
		t.Fatalf("commit at m1's epoch: %v", err)
	}
	if err := commit("m1", 5); err != kerr.FencedMemberEpoch {
		t.Fatalf("commit from the future: %v, want FENCED_MEMBER_EPOCH", err)
	}
	if err := commit("nobody", 1); err != kerr.UnknownMemberID {
		t.Fatalf("commit from a stranger: %v, want UNKNOWN_MEMBER_ID", err)
	}
	// m1 releases: it moves to epoch 2, then m2 gets the freed partitions.
	wantHB(t, "m1 released", c.hb("m1", 1, keep, nil), nil, 2, nil)
	r = c.hb("m2", 2, nil, nil)
	var freed []int32
	for p := int32(0); p < 4; p++ {
		if !slices.Contains(keep, p) {
			freed = append(freed, p)
		}
	}
	wantHB(t, "m2 assigned", r, nil, 2, freed)
	if err := commit("m1", 0); err != kerr.StaleMemberEpoch {
		t.Fatalf("commit two epochs back: %v, want STALE_MEMBER_EPOCH", err)
	}

	wantHB(t, "m2 from the future", c.hb("m2", 7, nil, nil), kerr.FencedMemberEpoch, 0, nil)
	wantHB(t, "stranger", c.hb("m9", 3, nil, nil), kerr.UnknownMemberID, 0, nil)

	// A classic member cannot join a consumer group.
	if _, err := rawJoin(context.Background(), cl, "g848", "", "cg", 6000); !isErr(err, kerr.InconsistentGroupProtocol) {
		t.Fatalf("JoinGroup into a consumer group: %v, want INCONSISTENT_GROUP_PROTOCOL", err)
	}

	// Describe.
	dreq := kmsg.NewPtrConsumerGroupDescribeRequest()
	dreq.Groups = []string{"g848", "nope"}
	dresp, err := dreq.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	d := dresp.Groups[0]
	if d.ErrorCode != 0 || d.State != "Stable" || d.Epoch != 2 || d.AssignmentEpoch != 2 || len(d.Members) != 2 || d.AssignorName != "uniform" {
		t.Fatalf("describe: %+v", d)
	}
	if dresp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("describe unknown group: error %d", dresp.Groups[1].ErrorCode)
	}

	// m1 leaves: m2 gets everything at the next epoch.
	wantHB(t, "m1 leaves", c.hb("m1", -1, nil, nil), nil, -1, nil)
	wantHB(t, "m2 takes all", c.hb("m2", 2, nil, nil), nil, 3, []int32{0, 1, 2, 3})
	// m2 stops heartbeating: its session expires and the group empties.
	checkFor(t, 10*time.Second, func() error {
		if _, _, n := b.groups.Status("g848"); n != 0 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	wantHB(t, "expired m2", c.hb("m2", 3, nil, nil), kerr.UnknownMemberID, 0, nil)
}

func isErr(err error, want *kerr.Error) bool {
	ke, ok := err.(*kerr.Error)
	return ok && ke == want
}

// TestConsumerGroupStatic: a static member that leaves with epoch -2 and
// comes back under a new member ID takes over its partitions without a new
// group epoch; while it is active its instance ID cannot be reused.
func TestConsumerGroupStatic(t *testing.T) {
	b := consumerGroupBroker(t)
	cl := testClient(t, b)
	groupCreateTopic(t, kadm.NewClient(cl), "cg", 2)
	c := &cgClient{t: t, cl: cl, group: "static848", topic: b.lookupTopic("cg").id}
	inst := func(id string) func(*kmsg.ConsumerGroupHeartbeatRequest) {
		return func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.InstanceID = &id }
	}
	wantHB(t, "a joins", c.hb("a1", 0, nil, inst("a")), nil, 1, []int32{0, 1})
	wantHB(t, "instance a reused", c.hb("a2", 0, nil, inst("a")), kerr.UnreleasedInstanceID, 0, nil)
	wantHB(t, "a leaves for now", c.hb("a1", -2, nil, inst("a")), nil, -2, nil)
	wantHB(t, "a back", c.hb("a2", 0, nil, inst("a")), nil, 1, []int32{0, 1})

	dg, err := kadm.NewClient(cl).DeleteGroups(context.Background(), "static848")
	if err != nil || dg["static848"].Err != kerr.NonEmptyGroup {
		t.Fatalf("deleting a consumer group with a member: %v %v, want NON_EMPTY_GROUP", err, dg["static848"].Err)
	}
	wantHB(t, "a leaves", c.hb("a2", -1, nil, inst("a")), nil, -1, nil)
	dg, err = kadm.NewClient(cl).DeleteGroups(context.Background(), "static848")
	if err != nil || dg["static848"].Err != nil {
		t.Fatalf("deleting the emptied consumer group: %v %v", err, dg["static848"].Err)
	}
}

// TestConsumerGroupFranz: franz-go consumers using KIP-848
// (kgo.ServerSideBalancer) share a topic while members join and leave;
// every record is processed exactly once, since every handover commits.
func TestConsumerGroupFranz(t *testing.T) {
	const (
		topic = "cg-franz"
		total = 30_000
	)
	b := consumerGroupBroker(t)
	prod := testClient(t, b, kgo.ProducerLinger(time.Millisecond))
	groupCreateTopic(t, kadm.NewClient(prod), topic, 6)
	groupProduceN(t, prod, topic, total)

	var (
		mu       sync.Mutex
		seen     = map[[2]int64]int{}
		byMember = map[string]int{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	start := func(name string) (*kgo.Client, context.CancelFunc) {
		cl := testClient(t, b,
			kgo.ConsumerGroup("franz848"), kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.BlockRebalanceOnPoll(), kgo.AutoCommitMarks(), kgo.AutoCommitInterval(100*time.Millisecond),
			kgo.FetchMaxPartitionBytes(2000), kgo.ClientID(name))
		mctx, mcancel := context.WithCancel(ctx)
		wg.Go(func() {
			for mctx.Err() == nil {
				fs := cl.PollRecords(mctx, 200)
				mu.Lock()
				fs.EachRecord(func(r *kgo.Record) { seen[[2]int64{int64(r.Partition), r.Offset}]++ })
				byMember[name] += fs.NumRecords()
				mu.Unlock()
				cl.MarkCommitRecords(fs.Records()...)
				cl.AllowRebalance()
				time.Sleep(20 * time.Millisecond) // keep consumption going while members come and go
			}
			cl.AllowRebalance()
		})
		return cl, mcancel
	}
	progress := func(n int) {
		t.Helper()
		checkFor(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) < n {
				return fmt.Errorf("%d records processed, waiting for %d", len(seen), n)
			}
			return nil
		})
	}
	members := func() int {
		_, _, n := b.groups.Status("franz848")
		return n
	}

	a, stopA := start("a")
	progress(2000)
	if members() != 1 {
		t.Fatalf("the franz-go member did not join through ConsumerGroupHeartbeat")
	}
	_, stopB := start("b")
	_, stopC := start("c")
	progress(10_000)
	checkFor(t, 10*time.Second, func() error {
		if n := members(); n != 3 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	// a leaves: its partitions move to b and c.
	stopA()
	a.Close()
	checkFor(t, 10*time.Second, func() error {
		if n := members(); n != 2 {
			return fmt.Errorf("%d members after a left", n)
		}
		return nil
	})
	mu.Lock()
	atLeave := len(seen)
	mu.Unlock()
	progress(total)
	if atLeave >= total {
		t.Fatalf("every record was processed before a left; slow the consumers down")
	}
	stopB()
	stopC()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("records processed per member: %v; %d processed after a left", byMember, total-atLeave)
	for _, name := range []string{"a", "b", "c"} {
		if byMember[name] == 0 {
			t.Errorf("member %s processed nothing", name)
		}
	}
	dups := 0
	for k, n := range seen {
		if n > 1 {
			dups++
			if dups < 5 {
				t.Errorf("record %v processed %d times", k, n)
			}
		}
	}
	if dups > 0 {
		t.Errorf("%d records processed more than once", dups)
	}
}

// TestConsumerGroupBadInput: malformed heartbeats get Kafka's error codes.
func TestConsumerGroupBadInput(t *testing.T) {
	b := consumerGroupBroker(t)
	cl := testClient(t, b)
	groupCreateTopic(t, kadm.NewClient(cl), "cg", 2)
	c := &cgClient{t: t, cl: cl, group: "bad848", topic: b.lookupTopic("cg").id}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		mod  func(*kmsg.ConsumerGroupHeartbeatRequest)
		want *kerr.Error
	}{
		{"epoch -3", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberEpoch = -3 }, kerr.InvalidRequest},
		{"no rebalance timeout", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.RebalanceTimeoutMillis = 0 }, kerr.InvalidRequest},
		{"no subscription", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicNames = nil }, kerr.InvalidRequest},
		{"no owned topics", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Topics = nil }, kerr.InvalidRequest},
		{"no member id", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.MemberID = "" }, kerr.InvalidRequest},
		{"bad regex", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.SubscribedTopicRegex = str("(") }, kerr.InvalidRegularExpression},
		{"unknown assignor", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.ServerAssignor = str("nope") }, kerr.UnsupportedAssignor},
		{"no group", func(r *kmsg.ConsumerGroupHeartbeatRequest) { r.Group = "" }, kerr.InvalidGroupID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			wantHB(t, tc.name, c.hb("x", 0, nil, tc.mod), tc.want, 0, nil)
		})
	}
	c.t = t

	// A classic group with a member refuses consumer-protocol members.
	ctx := testCtx(t)
	if _, err := rawJoin(ctx, cl, "classic", "", "cg", 6000); err != nil {
		t.Fatal(err)
	}
	c.group = "classic"
	wantHB(t, "into a classic group", c.hb("x", 0, nil, nil), kerr.InconsistentGroupProtocol, 0, nil)

	// A regex subscription matches whole topic names.
	c.group = "regex848"
	groupCreateTopic(t, kadm.NewClient(cl), "cg-other", 1)
	r := c.hb("re", 0, nil, func(r *kmsg.ConsumerGroupHeartbeatRequest) {
		r.SubscribedTopicNames, r.SubscribedTopicRegex = nil, str("cg")
	})
	wantHB(t, "regex", r, nil, 1, []int32{0, 1})
}
