package groups_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// maxResume is how soon after its coordinator's broker dies a group must
// commit again: a functional requirement (the group's offsets live in a
// replicated partition whose leadership moves to a follower), not a
// performance target, so the bound is generous and the measured time is
// always logged.
const maxResume = 10 * time.Second

// failoverRecords is the topic size of each TestCoordinatorFailover run.
func failoverRecords(t *testing.T) int {
	if s := os.Getenv("CHRONIK_FAILOVER_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10_000 {
			t.Fatalf("CHRONIK_FAILOVER_RECORDS=%q: want a number of at least 10000", s)
		}
		return n
	}
	return 60_000
}

// TestCoordinatorFailover: three brokers, a 6-partition topic with
// replication factor 3, and a group of three members of one client kind
// consuming it with commits. Mid-consumption the broker coordinating the
// group is killed (SIGKILL); in the wipe round its data directory is also
// deleted before it comes back. While it is down:
//
//   - the group must commit again, through a new coordinator, within
//     maxResume of the kill. "Resumed" is measured from outside the clients:
//     polling OffsetFetch (each time through a new client seeded with every
//     broker), the first answer after the kill is the new coordinator's
//     view; the group has resumed when a later answer shows any partition's
//     committed offset past it, i.e. when the new coordinator acknowledged a
//     commit made after the kill. (Reading the members' output would not
//     do: the test paces them through their stdout pipes, so what it reads
//     lags what they did by up to a few thousand lines.)
//   - librdkafka's committed() (a fresh consumer of the group, through
//     ./confluentworker -committed) and kadm's FetchOffsets must answer, with
//     every offset at or past what was acknowledged before the kill: what
//     the coordinator served just before it, and the commits the members
//     reported.
//
// Then the broker is restarted, the group finishes the topic, and, as in the
// other tests: every record was processed, duplicates stay within what the
// members had processed but not committed (every member is disrupted: losing
// the coordinator can cost a member its assignment), and the committed
// offsets end at the end of every partition.
//
// Both rounds run every client kind: about four minutes on two cores.
func TestCoordinatorFailover(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("needs a cluster of chronik brokers")
	}
	kinds := []clientKind{franz, sarama, confluent, franz848, confluent848}
	bins := map[clientKind]string{
		sarama:    workerBinary(t, sarama),
		confluent: workerBinary(t, confluent),
	}
	bins[confluent848] = bins[confluent]
	began := time.Now()
	var resumes []string
	for _, round := range []struct {
		name  string
		wipe  bool
		kinds []clientKind
	}{{"kill", false, kinds}, {"wipe", true, kinds}} {
		t.Run(round.name, func(t *testing.T) {
			for _, kind := range round.kinds {
				t.Run(string(kind), func(t *testing.T) {
					f := &failover{t: t, kind: kind, round: round.name, wipe: round.wipe, worker: bins[kind], confluentBin: bins[confluent]}
					f.run()
					if f.resumed > 0 {
						resumes = append(resumes, fmt.Sprintf("%s/%s %v", round.name, kind, f.resumed.Round(10*time.Millisecond)))
					} else {
						resumes = append(resumes, fmt.Sprintf("%s/%s not resumed", round.name, kind))
					}
				})
			}
		})
	}
	t.Logf("group resumed after the coordinator was killed: %s; whole test %v", strings.Join(resumes, ", "), time.Since(began).Round(time.Second))
}

// failover is one run of TestCoordinatorFailover.
type failover struct {
	t            *testing.T
	kind         clientKind
	round        string
	wipe         bool
	worker       string // the member binary, for sarama and confluent kinds
	confluentBin string // for the committed() check

	bs    []*testharness.Broker
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	g     *group

	resumed time.Duration // kill to the group's first commit through the new coordinator
}

