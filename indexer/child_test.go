package indexer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2"
	"github.com/google/go-cmp/cmp"

	"github.com/chronik-go/chronik/tier3"
)

// TestMain lets the test binary be a build child: run as
// `<test binary> index-build [--nice N] [--hold DIR] INDEXDIR` it does what
// chronik's hidden index-build command does. --hold makes the child, once
// its priority is lowered, write DIR/<pid> and wait for DIR/release before
// it builds: tests look at it and kill it while it is surely mid-build.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "index-build" {
		if err := testChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "index-build:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testChild(args []string) error {
	fs := flag.NewFlagSet("index-build", flag.ContinueOnError)
	nice := fs.Int("nice", 0, "")
	hold := fs.String("hold", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hold == "" {
		return BuildChild(context.Background(), *nice, fs.Arg(0), os.Stdin, os.Stdout)
	}
	if err := lowerPriority(*nice); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*hold, strconv.Itoa(os.Getpid())), nil, 0o644); err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(*hold, "release")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return serveBuild(context.Background(), fs.Arg(0), os.Stdin, os.Stdout)
}

// childCommand runs this test binary as a build child.
func childCommand(t *testing.T, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe, "index-build"}, args...)
}

// waitFor polls fn until it returns nil, failing the test after a minute.
func waitFor(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// heldChildren returns the pids of the build children waiting in hold.
func heldChildren(hold string) []int {
	ents, _ := os.ReadDir(hold)
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func waitHeld(t *testing.T, hold string, n int) []int {
	t.Helper()
	var pids []int
	waitFor(t, fmt.Sprintf("%d build children started", n), func() error {
		if pids = heldChildren(hold); len(pids) < n {
			return fmt.Errorf("%d so far", len(pids))
		}
		return nil
	})
	return pids
}

// threadNices reads the nice value of each thread of pid (field 19 of
// /proc/<pid>/task/<tid>/stat).
func threadNices(t *testing.T, pid int) map[int]int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, e := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // the thread exited
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state is field 3, nice field 19.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		nice, err := strconv.Atoi(f[19-3])
		if err != nil {
			t.Fatalf("%s/stat: %q", e.Name(), s)
		}
		tid, _ := strconv.Atoi(e.Name())
		out[tid] = nice
	}
	return out
}

func ownNice(t *testing.T) int {
	return threadNices(t, os.Getpid())[os.Getpid()]
}

// mixedLog is one partition of every kind of record (mappingLog's) and 600
// benchmark records, in 2 archived segments and a tail.
func mixedLog() *memLog {
	l := newMemLog()
	l.addTopic("mix", 1, 4)
	src := mappingLog()
	for _, p := range src.topics["orders"].parts {
		for _, b := range p {
			var recs []*Record
			rs := recordStream{topic: "mix", to: 1 << 62}
			_ = rs.feed(b.b, func(r *Record) error { recs = append(recs, r); return nil })
			l.add("mix", 0, recs)
		}
	}
	for i := 0; i < 600; i += 100 {
		var recs []*Record
		for k := i; k < i+100; k++ {
			recs = append(recs, benchRecord(k))
		}
		l.add("mix", 0, recs)
	}
	return l
}

// The child builds the same index as the broker would in-process: every
// query finds the same documents.
func TestChildBuildsTheSameIndex(t *testing.T) {
	ctx := context.Background()
	l := mixedLog()
	tp, _ := l.Topic(ctx, "mix")
	pi, _ := l.Partition(ctx, tp, 0)
	if len(pi.Archived) != 2 {
		t.Fatalf("%d archived segments, want 2", len(pi.Archived))
	}
	queries := []string{"city:paris", "paris", `note:"disk full"`, `"order 8 shipped"`, `msg:"order 208 shipped"`, "order.total:>=100",
		"latency_ms:>=400", "order.paid:true", `created:>"2026-01-31T00:00:00Z"`, "headers.source:billing",
		"headers.src:h3", "key:order-1", "key:k-42", "key.text:k", "value.key:inner", "tags:urgent", "lisbon",
		"+level:l2 +city:rome", `timestamp:>"2026-03-01T12:00:00.300Z"`, "offset:>=500", ""}
	found := map[string]bool{}
	for _, s := range pi.Archived {
		local := filepath.Join(t.TempDir(), "index")
		n1, err := buildLocal(ctx, l, tp, 0, s.Base, s.Next, local)
		if err != nil {
			t.Fatal(err)
		}
		child := filepath.Join(t.TempDir(), "index")
		n2, err := buildInChild(ctx, childConfig{command: childCommand(t, "--nice", "19")}, l, tp, 0, s.Base, s.Next, child)
		if err != nil {
			t.Fatal(err)
		}
		if n1 != n2 || n1 != s.Next-s.Base {
			t.Errorf("segment %d: %d records in-process, %d in the child, want %d", s.Base, n1, n2, s.Next-s.Base)
		}
		a, b := hitIDs(t, local, queries), hitIDs(t, child, queries)
		if d := cmp.Diff(a, b); d != "" {
			t.Errorf("segment %d: hits (-in-process +child):\n%s", s.Base, d)
		}
		for q, ids := range a {
			if len(ids) > 0 {
				found[q] = true
			}
		}
	}
	for _, q := range queries {
		if !found[q] {
			t.Errorf("%q found nothing in either segment", q)
		}
	}
}

