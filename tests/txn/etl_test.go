package txn_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

const (
	etlIn, etlOut = "eos-in", "eos-out"
	etlPartitions = 3
	etlTxnID      = "eos-etl"
	etlGroup      = "eos-etl"
	// etlDowntime is the least time a killed broker stays down: long
	// enough for the cluster to move its leaderships and coordinators
	// and for the ETL to run transactions without it.
	etlDowntime = 3 * time.Second
	// etlMaxResume bounds how long after a kill the ETL must commit a
	// transaction begun after it: a liveness requirement (two of three
	// brokers are min.insync.replicas), not a performance target, so the
	// bound is generous and the measured time is always logged.
	etlMaxResume = 60 * time.Second
	// etlAbortEvery: the ETL aborts one transaction in this many.
	etlAbortEvery = 7
	// etlAbandonEvery: the ETL closes its session with a transaction open
	// (an application crash) once in this many transactions.
	etlAbandonEvery = 60
)

// TestExactlyOnceETLUnderKills: a cluster of three brokers, eos-in and
// eos-out with three partitions each, replication factor 3 and
// min.insync.replicas 2. An idempotent acks=all producer writes N records
// "in-<i>" to eos-in (CHRONIK_TXN_ETL_RECORDS, 3000 by default). franz-go's
// GroupTransactSession (read_committed, require_stable offsets) then copies
// each to eos-out as "out-<i>", a few records per transaction, committing
// the group's offsets in the same transaction.
//
// Paced and held back so that the run outlasts them, kill rounds
// (CHRONIK_TXN_ETL_KILLS, 3 by default) SIGKILL in turn the transaction
// coordinator of the ETL's transactional ID (FindCoordinator type 1), a
// leader of an eos-out partition, and the group's coordinator (type 0),
// each while a transaction is open if one opens within 5 s. While the
// broker is down, another broker must take its role and the ETL must
// commit a transaction begun after the kill (each within etlMaxResume).
// The broker comes back after etlDowntime at least, and the next round
// waits until every partition of eos-in, eos-out, __consumer_offsets and
// __transaction_state has all three replicas in sync again.
//
// The ETL itself aborts one transaction in etlAbortEvery, so eos-out holds
// aborted records in every partition, and once in etlAbandonEvery closes
// its session with a transaction open, as a crashed application would: the
// next session's InitProducerID must fence it and abort that transaction
// before the new one commits anything (checked through eos-out's last
// stable offsets). It carries on through whatever the kills do: an
// aborted transaction is reprocessed, and a session whose End failed (the
// outcome unknown) is replaced by a new one, which fences the old producer
// and starts from the offsets the group committed.
//
// At the end the group's committed offsets must reach the end of eos-in,
// no transaction may be left open, every ended transaction must have left
// its markers, and a read_committed reader of eos-out must see every
// "out-<i>" exactly once: nothing lost, nothing duplicated, nothing
// aborted.
func TestExactlyOnceETLUnderKills(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("needs a cluster of chronik brokers")
	}
	n := envInt(t, "CHRONIK_TXN_ETL_RECORDS", 3000, 100)
	rounds := envInt(t, "CHRONIK_TXN_ETL_KILLS", 3, 0)
	began := time.Now()

	c := &cluster{t: t, bs: testharness.StartCluster(t, 3, testharness.Options{
		Args: []string{"--default-replication-factor", "3", "--min-insync-replicas", "2"},
	})}
	adm := kadm.NewClient(newClient(t, c.seeds()))
	createTopics(t, adm, etlPartitions, 3, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, etlIn, etlOut)
	c.waitHealthy()
	ends := fillInput(t, c.seeds(), adm, n)
	t.Logf("cluster of 3 up, %d records in %s, in %v", n, etlIn, time.Since(began).Round(time.Millisecond))

	e := newETL(t, c.seeds(), n)
	// The pace makes the ETL last 45 s at least, 15 s a round with more
	// rounds (a round takes 10 s or so), so the rounds land mid-run; it
	// is lifted after the last one.
	e.pace.Store(int64(max(n/max(45, 15*rounds), 20)))
	etlBegan := time.Now()
	go e.run()
	defer e.stop()

	var summaries []string
	midTxn := 0
	for r := range rounds {
		// Spread the kills over the input: round r once (r+1)/(rounds+1)
		// of it is committed. Until the round is over the ETL holds at
		// three quarters of the way to the next mark, so however long
		// a round takes, the next one still lands mid-run.
		mark := int64(n) * int64(r+1) / int64(rounds+1)
		e.limit.Store(mark + int64(n)*3/int64(4*(rounds+1)))
		err := c.poll(3*time.Minute, 50*time.Millisecond, func() error {
			if got := e.committedRecords.Load(); got < mark {
				return fmt.Errorf("round %d: the ETL committed %d input records, waiting for %d (%s)", r+1, got, mark, e.stats())
			}
			return nil
		})
		if err != nil {
			e.dumpLog()
			t.Fatalf("%v; first errors: %s", err, e.notesString())
		}
		rs := c.killRound(r, e)
		if rs.midTxn {
			midTxn++
		}
		summaries = append(summaries, rs.String())
	}
	e.pace.Store(0)
	e.limit.Store(0)

	// The ETL has consumed everything once the group's committed
	// offsets (asked with require_stable) are the ends of eos-in.
	var got map[int32]int64
	err := c.poll(3*time.Minute, 250*time.Millisecond, func() error {
		var err error
		if got, err = groupOffsets(c.seeds(), etlGroup, etlIn, 5*time.Second); err != nil {
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
		e.dumpLog()
		t.Fatalf("the ETL did not commit the end of %s: %v (committed %v, ends %v; %s; first errors: %s)", etlIn, err, got, ends, e.stats(), e.notesString())
	}
	etlTook := time.Since(etlBegan)
	e.stop()

	// No transaction may be left open: each partition's last stable
	// offset reaches its high watermark.
	var lso, hwm map[int32]int64
	err = testharness.Poll(60*time.Second, 100*time.Millisecond, func() error {
		var err error
		if lso, hwm, err = stableAndEnd(c.seeds(), etlOut); err != nil {
			return err
		}
		if len(hwm) != etlPartitions {
			return fmt.Errorf("high watermarks of %d partitions listed", len(hwm))
		}
		for p, h := range hwm {
			if lso[p] != h {
				return fmt.Errorf("partition %d: last stable offset %d, high watermark %d", p, lso[p], h)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: a transaction was left open after the ETL stopped: %v (last stable offsets %v, high watermarks %v)", etlOut, err, lso, hwm)
	}

	closeTopic(t, c.seeds(), etlOut, etlPartitions)
	committed := values(readAll(t, c.seeds(), etlOut, etlPartitions, kgo.ReadCommitted(), false))
	all := readAll(t, c.seeds(), etlOut, etlPartitions, kgo.ReadUncommitted(), true)
	commits, aborts := markers(all)
	want := map[string]int{}
	for i := range n {
		want["out-"+strconv.Itoa(i)] = 1
	}
	gotCounts := count(committed)
	var missing, dups, strays int
	for v := range want {
		switch k := gotCounts[v]; {
		case k == 0:
			missing++
		case k > 1:
			dups += k - 1
		}
	}
	for v := range gotCounts {
		if _, ok := want[v]; !ok {
			strays++
		}
	}
	if missing+dups+strays > 0 {
		e.dumpLog()
		t.Errorf("%s read_committed: %d records: %d inputs missing, %d duplicates, %d unexpected values: %s",
			etlOut, len(committed), missing, dups, strays, diffCounts(gotCounts, want, 20))
	}
	uncommitted := count(values(all))
	for v, k := range gotCounts {
		if uncommitted[v] < k {
			t.Errorf("%s: %q read %d times at read_committed but %d at read_uncommitted", etlOut, v, k, uncommitted[v])
		}
	}
	// Each ended transaction wrote its marker to every partition it
	// touched: a transaction aborted on purpose leaves its records in the
	// log, hidden from read_committed, and at least one ABORT marker.
	if da := e.deliberateAborts.Load(); int64(aborts) < da || len(values(all)) == len(committed) && da > 0 {
		t.Errorf("%s: %d ABORT markers and %d records of aborted transactions, after %d transactions aborted on purpose",
			etlOut, aborts, len(values(all))-len(committed), da)
	}
	if int64(commits) < e.commits.Load() {
		t.Errorf("%s: %d COMMIT markers for %d committed transactions", etlOut, commits, e.commits.Load())
	}
	e.mu.Lock()
	for _, v := range e.fenceViolations {
		t.Error(v)
	}
	if e.abandoned.Load() > 0 {
		t.Logf("%d transactions left open by a closed session; the next session committed %v after", e.abandoned.Load(), e.resumes)
	}
	e.mu.Unlock()
	if rounds > 0 && midTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the rounds proved nothing about in-flight transactions")
	}
	t.Logf("kill rounds: %s", strings.Join(summaries, "; "))
	t.Logf("ETL of %d records in %v: %s", n, etlTook.Round(time.Millisecond), e.stats())
	t.Logf("%s: read_committed %d records (%d missing, %d duplicates); read_uncommitted %d data records (%d of aborted transactions), %d COMMIT and %d ABORT markers",
		etlOut, len(committed), missing, dups, len(values(all)), len(values(all))-len(committed), commits, aborts)
	t.Logf("ETL client log: %s", e.log.summary())
	if notes := e.notesString(); notes != "" {
		t.Logf("ETL errors (first %d of %d): %s", len(e.notes), e.noted.Load(), notes)
	}
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}

func sumOf(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// fillInput writes "in-0".."in-<n-1>" to eos-in with an idempotent
// acks=all producer and returns the end offsets.
func fillInput(t *testing.T, seeds []string, adm *kadm.Client, n int) map[int32]int64 {
	t.Helper()
	cl := newClient(t, seeds, kgo.ProducerLinger(5*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		wg.Add(1)
		r := &kgo.Record{Topic: etlIn, Key: []byte("k-" + strconv.Itoa(i)), Value: []byte("in-" + strconv.Itoa(i))}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("producing %s: %v", etlIn, err)
	}
	listed, err := adm.ListEndOffsets(ctx, etlIn)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", etlIn, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	if sumOf(ends) != int64(n) {
		t.Fatalf("%s holds %d records (%v), want %d", etlIn, sumOf(ends), ends, n)
	}
	return ends
}

// etl is the consume-transform-produce loop, run by one goroutine, and
// what it counted.
type etl struct {
	t       *testing.T
	seeds   []string
	batch   int
	logPath string       // franz-go's log of the sessions
	log     *clientLog   // writing to logPath
	pace    atomic.Int64 // input records per second at most; 0 lifts the pace
	limit   atomic.Int64 // no transaction begins once committedRecords reaches it; 0 lifts it

	stopOnce sync.Once
	stopping atomic.Bool
	pollCtx  context.Context
	stopPoll context.CancelFunc
	done     chan struct{}

	committedRecords atomic.Int64 // input records of committed transactions
	attempted        atomic.Int64 // input records put into transactions
	begun            atomic.Int64
	commits          atomic.Int64
	deliberateAborts atomic.Int64 // transactions the loop chose to abort
	aborts           atomic.Int64 // other transactions End aborted (committed false, no error)
	endErrors        atomic.Int64 // End returned an error: outcome unknown, session replaced
	beginErrors      atomic.Int64
	produceFails     atomic.Int64 // transactions with a failed produce (ended with an abort)
	sessions         atomic.Int64
	open             atomic.Bool // a transaction is open with records produced into it

	abandoned atomic.Int64 // sessions closed with a transaction open

	mu              sync.Mutex // guards the following
	notes           []string   // the first errors, for the log
	resumes         []time.Duration
	commitTimes     [][2]time.Time // when each committed transaction began and ended
	fenceViolations []string
	noted           atomic.Int64
}

func newETL(t *testing.T, seeds []string, n int) *etl {
	e := &etl{t: t, seeds: seeds, batch: max(10, n/200), done: make(chan struct{}),
		logPath: filepath.Join(t.TempDir(), "etl-client.log")}
	f, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	e.log = &clientLog{f: f, counts: map[string]int{}}
	e.pollCtx, e.stopPoll = context.WithCancel(context.Background())
	return e
}

func (e *etl) note(format string, args ...any) {
	if e.noted.Add(1) > 20 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (e *etl) notesString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.notes, "; ")
}

func (e *etl) stats() string {
	return fmt.Sprintf("%d transactions committed (%d input records), %d aborted on purpose, %d aborted otherwise, %d left open by a closed session, %d ended in an error, %d with a failed produce, %d Begin errors, %d sessions, %d records attempted",
		e.commits.Load(), e.committedRecords.Load(), e.deliberateAborts.Load(), e.aborts.Load(), e.abandoned.Load(), e.endErrors.Load(), e.produceFails.Load(),
		e.beginErrors.Load(), e.sessions.Load(), e.attempted.Load())
}

// dumpLog writes the tail of franz-go's log of the sessions into the test
// log.
func (e *etl) dumpLog() {
	data, err := os.ReadFile(e.logPath)
	if err != nil {
		e.t.Logf("ETL client log: %v", err)
		return
	}
	e.t.Logf("ETL client log %s (last %d of %d bytes):\n%s", e.logPath, min(len(data), 48<<10), len(data), tail(data, 48<<10))
}

// clientLog is the sessions' franz-go logger: it writes each message
// (without its key-values' count) at most clientLogRepeats times, since a
// client retrying a dead broker logs the same warning thousands of times
// a second, and counts them all.
type clientLog struct {
	mu      sync.Mutex
	f       *os.File
	session int64
	counts  map[string]int // by level and message
	order   []string       // keys of counts, first seen first
	warns   int
	errs    int
}

const clientLogRepeats = 20

func (l *clientLog) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l *clientLog) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch level {
	case kgo.LogLevelWarn:
		l.warns++
	case kgo.LogLevelError:
		l.errs++
	}
	key := "[" + level.String() + "] " + msg
	if l.counts[key] == 0 {
		l.order = append(l.order, key)
	}
	l.counts[key]++
	if l.counts[key] > clientLogRepeats {
		return
	}
	fmt.Fprintf(l.f, "%s session %d: %s %v\n", time.Now().Format("15:04:05.000"), l.session, key, keyvals)
}

// summary counts the warnings and errors and names the commonest.
func (l *clientLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.warns+l.errs == 0 {
		return "no warnings or errors"
	}
	var bad []string
	for _, k := range l.order {
		if strings.HasPrefix(k, "[WARN]") || strings.HasPrefix(k, "[ERROR]") {
			bad = append(bad, k)
		}
	}
	slices.SortStableFunc(bad, func(a, b string) int { return l.counts[b] - l.counts[a] })
	var parts []string
	for _, k := range bad[:min(len(bad), 5)] {
		parts = append(parts, fmt.Sprintf("%d× %s", l.counts[k], k))
	}
	return fmt.Sprintf("%d warnings, %d errors: %s", l.warns, l.errs, strings.Join(parts, "; "))
}

func (e *etl) newSession() (*kgo.GroupTransactSession, error) {
	e.log.mu.Lock()
	e.log.session = e.sessions.Add(1)
	e.log.mu.Unlock()
	return kgo.NewGroupTransactSession(
		kgo.SeedBrokers(e.seeds...),
		kgo.ClientID("chronik-txn-etl"),
		kgo.TransactionalID(etlTxnID),
		kgo.ConsumerGroup(etlGroup),
		kgo.ConsumeTopics(etlIn),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordDeliveryTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// franz-go refreshes metadata at most every 5 s by default,
		// which alone would hold each failover for that long.
		kgo.MetadataMinAge(250*time.Millisecond),
		kgo.WithLogger(e.log),
	)
}

// closeSession leaves the group and closes the client, giving up on it
// after 30 s (a broker may be down).
func (e *etl) closeSession(s *kgo.GroupTransactSession) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Client().LeaveGroupContext(ctx)
		s.Close()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		e.note("closing a session took over 30s; abandoned it")
	}
}

