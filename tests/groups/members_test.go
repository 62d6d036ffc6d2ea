package groups_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
)

// A client kind is how a member process is started: franz-go through
// `chronik consume --group`, or one of the worker programs in this directory.
type clientKind string

const (
	franz        clientKind = "franz"
	franz848     clientKind = "franz-kip848" // chronik consume --group-protocol consumer
	confluent848 clientKind = "confluent-kip848"
	sarama       clientKind = "sarama"
	confluent    clientKind = "confluent"
)

// workerBinary builds ./saramaworker or ./confluentworker into the test's
// temporary directory (the go build cache makes repeats cheap).
func workerBinary(t *testing.T, kind clientKind) string {
	t.Helper()
	name := string(kind) + "worker"
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, "./"+name)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", name, err, msg)
	}
	return out
}

// event is one line of a member's output: a processed record, or a
// successful commit (the next offset to consume of a partition).
type event struct {
	commit    bool
	partition int32
	offset    int64
}

// member is one consumer process. Its stdout is read by a goroutine that
// paces it (the pipe blocks the member while the test is not reading), so
// the test decides how fast the group consumes.
type member struct {
	name     string
	cmd      *exec.Cmd
	logPath  string
	readDone chan struct{}
	exited   chan struct{}
	exitErr  error

	mu     sync.Mutex // guards the following
	events []event
	bad    []string // lines that did not parse
	badAt  int      // line number of the last of them
	lines  int

	killed      atomic.Bool  // ended by SIGKILL: its uncommitted records may be re-read
	redelivered atomic.Int64 // records the client delivered twice in a row (dropped by the worker)
}

// pacer limits how fast each member's output is read; zero means no limit.
type pacer struct{ perMember atomic.Int64 }

// group runs the member processes of one consumer group.
type group struct {
	t         *testing.T
	kind      clientKind
	addr      string // bootstrap brokers, host:port, comma-separated
	topic     string
	name      string
	worker    string // the sarama or confluent worker binary
	pace      *pacer
	processed atomic.Int64 // record events of every member
	members   []*member
	n         int
}

func (g *group) start() *member {
	t := g.t
	t.Helper()
	g.n++
	m := &member{name: fmt.Sprintf("%s-%d", g.kind, g.n), readDone: make(chan struct{}), exited: make(chan struct{})}
	var args []string
	var bin string
	switch g.kind {
	case franz, franz848:
		bin = testharness.Binary(t)
		args = []string{"consume", "--brokers", g.addr, "--topic", g.topic, "--group", g.name,
			"--balancer", "cooperative-sticky", "--format", "json", "--report-commits",
			"--commit-interval", "100ms", "--session-timeout", "6s"}
		if g.kind == franz848 {
			args = append(args, "--group-protocol", "consumer")
		}
	case confluent848:
		bin = g.worker
		args = []string{"-brokers", g.addr, "-topic", g.topic, "-group", g.name,
			"-commit-interval", "100ms", "-group-protocol", "consumer"}
	default:
		bin = g.worker
		args = []string{"-brokers", g.addr, "-topic", g.topic, "-group", g.name,
			"-commit-interval", "100ms", "-session-timeout", "6s"}
	}
	m.cmd = exec.Command(bin, args...)
	m.logPath = filepath.Join(t.TempDir(), m.name+".stderr")
	// CHRONIK_GROUPS_LOG_DIR keeps every member's stderr (with
	// CHRONIK_GROUPS_RDKAFKA_DEBUG, librdkafka's debug log) after the test.
	if d := os.Getenv("CHRONIK_GROUPS_LOG_DIR"); d != "" {
		m.logPath = filepath.Join(d, fmt.Sprintf("%s-%d.stderr", m.name, time.Now().UnixNano()))
	}
	logf, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go m.read(stdout, g)
	go func() {
		<-m.readDone
		m.exitErr = m.cmd.Wait()
		logf.Close()
		close(m.exited)
	}()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		<-m.exited
		if t.Failed() {
			data, _ := os.ReadFile(m.logPath)
			if len(data) > 8<<10 {
				data = data[len(data)-8<<10:]
			}
			t.Logf("member %s stderr (tail):\n%s", m.name, data)
		}
	})
	g.members = append(g.members, m)
	t.Logf("%s started", m.name)
	return m
}