func (f *failover) run() {
	t := f.t
	n := failoverRecords(t)
	f.topic = "failover-" + string(f.kind)
	ends := f.setup(n)
	began := time.Now()
	pace := &pacer{}
	// Slow enough that about three quarters of the topic is left when the
	// coordinator dies, so the group still has records to process (and
	// offsets to commit) through the failover, the checks and the restart.
	pace.perMember.Store(int64(max(n/60, 1000)))
	f.g = &group{t: t, kind: f.kind, addr: strings.Join(f.seeds(), ","), topic: f.topic,
		name: "failover-" + f.round + "-" + string(f.kind), worker: f.worker, pace: pace}
	g := f.g
	for range 3 {
		g.start()
	}
	waitProcessed(t, g, int64(n)/4, 3*time.Second)
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if len(g.acknowledged()) == 0 {
			return fmt.Errorf("no member has reported a commit yet")
		}
		return nil
	})

	victim := f.coordinator()
	// What the coordinator serves just before it dies was acknowledged:
	// a commit is served once it is replicated. The members' own reports
	// add commits acknowledged after this fetch; they reach the test
	// through the paced pipes, so they lag, but they cannot run ahead.
	acked, err := f.committed(5 * time.Second)
	if err != nil {
		t.Fatalf("committed offsets before the kill: %v", err)
	}
	killed := time.Now()
	victim.Kill()
	for p, o := range g.acknowledged() {
		acked[p] = max(acked[p], o)
	}
	t.Logf("killed broker %s, the coordinator of group %s, %v after the members started, at %d records processed; commits acknowledged before: %v",
		victim.Addr(), g.name, killed.Sub(began).Round(time.Millisecond), g.processed.Load(), acked)

	f.waitResume(killed)
	if victim.Running() {
		t.Fatalf("the killed broker is running again")
	}
	f.checkCommitted(acked)
	// The controller fenced the dead broker: it is out of the ISR of the
	// group's offsets partition, so the wait below for it to be back in
	// sync does not pass on a stale ISR.
	f.waitOffsetsISR(victim, false)

	if f.wipe {
		files, size := victim.WipeDataDir()
		t.Logf("wiped the killed broker's data directory: %d files, %d bytes", files, size)
	}
	down := time.Since(killed)
	victim.Restart()
	restarted := time.Now()
	t.Logf("restarted the killed broker after %v down", down.Round(time.Millisecond))
	// The group goes on, paced, until the broker is a replica in sync of
	// the group's offsets partition again (in the wipe round, copied from
	// the others).
	f.waitOffsetsISR(victim, true)
	t.Logf("the restarted broker was back in sync on the group's offsets partition %v after its restart", time.Since(restarted).Round(time.Millisecond))
	g.pace.perMember.Store(0)
	f.waitCommitted(ends)
	finish(t, g, f.adm, ends)

	// Losing the coordinator can cost every member its assignment: each
	// may re-read what it had processed but not committed.
	v := g.verify(ends, func(*member) bool { return true })
	t.Logf("%s/%s: %v in %v", f.round, f.kind, v, time.Since(began).Round(time.Millisecond))
	if v.missing > 0 {
		t.Errorf("%d records never processed", v.missing)
	}
	checkVerdict(t, v)
	f.checkFinalCommits(ends)
}

// setup starts the cluster, creates the topic with replication factor 3
// once all three brokers serve, fills it with n records and returns its end
// offsets.
func (f *failover) setup(n int) map[int32]int64 {
	t := f.t
	f.bs = testharness.StartCluster(t, 3, testharness.Options{})
	cl, adm := producer(t, f.seeds()...)
	f.cl, f.adm = cl, adm
	testharness.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, partitions, 3, nil, f.topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !strings.Contains(err.Error(), "TOPIC_ALREADY_EXISTS") {
			return fmt.Errorf("create topic %s with replication factor 3: %w", f.topic, err)
		}
		return nil
	})
	f.waitInSync(f.topic)
	return fill(t, cl, adm, f.topic, n)
}