// run is the ETL loop: poll, begin, produce "out-<i>" for each "in-<i>",
// end with a commit unless a produce failed.
func (e *etl) run() {
	defer close(e.done)
	var s *kgo.GroupTransactSession
	defer func() {
		if s != nil {
			e.closeSession(s)
		}
	}()
	var next time.Time    // the pace: no transaction begins before
	var zombie *abandoned // the transaction the last session left open
	for !e.stopping.Load() {
		if s == nil {
			var err error
			if s, err = e.newSession(); err != nil {
				e.note("new session: %v", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		for time.Now().Before(next) && e.pace.Load() > 0 && !e.stopping.Load() {
			time.Sleep(min(10*time.Millisecond, time.Until(next)))
		}
		for l := e.limit.Load(); l > 0 && e.committedRecords.Load() >= l && !e.stopping.Load(); l = e.limit.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		fs := s.PollRecords(e.pollCtx, e.batch)
		if e.pollCtx.Err() != nil {
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			e.note("fetch %s/%d: %v", topic, p, err)
		})
		k := fs.NumRecords()
		if k == 0 {
			continue
		}
		began := time.Now()
		if err := s.Begin(); err != nil {
			e.beginErrors.Add(1)
			e.note("Begin: %v", err)
			e.closeSession(s)
			s = nil
			continue
		}
		promise := kgo.AbortingFirstErrPromise(s.Client())
		fs.EachRecord(func(r *kgo.Record) {
			suffix, _ := strings.CutPrefix(string(r.Value), "in-")
			i, err := strconv.Atoi(suffix)
			if err != nil {
				e.note("unexpected input %q at %s/%d offset %d", r.Value, r.Topic, r.Partition, r.Offset)
			}
			// Record i goes to partition i%3: the records of one input
			// partition, and so of one transaction, spread over every
			// output partition.
			out := &kgo.Record{Topic: etlOut, Partition: int32(i % etlPartitions), Key: r.Key, Value: []byte("out-" + suffix)}
			s.Produce(context.Background(), out, promise.Promise())
		})
		e.open.Store(true)
		e.attempted.Add(int64(k))
		seq := e.begun.Add(1)
		try := kgo.TryCommit
		perr := promise.Err()
		if perr != nil {
			e.produceFails.Add(1)
			e.note("produce: %v", perr)
			try = kgo.TryAbort
		}
		if seq%etlAbandonEvery == 0 && perr == nil {
			// The application dies mid-transaction: its records are
			// in eos-out, the transaction open. The next session's
			// InitProducerID must fence this producer and abort the
			// transaction before that session can begin: checked at
			// its first commit.
			zombie = &abandoned{at: time.Now(), ends: e.outEnds()}
			e.abandoned.Add(1)
			e.closeSession(s)
			s = nil
			e.open.Store(false)
			continue
		}
		// Every etlAbortEvery-th transaction is aborted on purpose, so
		// eos-out holds aborted records for read_committed readers to
		// skip, in every partition, across the leader changes.
		deliberate := seq%etlAbortEvery == 0
		if deliberate {
			try = kgo.TryAbort
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		committed, err := s.End(ctx, try)
		cancel()
		e.open.Store(false)
		switch {
		case err != nil:
			// The outcome is unknown and the session's view of the
			// group's offsets may be stale: a new session fences this
			// producer (aborting the transaction if it is still open)
			// and resumes from the offsets the group committed.
			e.endErrors.Add(1)
			e.note("End: %v", err)
			e.closeSession(s)
			s = nil
		case committed:
			e.commits.Add(1)
			e.committedRecords.Add(int64(k))
			e.mu.Lock()
			e.commitTimes = append(e.commitTimes, [2]time.Time{began, time.Now()})
			e.mu.Unlock()
			if zombie != nil {
				e.checkFenced(zombie)
				zombie = nil
			}
		case deliberate:
			e.deliberateAborts.Add(1)
		default:
			e.aborts.Add(1)
		}
		if p := e.pace.Load(); p > 0 {
			next = began.Add(time.Duration(k) * time.Second / time.Duration(p))
		}
	}
}

// committedSince is how long after t the first transaction begun after t
// committed, or 0 when none has yet.
func (e *etl) committedSince(t time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.commitTimes) - 1; i >= 0 && e.commitTimes[i][0].After(t); i-- {
		if i == 0 || !e.commitTimes[i-1][0].After(t) {
			return e.commitTimes[i][1].Sub(t)
		}
	}
	return 0
}

// abandoned is a transaction the ETL left open by closing its session.
type abandoned struct {
	at   time.Time
	ends map[int32]int64 // eos-out's high watermarks, its records below them
}

// outEnds lists eos-out's high watermarks.
func (e *etl) outEnds() map[int32]int64 {
	var hwm map[int32]int64
	err := testharness.Poll(10*time.Second, 50*time.Millisecond, func() (err error) {
		_, hwm, err = stableAndEnd(e.seeds, etlOut)
		return err
	})
	if err != nil {
		e.note("listing %s's high watermarks after abandoning a transaction: %v", etlOut, err)
		return nil
	}
	return hwm
}

// checkFenced runs at the first commit of the session after z was
// abandoned. That session's InitProducerID fenced z's producer, and the
// broker answers it only once z's transaction is aborted (its markers
// written), so eos-out's last stable offsets must be past z's records.
// Only a failure to list them is retried (a broker may be down): a last
// stable offset never goes back.
func (e *etl) checkFenced(z *abandoned) {
	var lso map[int32]int64
	listErr := testharness.Poll(10*time.Second, 50*time.Millisecond, func() (err error) {
		lso, _, err = stableAndEnd(e.seeds, etlOut)
		return err
	})
	var behind []string
	for p, end := range z.ends {
		if lso[p] < end {
			behind = append(behind, fmt.Sprintf("partition %d: last stable offset %d, the open transaction's records below %d", p, lso[p], end))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resumes = append(e.resumes, time.Since(z.at))
	switch {
	case len(z.ends) == 0:
		// outEnds noted why.
	case listErr != nil:
		e.notes = append(e.notes, fmt.Sprintf("listing %s's last stable offsets after a fencing: %v", etlOut, listErr))
	case len(behind) > 0:
		slices.Sort(behind)
		e.fenceViolations = append(e.fenceViolations, fmt.Sprintf("%s: after the producer that left a transaction open at %s was fenced, a new transaction committed but %s",
			time.Now().Format("15:04:05.000"), z.at.Format("15:04:05.000"), strings.Join(behind, "; ")))
	}
}

// stop ends the loop between transactions and waits for it.
func (e *etl) stop() {
	e.stopOnce.Do(func() {
		e.stopping.Store(true)
		e.stopPoll()
		select {
		case <-e.done:
		case <-time.After(2 * time.Minute):
			e.t.Errorf("the ETL loop did not stop within 2 minutes")
		}
	})
}
