package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupBroker is testBroker with group timings short enough for tests.
func groupBroker(t testing.TB, dir string) *Broker {
	return testBroker(t, dir, func(c *Config) {
		c.GroupInitialRebalanceDelay = 0
		c.GroupMinSessionTimeout = 500 * time.Millisecond
	})
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func groupCreateTopic(t testing.TB, adm *kadm.Client, name string, partitions int32) {
	t.Helper()
	res, err := adm.CreateTopic(context.Background(), partitions, 1, nil, name)
	if err != nil || res.Err != nil {
		t.Fatalf("create topic %s: %v %v", name, err, res.Err)
	}
}

func groupProduceN(t testing.TB, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := 0; i < n; i++ {
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i)), Value: make([]byte, 100)}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// committed returns the group's committed offsets per partition of topic.
func committed(t testing.TB, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	resp, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		if o.Err == nil {
			out[p] = o.At
		}
	}
	return out
}

func groupStatus(b *Broker, name string) (state string, gen int32, members int) {
	return b.groups.Status(name)
}

// TestGroupCooperativeChurn: three cooperative-sticky consumers share a
// 6-partition topic while members join and leave; every record is processed
// and committed, and no record below a committed offset is redelivered.
func TestGroupCooperativeChurn(t *testing.T) {
	const (
		topic      = "churn"
		partitions = 6
		total      = 60_000
	)
	b := groupBroker(t, t.TempDir())
	prod := testClient(t, b, kgo.ProducerLinger(time.Millisecond))
	adm := kadm.NewClient(prod)
	groupCreateTopic(t, adm, topic, partitions)
	groupProduceN(t, prod, topic, total)

	var (
		mu        sync.Mutex
		seen      = map[int32]map[int64]int{}
		commitAt  = map[int32]int64{} // highest successful commit per partition
		processed atomic.Int64
		violation atomic.Value
	)
	for p := int32(0); p < partitions; p++ {
		seen[p] = map[int64]int{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := func(name string) (stop func()) {
		cl := testClient(t, b,
			kgo.ConsumerGroup("churn-group"),
			kgo.ConsumeTopics(topic),
			kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(),
			kgo.SessionTimeout(3*time.Second),
			kgo.HeartbeatInterval(300*time.Millisecond),
			kgo.FetchMaxBytes(64<<10),
			kgo.ClientID(name),
		)
		cctx, ccancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for cctx.Err() == nil {
				fs := cl.PollRecords(cctx, 500)
				recs := fs.Records()
				mu.Lock()
				for _, r := range recs {
					if r.Offset < commitAt[r.Partition] {
						violation.Store(fmt.Errorf("%s got partition %d offset %d below committed %d", name, r.Partition, r.Offset, commitAt[r.Partition]))
					}
					seen[r.Partition][r.Offset]++
				}
				mu.Unlock()
				processed.Add(int64(len(recs)))
				if len(recs) > 0 {
					if err := cl.CommitRecords(cctx, recs...); err == nil {
						mu.Lock()
						for _, r := range recs {
							commitAt[r.Partition] = max(commitAt[r.Partition], r.Offset+1)
						}
						mu.Unlock()
					}
				}
				cl.AllowRebalance()
				time.Sleep(2 * time.Millisecond) // let the churn overlap consumption
			}
		}()
		return func() {
			ccancel()
			<-done
			cl.AllowRebalance()
			cl.Close() // leaves the group
		}
	}

	stopA := start("a")
	stopB := start("b")
	checkFor(t, 30*time.Second, func() error {
		if n := processed.Load(); n < total/3 {
			return fmt.Errorf("processed %d", n)
		}
		return nil
	})
	stopC := start("c")
	checkFor(t, 30*time.Second, func() error {
		if n := processed.Load(); n < 2*total/3 {
			return fmt.Errorf("processed %d", n)
		}
		return nil
	})
	stopA()

	checkFor(t, 60*time.Second, func() error {
		offs := committed(t, adm, "churn-group", topic)
		var sum int64
		for _, o := range offs {
			sum += o
		}
		if sum != total {
			return fmt.Errorf("committed %d of %d (%v)", sum, total, offs)
		}
		return nil
	})
	stopB()
	stopC()
	if v := violation.Load(); v != nil {
		t.Fatal(v)
	}
	mu.Lock()
	defer mu.Unlock()
	distinct, dups := 0, 0
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, offs := range seen {
		end, _ := ends.Lookup(topic, p)
		if int64(len(offs)) != end.Offset {
			t.Fatalf("partition %d: processed %d distinct offsets of %d", p, len(offs), end.Offset)
		}
		for _, n := range offs {
			distinct++
			dups += n - 1
		}
	}
	if distinct != total {
		t.Fatalf("processed %d distinct records, want %d", distinct, total)
	}
	_, gen, _ := groupStatus(b, "churn-group")
	if gen < 3 {
		t.Fatalf("generation %d: members joining and leaving should have rebalanced at least 3 times", gen)
	}
	t.Logf("processed %d records, %d duplicates (uncommitted at a rebalance), %d generations", distinct, dups, gen)
}

// TestGroupOffsetsSurviveRestart: commits are durable across Close + New and
// a new group member resumes from them.
func TestGroupOffsetsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, dir)
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "durable", 2)
	groupProduceN(t, cl, "durable", 100)

	cons := testClient(t, b, kgo.ConsumerGroup("dg"), kgo.ConsumeTopics("durable"), kgo.DisableAutoCommit())
	ctx := testCtx(t)
	got := 0
	for got < 60 {
		fs := cons.PollRecords(ctx, 60-got)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
		if err := cons.CommitRecords(ctx, fs.Records()...); err != nil {
			t.Fatal(err)
		}
	}
	cons.Close()
	want := committed(t, adm, "dg", "durable")
	var sum int64
	for _, o := range want {
		sum += o
	}
	if sum != 60 {
		t.Fatalf("committed %v (sum %d), want 60 records", want, sum)
	}
	b.Close()

	b2 := groupBroker(t, dir)
	cl2 := testClient(t, b2)
	adm2 := kadm.NewClient(cl2)
	if gotOffs := committed(t, adm2, "dg", "durable"); fmt.Sprint(gotOffs) != fmt.Sprint(want) {
		t.Fatalf("after restart committed %v, want %v", gotOffs, want)
	}
	tds, err := adm2.ListTopicsWithInternal(ctx, offsetsTopic)
	if err != nil || !tds[offsetsTopic].IsInternal {
		t.Fatalf("%s not internal: %v %+v", offsetsTopic, err, tds[offsetsTopic])
	}

	cons2 := testClient(t, b2, kgo.ConsumerGroup("dg"), kgo.ConsumeTopics("durable"), kgo.DisableAutoCommit())
	got = 0
	for got < 40 {
		fs := cons2.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		for _, r := range fs.Records() {
			if r.Offset < want[r.Partition] {
				t.Fatalf("resumed partition %d at %d, below committed %d", r.Partition, r.Offset, want[r.Partition])
			}
			got++
		}
	}
	if got != 40 {
		t.Fatalf("resumed with %d records, want 40", got)
	}
}

