package groups_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

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
//     polling OffsetFetch through a client seeded with every broker, the
//     first answer after the kill is the new coordinator's view; the group
//     has resumed when a later answer shows any partition's committed offset
//     past it, i.e. when the new coordinator acknowledged a commit made
//     after the kill. (Reading the members' output would not do: the test
//     paces them through their stdout pipes, so what it reads lags what they
//     did by up to a few thousand lines.)
//   - librdkafka's committed() (a fresh consumer of the group, through
//     ./confluentworker -committed) and kadm's FetchOffsets must answer, with
//     every offset at or past what the members saw acknowledged before the
//     kill.
//
// Then the broker is restarted, the group finishes the topic, and, as in the
// other tests: every record was processed, duplicates stay within what the
// members had processed but not committed (every member is disrupted: losing
// the coordinator can cost a member its assignment), and the committed
// offsets end at the end of every partition.
//
// The kill round runs every client kind; the wipe round runs librdkafka
// (classic and KIP-848) and franz-go, to keep the test near four minutes on
// two cores. CHRONIK_FAILOVER_ALL=1 runs every kind in both rounds.
func TestCoordinatorFailover(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("needs a cluster of chronik brokers")
	}
	all := []clientKind{franz, sarama, confluent, franz848, confluent848}
	wipeKinds := []clientKind{franz, confluent, confluent848}
	if os.Getenv("CHRONIK_FAILOVER_ALL") != "" {
		wipeKinds = all
	}
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
	}{{"kill", false, all}, {"wipe", true, wipeKinds}} {
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
	// The members' reports reach the test through the paced pipes, seconds
	// after the commits: wait until one for every partition came, so the
	// checks below compare against commits made before the kill.
	testharness.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if acked := g.acknowledged(); len(acked) < partitions {
			return fmt.Errorf("commits reported for %d of %d partitions: %v", len(acked), partitions, acked)
		}
		return nil
	})

	victim := f.coordinator()
	killed := time.Now()
	victim.Kill()
	// Every commit a member reported by now was acknowledged before the
	// kill (members report a commit once its answer came).
	acked := g.acknowledged()
	t.Logf("killed broker %s, the coordinator of group %s, %v after the members started, at %d records processed; commits acknowledged before: %v",
		victim.Addr(), g.name, killed.Sub(began).Round(time.Millisecond), g.processed.Load(), acked)

	f.waitResume(killed)
	if victim.Running() {
		t.Fatalf("the killed broker is running again")
	}
	f.checkCommitted(acked)

	if f.wipe {
		files, size := victim.WipeDataDir()
		t.Logf("wiped the killed broker's data directory: %d files, %d bytes", files, size)
	}
	down := time.Since(killed)
	victim.Restart()
	t.Logf("restarted the killed broker after %v down", down.Round(time.Millisecond))
	waitProcessed(t, g, g.processed.Load()+1, 2*time.Second)
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
	f.adm = adm
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
		md, err := f.adm.Metadata(ctx, topic)
		if err != nil {
			return err
		}
		td, ok := md.Topics[topic]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return fmt.Errorf("topic %s: %v", topic, td.Err)
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 || len(p.ISR) != 3 {
				return fmt.Errorf("%s partition %d: leader %d, in-sync replicas %v, %v", topic, p.Partition, p.Leader, p.ISR, p.Err)
			}
		}
		return nil
	})
}

// coordinator returns the broker coordinating the group, asking
// FindCoordinator. When the cluster lists __consumer_offsets, it first waits
// until the group's partition of it (abs(javaStringHash(group)) % its
// partitions, as Kafka) has all three replicas in sync and is led by that
// coordinator, so the kill tests a failover, not a partition already short
// of replicas.
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
		md, err := f.adm.Metadata(ctx)
		if err != nil {
			return err
		}
		td, ok := md.Topics["__consumer_offsets"]
		if !ok {
			id = fc.NodeID // unreplicated offsets: nothing to wait for
			return nil
		}
		p := offsetsPartition(f.g.name, len(td.Partitions))
		pd, ok := td.Partitions[p]
		if !ok {
			return fmt.Errorf("__consumer_offsets has %d partitions but not %d", len(td.Partitions), p)
		}
		if pd.Leader != fc.NodeID || len(pd.ISR) != 3 {
			return fmt.Errorf("group %s: coordinator %d; __consumer_offsets partition %d: leader %d, in-sync replicas %v",
				f.g.name, fc.NodeID, p, pd.Leader, pd.ISR)
		}
		t.Logf("group %s: coordinator %d, the leader of __consumer_offsets partition %d of %d (in-sync replicas %v)",
			f.g.name, fc.NodeID, p, len(td.Partitions), pd.ISR)
		id = fc.NodeID
		return nil
	})
	return f.bs[id-1]
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