type outputLine struct {
	Partition *int32 `json:"partition"`
	Offset    int64  `json:"offset"`
	Committed *struct {
		Partition int32 `json:"partition"`
		Offset    int64 `json:"offset"`
	} `json:"committed"`
	Redelivered *struct{} `json:"redelivered"` // confluentworker: a client repeat it dropped
}

func (m *member) read(r io.Reader, g *group) {
	defer close(m.readDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	start := time.Now()
	var n int64
	add := func(e event) {
		m.mu.Lock()
		m.events = append(m.events, e)
		m.mu.Unlock()
	}
	for sc.Scan() {
		var l outputLine
		m.mu.Lock()
		m.lines++
		m.mu.Unlock()
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || (l.Partition == nil && l.Committed == nil && l.Redelivered == nil) {
			m.mu.Lock()
			if len(m.bad) < 5 {
				m.bad = append(m.bad, sc.Text())
			}
			m.badAt = m.lines
			m.mu.Unlock()
			continue
		}
		if l.Committed != nil {
			add(event{commit: true, partition: l.Committed.Partition, offset: l.Committed.Offset})
			continue
		}
		if l.Redelivered != nil {
			m.redelivered.Add(1)
			continue
		}
		add(event{partition: *l.Partition, offset: l.Offset})
		g.processed.Add(1)
		if n++; n%256 == 0 {
			if rate := g.pace.perMember.Load(); rate > 0 {
				if ahead := time.Duration(float64(n)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			} else {
				start, n = time.Now(), 0
			}
		}
	}
}

// stop sends SIGTERM (a clean leave) and waits for the process to exit.
func (m *member) stop(t *testing.T) {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		if m.exitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM", m.name, m.exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30s of SIGTERM", m.name)
		m.kill()
	}
}

// kill sends SIGKILL and waits until its remaining output is read.
func (m *member) kill() {
	m.killed.Store(true)
	m.cmd.Process.Kill()
	<-m.exited
}

// busiest returns the running member that printed the most in the next
// half second, and how many lines that was.
func (g *group) busiest() (*member, int) {
	count := func(m *member) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.events)
	}
	before := map[*member]int{}
	for _, m := range g.members {
		before[m] = count(m)
	}
	time.Sleep(500 * time.Millisecond)
	var best *member
	bestN := -1
	for _, m := range g.members {
		if n := count(m) - before[m]; m.running() && n > bestN {
			best, bestN = m, n
		}
	}
	return best, bestN
}

func (m *member) running() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// coverage returns how many offsets below ends no member has processed, and
// a description of where they are.
func (g *group) coverage(ends map[int32]int64) (missing int64, where string) {
	seen := map[int32][]bool{}
	for p, e := range ends {
		seen[p] = make([]bool, e)
	}
	for _, m := range g.members {
		m.mu.Lock()
		for _, e := range m.events {
			if !e.commit && e.offset < int64(len(seen[e.partition])) {
				seen[e.partition][e.offset] = true
			}
		}
		m.mu.Unlock()
	}
	var parts []string
	for p, s := range seen {
		first, n := int64(-1), 0
		for off, ok := range s {
			if !ok {
				missing++
				n++
				if first < 0 {
					first = int64(off)
				}
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("p%d: %d from offset %d", p, n, first))
		}
	}
	sort.Strings(parts)
	return missing, strings.Join(parts, ", ")
}

// verdict checks the group's output once every member has exited: every
// offset below ends was processed, and every duplicate is explained by a
// disrupted member's uncommitted window.
//
// A member's record event is covered when that member later reported a
// commit of the partition past it, before its reading of the partition
// broke off (a gap or rewind in the offsets it printed, which means it lost
// the partition and got it back). A record processed k times must have at
// least k-1 of its processings uncovered and made by a disrupted member:
// otherwise a record below a committed offset was processed again, or a
// member that was not killed handed over a partition without committing
// what it had processed. Records confluentworker drops as librdkafka's
// repeat of the record it delivered last are counted apart (redelivered).
type verdict struct {
	records, distinct, missing, dups int64
	redelivered                      int64            // client repeats the workers dropped, not in records
	window                           map[string]int64 // uncovered events of each disrupted member
	violations                       []string
}