func (f *failover) seeds() []string {
	var s []string
	for _, b := range f.bs {
		s = append(s, b.Addr())
	}
	return s
}

// waitInSync waits until every partition of topic has a leader and all
// three replicas in sync.
func (f *failover) waitInSync(topic string) {
	f.t.Helper()
	testharness.CheckFor(f.t, 60*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ps, err := f.metadata(ctx, topic)
		if err != nil {
			return err
		}
		for i, p := range ps {
			if p.err != nil || p.leader < 0 || len(p.isr) != 3 {
				return fmt.Errorf("%s partition %d: leader %d, in-sync replicas %v, %v", topic, i, p.leader, p.isr, p.err)
			}
		}
		return nil
	})
}

// coordinator returns the broker coordinating the group, asking
// FindCoordinator. When the cluster lists __consumer_offsets, it first waits
// until the group's partition of it has all three replicas in sync and is
// led by that coordinator, so the kill tests a failover, not a partition
// already short of replicas.
func (f *failover) coordinator() *testharness.Broker {
	t := f.t
	t.Helper()
	var id int32
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fc := f.adm.FindGroupCoordinators(ctx, f.g.name)[f.g.name]
		if fc.Err != nil {
			return fmt.Errorf("FindCoordinator %s: %v", f.g.name, fc.Err)
		}
		if fc.NodeID < 1 || int(fc.NodeID) > len(f.bs) {
			return fmt.Errorf("FindCoordinator %s: node %d is none of the cluster's", f.g.name, fc.NodeID)
		}
		p, pd, listed, err := f.offsetsPartition(ctx)
		if err != nil {
			return err
		}
		if !listed {
			id = fc.NodeID // unreplicated offsets: nothing to wait for
			return nil
		}
		if pd.leader != fc.NodeID || len(pd.isr) != 3 {
			return fmt.Errorf("group %s: coordinator %d; __consumer_offsets partition %d: leader %d, in-sync replicas %v",
				f.g.name, fc.NodeID, p, pd.leader, pd.isr)
		}
		t.Logf("group %s: coordinator %d, the leader of __consumer_offsets partition %d (in-sync replicas %v)", f.g.name, fc.NodeID, p, pd.isr)
		id = fc.NodeID
		return nil
	})
	return f.bs[id-1]
}

// partitionMeta is what the metadata says of one partition.
type partitionMeta struct {
	leader int32
	isr    []int32
	err    error
}

// metadata asks a broker about topic's partitions. kadm's Metadata would
// do, but it answers from the client's cache when that is younger than
// MetadataMinAge (5 s), and the ISR checks here want the present.
func (f *failover) metadata(ctx context.Context, topic string) ([]partitionMeta, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, f.cl)
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		ps := make([]partitionMeta, len(t.Partitions))
		for _, p := range t.Partitions {
			if p.Partition < 0 || int(p.Partition) >= len(ps) {
				return nil, fmt.Errorf("topic %s: partition %d of %d", topic, p.Partition, len(ps))
			}
			ps[p.Partition] = partitionMeta{leader: p.Leader, isr: p.ISR, err: kerr.ErrorForCode(p.ErrorCode)}
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("topic %s has no partitions", topic)
		}
		return ps, nil
	}
	return nil, fmt.Errorf("the metadata does not list topic %s", topic)
}

// offsetsPartition returns the group's partition of __consumer_offsets and
// what the metadata says of it; listed is false when the cluster does not
// know the topic (the broker before offsets were replicated).
func (f *failover) offsetsPartition(ctx context.Context) (p int32, pm partitionMeta, listed bool, err error) {
	ps, err := f.metadata(ctx, "__consumer_offsets")
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return 0, pm, false, nil
	}
	if err != nil {
		return 0, pm, false, err
	}
	p = offsetsPartition(f.g.name, len(ps))
	return p, ps[p], true, nil
}