// TestGroupStaticMembership: a static member restarting is replaced without
// a rebalance of the others.
func TestGroupStaticMembership(t *testing.T) {
	b := groupBroker(t, t.TempDir())
	adm := kadm.NewClient(testClient(t, b))
	groupCreateTopic(t, adm, "static", 4)
	var revokedB atomic.Int32
	member := func(id string, extra ...kgo.Opt) *kgo.Client {
		return testClient(t, b, append([]kgo.Opt{kgo.ConsumerGroup("sg"), kgo.ConsumeTopics("static"), kgo.InstanceID(id),
			// Eager: a cooperative follow-up round could land after the
			// Stable check below and look like a rebalance.
			kgo.Balancers(kgo.RangeBalancer()),
			kgo.SessionTimeout(20 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond)}, extra...)...)
	}
	ctx := testCtx(t)
	a := member("a")
	go a.PollFetches(ctx)
	bb := member("b", kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) { revokedB.Add(1) }))
	go func() {
		for ctx.Err() == nil {
			bb.PollFetches(ctx)
		}
	}()
	checkFor(t, 20*time.Second, func() error {
		st, _, n := groupStatus(b, "sg")
		if st != "Stable" || n != 2 {
			return fmt.Errorf("state %v with %d members", st, n)
		}
		return nil
	})
	_, gen, _ := groupStatus(b, "sg")
	revokes := revokedB.Load()

	a.Close() // a static member does not leave the group
	a2 := member("a")
	go a2.PollFetches(ctx)
	checkFor(t, 10*time.Second, func() error {
		if id, g := a2.GroupMetadata(); id != "" && g == gen {
			return nil
		}
		_, g := a2.GroupMetadata()
		return fmt.Errorf("restarted member at generation %d, want %d", g, gen)
	})
	st, gen2, n := groupStatus(b, "sg")
	if st != "Stable" || gen2 != gen || n != 2 || revokedB.Load() != revokes {
		t.Fatalf("after static restart: state %v generation %d (was %d) members %d, other member revoked %d times (was %d)",
			st, gen2, gen, n, revokedB.Load(), revokes)
	}

	// The stale member ID is fenced.
	_, gen3, _ := groupStatus(b, "sg")
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.Generation, hb.MemberID, hb.InstanceID = "sg", gen3, "a-stale", kmsg.StringPtr("a")
	resp, err := hb.RequestWith(ctx, testClient(t, b))
	if err != nil || resp.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("stale static heartbeat: %v %v, want FENCED_INSTANCE_ID", err, kerr.ErrorForCode(resp.ErrorCode))
	}
}

