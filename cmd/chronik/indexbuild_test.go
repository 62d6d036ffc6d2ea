package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets this test binary stand in for the chronik binary as the
// broker's index build child: brokers started in-process run
// os.Executable() (this binary) with `index-build`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "index-build" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

// A broker indexes archived segments in index-build child processes.
func TestBrokerBuildsIndexesInChildProcesses(t *testing.T) {
	n := startNode(t)
	mustChronik(t, "", "topic", "create", "logs", "--brokers", n.kafka, "--partitions", "1", "--config", "segment.bytes=4096")
	var lines strings.Builder
	for i := range 400 {
		fmt.Fprintf(&lines, `{"city":"paris","n":%d,"msg":"order %d shipped"}`+"\n", i, i)
	}
	mustChronik(t, lines.String(), "produce", "--brokers", n.kafka, "--topic", "logs")
	// Poll slowly: the broker runs in this process, a scrape costs CPU
	// (much of it under -race), and builds pause while the process is busy.
	checkFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		m := scrape(t, n)
		if f := m["chronik_indexer_failures_total"]; f > 0 {
			t.Fatalf("%v indexer failures:\n%s", f, n.logs.String())
		}
		if s := m["chronik_indexer_segments_total"]; s < 1 {
			return fmt.Errorf("%v segments indexed", s)
		}
		return nil
	})
	r := mustChronik(t, "", "search", "--server", "http://"+n.http, "--topic", "logs", "-o", "jsonl", `"order 3 shipped"`)
	if got := strings.Count(r.stdout, "\n"); got != 1 {
		t.Errorf("search found %d records, want 1:\n%s", got, r.stdout)
	}
}

// The build command is hidden, refuses bad input with a clear message,
// and checks its nice value.
func TestIndexBuildCommand(t *testing.T) {
	r := mustChronik(t, "", "--help")
	if strings.Contains(r.stdout, "index-build") {
		t.Errorf("--help lists the hidden index-build command:\n%s", r.stdout)
	}
	dir := t.TempDir() + "/index"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"index-build", "--nice", "0", dir}, "input ended before its last frame"},
		{[]string{"index-build", "--nice", "25", dir}, "nice 25 is not from 0 to 19"},
		{[]string{"index-build"}, "accepts 1 arg"},
	} {
		r := chronik(t, "", c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error with %q", c.args, r.code, r.stderr, c.want)
		}
	}
}