// waitOffsetsISR waits until the group's partition of __consumer_offsets
// (when the cluster lists it) has a leader and b among its in-sync replicas
// (in: all three of them) or not (!in: the leader is another broker).
func (f *failover) waitOffsetsISR(b *testharness.Broker, in bool) {
	f.t.Helper()
	id := int32(slices.Index(f.bs, b) + 1)
	testharness.CheckFor(f.t, 60*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, pd, listed, err := f.offsetsPartition(ctx)
		if err != nil || !listed {
			return err
		}
		ok := pd.leader >= 0 && slices.Contains(pd.isr, id) == in
		if in {
			ok = ok && len(pd.isr) == 3
		} else {
			ok = ok && pd.leader != id
		}
		if !ok {
			return fmt.Errorf("__consumer_offsets partition %d: leader %d, in-sync replicas %v; want broker %d in them: %v", p, pd.leader, pd.isr, id, in)
		}
		return nil
	})
}

// offsetsPartition is Kafka's partition of __consumer_offsets for a group:
// Utils.abs(group.hashCode()) % partitions, with Java's String.hashCode
// over UTF-16 code units.
func offsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, c := range group {
		if c >= 0x10000 { // a surrogate pair in UTF-16
			c -= 0x10000
			h = 31*h + int32(0xD800+(c>>10))
			h = 31*h + int32(0xDC00+(c&0x3FF))
			continue
		}
		h = 31*h + int32(c)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// acknowledged returns, per partition, the highest commit the members have
// reported as acknowledged so far.
func (g *group) acknowledged() map[int32]int64 {
	acked := map[int32]int64{}
	for _, m := range g.members {
		m.mu.Lock()
		for _, e := range m.events {
			if e.commit {
				acked[e.partition] = max(acked[e.partition], e.offset)
			}
		}
		m.mu.Unlock()
	}
	return acked
}

// committed fetches the group's committed offsets of the topic through a
// new client seeded with every broker, as an application starting up would:
// franz-go (v1.22) keeps a group's coordinator cached through dial errors
// on OffsetFetch, so a long-lived client would keep asking the dead broker.
func (f *failover) committed(timeout time.Duration) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.seeds()...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	off, err := kadm.NewClient(cl).FetchOffsets(ctx, f.g.name)
	if err == nil {
		err = off.Error()
	}
	if err != nil {
		return nil, err
	}
	got := map[int32]int64{}
	off.Each(func(o kadm.OffsetResponse) {
		if o.Topic == f.topic {
			got[o.Partition] = o.At
		}
	})
	return got, nil
}