func hitIDs(t *testing.T, dir string, queries []string) map[string][]string {
	t.Helper()
	idx, err := openDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	out := map[string][]string{}
	for _, qs := range queries {
		q, err := ParseQuery(qs)
		if err != nil {
			t.Fatal(qs, err)
		}
		r, err := idx.Search(bleve.NewSearchRequestOptions(q, 10_000, 0, false))
		if err != nil {
			t.Fatal(qs, err)
		}
		ids := []string{}
		for _, h := range r.Hits {
			ids = append(ids, h.ID)
		}
		slices.Sort(ids)
		out[qs] = ids
	}
	return out
}

// Every thread of a build child runs at the configured nice value.
func TestChildThreadsRunNiced(t *testing.T) {
	ctx := context.Background()
	l := mixedLog()
	tp, _ := l.Topic(ctx, "mix")
	pi, _ := l.Partition(ctx, tp, 0)
	s := pi.Archived[0]
	own := ownNice(t)
	for _, nice := range []int{19, 7, 0} {
		hold := t.TempDir()
		done := make(chan error, 1)
		go func() {
			_, err := buildInChild(ctx, childConfig{command: childCommand(t, "--nice", strconv.Itoa(nice), "--hold", hold)}, l, tp, 0, s.Base, s.Next,
				filepath.Join(t.TempDir(), "index"))
			done <- err
		}()
		pid := waitHeld(t, hold, 1)[0]
		nices := threadNices(t, pid)
		if len(nices) < 2 {
			t.Errorf("nice %d: the child has %d threads; a Go process has several", nice, len(nices))
		}
		for tid, got := range nices {
			if want := max(own, nice); got != want {
				t.Errorf("nice %d: thread %d of the child runs at nice %d, want %d", nice, tid, got, want)
			}
		}
		if err := os.WriteFile(filepath.Join(hold, "release"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("nice %d: %v", nice, err)
		}
	}
}

// processState reads the state letter of pid (field 3 of /proc/<pid>/stat):
// T when stopped.
func processState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0], nil
}