// waitResume polls the group's committed offsets from the kill on and sets
// f.resumed to the time from the kill to the first answer that shows a
// commit made after the kill (see TestCoordinatorFailover). It fails the
// test if that takes longer than maxResume, waiting up to three times that
// to log the time anyway.
func (f *failover) waitResume(killed time.Time) {
	t := f.t
	t.Helper()
	var first kadm.OffsetResponses
	var served time.Duration
	var last error
	for time.Since(killed) < 3*maxResume {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		off, err := f.adm.FetchOffsets(ctx, f.g.name)
		cancel()
		if err == nil {
			err = off.Error()
		}
		switch {
		case err != nil:
			last = err
		case first == nil:
			first, served = off, time.Since(killed)
		default:
			if p, from, to, ok := advanced(first, off, f.topic); ok {
				f.resumed = time.Since(killed)
				t.Logf("group resumed %v after the coordinator was killed (committed offsets served again after %v; partition %d committed %d, past %d)",
					f.resumed.Round(time.Millisecond), served.Round(time.Millisecond), p, to, from)
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

// advanced finds a partition of topic whose committed offset in now is past
// the one in before.
func advanced(before, now kadm.OffsetResponses, topic string) (p int32, from, to int64, ok bool) {
	for p := range int32(partitions) {
		b, bok := before.Lookup(topic, p)
		n, nok := now.Lookup(topic, p)
		if !nok || n.Err != nil {
			continue
		}
		from := int64(-1)
		if bok && b.Err == nil {
			from = b.At
		}
		if n.At > from {
			return p, from, n.At, true
		}
	}
	return 0, 0, 0, false
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

	var fetched kadm.OffsetResponses
	err := testharness.Poll(10*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		if fetched, err = f.adm.FetchOffsets(ctx, f.g.name); err == nil {
			err = fetched.Error()
		}
		return err
	})
	if err != nil {
		t.Errorf("kadm FetchOffsets after the coordinator died: %v", err)
	} else {
		got := map[int32]int64{}
		fetched.Each(func(o kadm.OffsetResponse) {
			if o.Topic == f.topic {
				got[o.Partition] = o.At
			}
		})
		check("kadm FetchOffsets", got)
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
	got := map[int32]int64{}
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
	var fetched kadm.OffsetResponses
	err := testharness.Poll(60*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if fetched, err = f.adm.FetchOffsets(ctx, f.g.name); err == nil {
			err = fetched.Error()
		}
		if err != nil {
			return err
		}
		for p, end := range ends {
			if got, _ := fetched.Lookup(f.topic, p); got.At != end {
				return fmt.Errorf("partition %d: committed %d of %d", p, got.At, end)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("the group did not commit the end of every partition: %v (committed: %v)", err, fetched)
	}
}

// checkFinalCommits checks that, once every member stopped, the group's
// committed offsets are still the end of every partition: no member's
// leaving moved them back.
func (f *failover) checkFinalCommits(ends map[int32]int64) {
	t := f.t
	t.Helper()
	var fetched kadm.OffsetResponses
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		if fetched, err = f.adm.FetchOffsets(ctx, f.g.name); err == nil {
			err = fetched.Error()
		}
		return err
	})
	for p, end := range ends {
		if got, _ := fetched.Lookup(f.topic, p); got.At != end {
			t.Errorf("partition %d: committed offset %d after the members stopped, want the end offset %d", p, got.At, end)
		}
	}
}