func (g *group) verify(ends map[int32]int64, disrupted func(*member) bool) verdict {
	v := verdict{window: map[string]int64{}}
	type key struct {
		p int32
		o int64
	}
	type occ struct {
		total, excused int
	}
	occs := map[key]*occ{}
	for _, m := range g.members {
		m.mu.Lock()
		events := m.events
		// A SIGKILL can cut the last line short.
		torn := m.killed.Load() && len(m.bad) == 1 && m.badAt == m.lines
		if len(m.bad) > 0 && !torn {
			v.violations = append(v.violations, fmt.Sprintf("%s printed unparsable lines, e.g. %q", m.name, m.bad[0]))
		}
		m.mu.Unlock()
		v.redelivered += m.redelivered.Load()
		dis := disrupted(m)
		covered := coveredEvents(events)
		for i, e := range events {
			if e.commit {
				continue
			}
			v.records++
			k := key{e.partition, e.offset}
			o := occs[k]
			if o == nil {
				o = &occ{}
				occs[k] = o
			}
			o.total++
			if !covered[i] && dis {
				o.excused++
				v.window[m.name]++
			}
		}
	}
	v.distinct = int64(len(occs))
	for p, end := range ends {
		for off := int64(0); off < end; off++ {
			if occs[key{p, off}] == nil {
				v.missing++
			}
		}
	}
	bad := map[key][]string{} // who processed each unexplained duplicate (the first 10)
	unexplained := 0
	for k, o := range occs {
		v.dups += int64(o.total - 1)
		if o.excused < o.total-1 {
			if unexplained++; len(bad) < 10 {
				bad[k] = nil
			}
		}
	}
	if len(bad) == 0 {
		return v
	}
	for _, m := range g.members {
		m.mu.Lock()
		events := m.events
		m.mu.Unlock()
		covered := coveredEvents(events)
		for i, e := range events {
			k := key{e.partition, e.offset}
			if by, ok := bad[k]; ok && !e.commit {
				how := "committed past it later"
				if !covered[i] {
					how = "not committed past it"
				}
				bad[k] = append(by, fmt.Sprintf("%s (%s)", m.name, how))
			}
		}
	}
	for k, by := range bad {
		o := occs[k]
		v.violations = append(v.violations, fmt.Sprintf("partition %d offset %d processed %d times, only %d of them by a disrupted member after its last commit: by %s",
			k.p, k.o, o.total, o.excused, strings.Join(by, ", ")))
	}
	if unexplained > len(bad) {
		v.violations = append(v.violations, fmt.Sprintf("... and %d more such records", unexplained-len(bad)))
	}
	return v
}

// coveredEvents reports, for each record event of one member, whether the
// member later committed the partition past it within the same run: the
// contiguous offsets it printed in one ownership of the partition, and the
// commits it reported until it next printed a record of the partition.
func coveredEvents(events []event) []bool {
	type run struct {
		last, horizon int64
		idx           []int
	}
	cur := map[int32]*run{}
	var runs []*run
	for i, e := range events {
		r := cur[e.partition]
		if e.commit {
			if r != nil {
				r.horizon = max(r.horizon, e.offset)
			}
			continue
		}
		if r == nil || e.offset != r.last+1 {
			r = &run{}
			cur[e.partition] = r
			runs = append(runs, r)
		}
		r.last = e.offset
		r.idx = append(r.idx, i)
	}
	covered := make([]bool, len(events))
	for _, r := range runs {
		for _, i := range r.idx {
			covered[i] = r.horizon > events[i].offset
		}
	}
	return covered
}

func (v verdict) String() string {
	var w []string
	for name, n := range v.window {
		w = append(w, fmt.Sprintf("%s:%d", name, n))
	}
	sort.Strings(w)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d records processed, %d distinct, %d missing, %d duplicates; uncommitted windows of disrupted members [%s]",
		v.records, v.distinct, v.missing, v.dups, strings.Join(w, " "))
	if v.redelivered > 0 {
		fmt.Fprintf(&b, "; dropped by the workers as the client's repeats of the record it delivered last: %d", v.redelivered)
	}
	return b.String()
}