// A build child is stopped while this process is busy and continues once
// it is quiet again.
func TestBusyParentPausesBuildChild(t *testing.T) {
	ctx := context.Background()
	l := mixedLog()
	tp, _ := l.Topic(ctx, "mix")
	hold := t.TempDir()
	var mu sync.Mutex
	var events []bool
	c := childConfig{command: childCommand(t, "--hold", hold), yieldCPU: 0.05, paused: func(p bool) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, p)
	}}
	done := make(chan error, 1)
	go func() {
		_, err := buildInChild(ctx, c, l, tp, 0, 0, 1<<62, filepath.Join(t.TempDir(), "index"))
		done <- err
	}()
	pid := waitHeld(t, hold, 1)[0]
	stop := make(chan struct{})
	for range 2 {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	waitFor(t, "the child stopped while this process is busy", func() error {
		if s, err := processState(pid); err != nil || s != "T" {
			return fmt.Errorf("state %q, %v", s, err)
		}
		return nil
	})
	close(stop)
	waitFor(t, "the child continued once this process is quiet", func() error {
		if s, err := processState(pid); err != nil || s == "T" {
			return fmt.Errorf("state %q, %v", s, err)
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(hold, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 2 || !events[0] || events[len(events)-1] {
		t.Errorf("pause events %v, want paused first and resumed last", events)
	}
}

// A build child killed mid-build uploads nothing; the indexer retries the
// segment and indexes it.
func TestKilledChildIsRetried(t *testing.T) {
	ctx := context.Background()
	l := mixedLog()
	store := tier3.NewMemStore()
	hold := t.TempDir()
	x, err := NewIndexer(Config{Log: l, Store: store, Topics: func() []string { return []string{"mix"} }, TempDir: t.TempDir(),
		BuildCommand: childCommand(t, "--nice", "19", "--hold", hold), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	x.Start()
	defer x.Close()
	first := waitHeld(t, hold, 1)[0]
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The failed pass is retried (the resync after a failure): a second
	// child starts, and nothing of the first is in the store.
	waitHeld(t, hold, 2)
	tp, _ := l.Topic(ctx, "mix")
	objs, err := store.List(ctx, tier3.PartitionPrefix(tp.ID, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".bleve") {
			t.Errorf("the killed build uploaded %s", o.Key)
		}
	}
	if m, err := LoadIndexManifest(ctx, store, tp.ID, 0); err != nil || len(m.Indexes) != 0 {
		t.Errorf("index manifest after the killed build: %+v, %v", m, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", first)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed child %d was not reaped: %v", first, err)
	}
	if err := os.WriteFile(filepath.Join(hold, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both segments indexed", func() error {
		if segs, recs := x.Lag(); segs != 0 || recs != 0 {
			return fmt.Errorf("lag %d segments, %d records", segs, recs)
		}
		m, err := LoadIndexManifest(ctx, store, tp.ID, 0)
		if err != nil || len(m.Indexes) != 2 {
			return fmt.Errorf("manifest %+v, %v", m, err)
		}
		return nil
	})
	e := newTestEngine(t, l, store)
	r, err := e.Search(ctx, Request{Topics: []string{"mix"}, Query: "city:paris", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Built != 0 || len(r.Hits) == 0 {
		t.Errorf("search after the retry: %d hits, %d indexes built on the fly", len(r.Hits), r.Built)
	}
}

// Close kills the builds in flight and leaves no child process behind.
func TestCloseKillsBuildChildren(t *testing.T) {
	l := mixedLog()
	hold := t.TempDir()
	tmp := filepath.Join(t.TempDir(), "build")
	x, err := NewIndexer(Config{Log: l, Store: tier3.NewMemStore(), Topics: func() []string { return []string{"mix"} }, TempDir: tmp,
		BuildCommand: childCommand(t, "--hold", hold), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	x.Start()
	pid := waitHeld(t, hold, 1)[0]
	x.Close()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("build child %d still exists after Close: %v", pid, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the build directory is still there after Close: %v", err)
	}
}

// A child that fails reports why, and its input framing rejects garbage.
func TestChildErrors(t *testing.T) {
	ctx := context.Background()
	l := mixedLog()
	tp, _ := l.Topic(ctx, "mix")
	_, err := buildInChild(ctx, childConfig{command: childCommand(t, "--nice", "20")}, l, tp, 0, 0, 10, filepath.Join(t.TempDir(), "index"))
	if err == nil || !strings.Contains(err.Error(), "nice 20 is not from 0 to 19") {
		t.Errorf("nice 20: %v", err)
	}
	// A log that fails mid-segment: the error is the log's, not the
	// child's complaint that its input ended.
	bad := &failingLog{Log: l, from: 4}
	pi, _ := l.Partition(ctx, tp, 0)
	s := pi.Archived[0]
	_, err = buildInChild(ctx, childConfig{command: childCommand(t)}, bad, tp, 0, s.Base, s.Next, filepath.Join(t.TempDir(), "index"))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("failing log: %v", err)
	}
	cases := map[string]string{
		"":                           "input ended before its last frame",
		"\x00\x00\x00\x02{}":         "not a build request",
		"\xff\xff\xff\xff":           "more than the",
		"\x00\x00\x00\x10{\"topic\"": "cut short",
	}
	for in, want := range cases {
		err := serveBuild(ctx, filepath.Join(t.TempDir(), "index"), strings.NewReader(in), &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("input %q: %v, want an error with %q", in, err, want)
		}
	}
}

// failingLog fails every Read at or past offset from.
type failingLog struct {
	Log
	from int64
}

func (l *failingLog) Read(ctx context.Context, t Topic, p int32, offset int64, maxBytes int) ([]byte, error) {
	if offset >= l.from {
		return nil, errors.New("disk on fire")
	}
	return l.Log.Read(ctx, t, p, offset, 1)
}