// rawJoin runs the KIP-394 join flow and returns the response.
func rawJoin(ctx context.Context, cl *kgo.Client, group, memberID, topic string, session int32) (*kmsg.JoinGroupResponse, error) {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{topic}
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = group, memberID, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = session, 10_000
	for _, name := range []string{"cooperative-sticky", "range"} {
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = name, meta.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if resp.ErrorCode == kerr.MemberIDRequired.Code {
		return rawJoin(ctx, cl, group, resp.MemberID, topic, session)
	}
	return resp, kerr.ErrorForCode(resp.ErrorCode)
}

// TestGroupSessionExpiry: a member that stops heartbeating is removed and
// the group rebalances around the live member.
func TestGroupSessionExpiry(t *testing.T) {
	b := groupBroker(t, t.TempDir())
	adm := kadm.NewClient(testClient(t, b))
	groupCreateTopic(t, adm, "expiry", 2)
	ctx := testCtx(t)
	live := testClient(t, b, kgo.ConsumerGroup("eg"), kgo.ConsumeTopics("expiry"),
		kgo.SessionTimeout(3*time.Second), kgo.HeartbeatInterval(100*time.Millisecond))
	go func() {
		for ctx.Err() == nil {
			live.PollFetches(ctx)
		}
	}()
	checkFor(t, 10*time.Second, func() error {
		if st, _, n := groupStatus(b, "eg"); st != "Stable" || n != 1 {
			return fmt.Errorf("state %v with %d members", st, n)
		}
		return nil
	})
	dead, err := rawJoin(ctx, testClient(t, b), "eg", "", "expiry", 800)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	checkFor(t, 10*time.Second, func() error {
		if st, gen, n := groupStatus(b, "eg"); st != "Stable" || n != 1 || gen <= dead.Generation {
			return fmt.Errorf("state %v generation %d members %d", st, gen, n)
		}
		return nil
	})
	if slices.Contains(b.groups.Members("eg"), dead.MemberID) {
		t.Fatal("expired member still in the group")
	}
}

// TestGroupBadInput: Kafka's error codes for bad group requests.
func TestGroupBadInput(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.GroupInitialRebalanceDelay = 0 })
	cl := testClient(t, b)
	adm := kadm.NewClient(cl)
	groupCreateTopic(t, adm, "bad", 1)
	ctx := testCtx(t)

	for _, session := range []int32{1000, int32(time.Hour / time.Millisecond)} {
		if _, err := rawJoin(ctx, cl, "bg", "", "bad", session); !errors.Is(err, kerr.InvalidSessionTimeout) {
			t.Fatalf("session %dms: %v, want INVALID_SESSION_TIMEOUT", session, err)
		}
	}
	join, err := rawJoin(ctx, cl, "bg", "", "bad", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if join.LeaderID != join.MemberID || join.Generation != 1 || *join.Protocol != "cooperative-sticky" {
		t.Fatalf("join: leader %s member %s generation %d protocol %v", join.LeaderID, join.MemberID, join.Generation, *join.Protocol)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.Generation, sync.MemberID = "bg", join.Generation, join.MemberID
	if resp, err := sync.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("sync: %v %v", err, resp)
	}

	commit := func(gen int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.Generation, req.MemberID = "bg", gen, join.MemberID
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = "bad", b.lookupTopic("bad").id
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Offset = 7
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit(join.Generation + 5); !errors.Is(err, kerr.IllegalGeneration) {
		t.Fatalf("commit with a wrong generation: %v, want ILLEGAL_GENERATION", err)
	}
	if err := commit(join.Generation); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if offs := committed(t, adm, "bg", "bad"); offs[0] != 7 {
		t.Fatalf("committed %v, want 7", offs)
	}

	del := func() error {
		res, err := adm.DeleteGroup(ctx, "bg")
		if err != nil {
			return err
		}
		return res.Err
	}
	if err := del(); !errors.Is(err, kerr.NonEmptyGroup) {
		t.Fatalf("delete non-empty group: %v, want NON_EMPTY_GROUP", err)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = "bg"
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID = join.MemberID
	leave.Members = append(leave.Members, lm)
	if resp, err := leave.RequestWith(ctx, cl); err != nil || resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %v %+v", err, resp)
	}
	if err := del(); err != nil {
		t.Fatalf("delete empty group: %v", err)
	}
	if err := del(); !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatalf("delete deleted group: %v, want GROUP_ID_NOT_FOUND", err)
	}
	if offs := committed(t, adm, "bg", "bad"); len(offs) != 0 {
		t.Fatalf("deleted group still has offsets %v", offs)
	}
}