// waitResume polls the group's committed offsets from the kill on and sets
// f.resumed to the time from the kill to the first answer that shows a
// commit made after the kill (see TestCoordinatorFailover). It fails the
// test if that takes longer than maxResume, waiting up to three times that
// to log the time anyway.
func (f *failover) waitResume(killed time.Time) {
	t := f.t
	t.Helper()
	var first map[int32]int64
	var served time.Duration
	var last error
	for time.Since(killed) < 3*maxResume {
		off, err := f.committed(2 * time.Second)
		switch {
		case err != nil:
			last = err
		case first == nil:
			first, served = off, time.Since(killed)
		default:
			for p, o := range off {
				if prev, ok := first[p]; o < 0 || ok && o <= prev {
					continue
				}
				f.resumed = time.Since(killed)
				t.Logf("group resumed %v after the coordinator was killed (committed offsets served again after %v; partition %d committed %d, past %d)",
					f.resumed.Round(time.Millisecond), served.Round(time.Millisecond), p, o, first[p])
				if f.resumed > maxResume {
					t.Errorf("the group took %v to commit again after its coordinator died, more than %v", f.resumed.Round(time.Millisecond), maxResume)
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if first == nil {
		t.Errorf("the group's committed offsets could not be fetched for %v after its coordinator died (last error: %v)", 3*maxResume, last)
	} else {
		t.Errorf("no commit of the group reached the new coordinator within %v of the kill (offsets served again after %v: %v)",
			3*maxResume, served.Round(time.Millisecond), first)
	}
}

// checkCommitted asks for the group's committed offsets while the old
// coordinator is down, through kadm and through librdkafka's committed(),
// and checks each covers what was acknowledged before the kill.
func (f *failover) checkCommitted(acked map[int32]int64) {
	t := f.t
	t.Helper()
	check := func(via string, got map[int32]int64) {
		var short []string
		for p, want := range acked {
			if got[p] < want {
				short = append(short, fmt.Sprintf("partition %d: %d, but %d was acknowledged", p, got[p], want))
			}
		}
		slices.Sort(short)
		if len(short) > 0 {
			t.Errorf("%s after the coordinator died: commits acknowledged before are missing: %s", via, strings.Join(short, "; "))
		} else {
			t.Logf("%s after the coordinator died: %v", via, got)
		}
	}

	// A new franz-go client sends its first requests to any seed, the
	// dead broker's too, and gives up on a refused connection: try again.
	var got map[int32]int64
	tries := 0
	err := testharness.Poll(10*time.Second, 100*time.Millisecond, func() error {
		tries++
		var err error
		got, err = f.committed(3 * time.Second)
		return err
	})
	if err != nil {
		t.Errorf("kadm FetchOffsets after the coordinator died: %v", err)
	} else {
		check(fmt.Sprintf("kadm FetchOffsets (try %d)", tries), got)
	}

	// A fresh librdkafka consumer: FindCoordinator, then OffsetFetch, as
	// an application calling committed() would.
	start := time.Now()
	cmd := exec.Command(f.confluentBin, "-committed", "-brokers", strings.Join(f.seeds(), ","),
		"-group", f.g.name, "-topic", f.topic, "-timeout", "10s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	took := time.Since(start)
	var res struct {
		Committed []struct {
			Partition int32
			Offset    int64
			Error     string
		}
		Ms    int64
		Error string
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || err != nil || res.Error != "" {
		t.Errorf("librdkafka committed() after the coordinator died: %v %s (output %q, stderr %q)", err, res.Error, out, stderr.String())
		return
	}
	got = map[int32]int64{}
	for _, c := range res.Committed {
		if c.Error != "" {
			t.Errorf("librdkafka committed() after the coordinator died: partition %d: %s", c.Partition, c.Error)
		}
		got[c.Partition] = c.Offset
	}
	t.Logf("librdkafka committed() answered in %v (%v with the consumer's start)", time.Duration(res.Ms)*time.Millisecond, took.Round(time.Millisecond))
	check("librdkafka committed()", got)
}

// waitCommitted waits, while the members run, until the group has committed
// the end of every partition: a member that lost its assignment or its
// membership to the failover must get it back and commit again.
func (f *failover) waitCommitted(ends map[int32]int64) {
	t := f.t
	t.Helper()
	var got map[int32]int64
	err := testharness.Poll(60*time.Second, 100*time.Millisecond, func() error {
		var err error
		if got, err = f.committed(5 * time.Second); err != nil {
			return err
		}
		for p, end := range ends {
			if got[p] != end {
				return fmt.Errorf("partition %d: committed %d of %d", p, got[p], end)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("the group did not commit the end of every partition: %v (committed: %v, ends: %v)", err, got, ends)
	}
}

// checkFinalCommits checks that, once every member stopped, the group's
// committed offsets are still the end of every partition: no member's
// leaving moved them back.
func (f *failover) checkFinalCommits(ends map[int32]int64) {
	t := f.t
	t.Helper()
	var got map[int32]int64
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		got, err = f.committed(5 * time.Second)
		return err
	})
	for p, end := range ends {
		if got[p] != end {
			t.Errorf("partition %d: committed offset %d after the members stopped, want the end offset %d", p, got[p], end)
		}
	}
}
