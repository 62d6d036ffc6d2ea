package hostile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// Attacks on cluster-wide limits: the search API
// (CHRONIK_SEARCH_MAX_HITS, CHRONIK_SEARCH_MAX_CONCURRENT), topic
// auto-creation (CHRONIK_MAX_PARTITIONS), and a broker started with
// another's node ID.

// search posts body to a broker's search API (docs/search.md).
func search(ctx context.Context, httpAddr string, body any) (status int, header http.Header, answer string, err error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/api/v1/search", bytes.NewReader(b))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, resp.Header, string(out), nil
}

// searchFlood concurrent searches are sent at once, sorted by score with an
// exact total over the whole topic: each indexes its unarchived records in
// memory, which takes a while.
const searchFlood = 8

func attackSearch(t *testing.T, su *suite) string {
	httpAddr := su.bs[0].HTTPAddr()
	ctx, cancel := withTimeout(2 * time.Minute)
	defer cancel()

	statuses := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	missingRetryAfter := 0
	for i := range searchFlood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, h, body, err := search(ctx, httpAddr, map[string]any{"topics": []string{searchTopic},
				"query": fmt.Sprintf("hostile s%d", i%7), "sort": "score", "exact_total": true, "limit": 100})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("search %d: %v", i, err)
				return
			}
			statuses[code]++
			if code == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
				missingRetryAfter++
			}
			if code >= 500 {
				t.Errorf("search %d: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("%d concurrent searches answered %v; want those past CHRONIK_SEARCH_MAX_CONCURRENT=%d answered 429", searchFlood, statuses, searchMaxConcurrent)
	}
	if statuses[http.StatusOK] == 0 {
		t.Errorf("%d concurrent searches answered %v; want up to CHRONIK_SEARCH_MAX_CONCURRENT=%d served", searchFlood, statuses, searchMaxConcurrent)
	}
	if missingRetryAfter > 0 {
		t.Errorf("%d answers 429 without Retry-After", missingRetryAfter)
	}

	code, _, body, err := search(ctx, httpAddr, map[string]any{"topics": []string{searchTopic}, "query": "", "limit": 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusBadRequest || !strings.Contains(body, "CHRONIK_SEARCH_MAX_HITS") {
		t.Errorf("a search for 10,000,000 hits answered %d %.200s; want 400 naming CHRONIK_SEARCH_MAX_HITS", code, body)
	}
	// The API is POST only (docs/search.md); a GET asking for as much must
	// not run a search either.
	greq, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/api/v1/search?topics="+searchTopic+"&limit=10000000", nil)
	gresp, err := http.DefaultClient.Do(greq)
	if err != nil {
		t.Fatal(err)
	}
	gresp.Body.Close()
	if gresp.StatusCode < 400 || gresp.StatusCode >= 500 {
		t.Errorf("GET /api/v1/search for 10,000,000 hits answered %s; want a 4xx", gresp.Status)
	}
	return fmt.Sprintf("%d concurrent searches: %v; 10M hits: POST %d, GET %d", searchFlood, statuses, code, gresp.StatusCode)
}

const (
	// autoCreateNames topics are asked for by Metadata with auto creation
	// on, autoCreateChunk per request.
	autoCreateNames = 3000
	autoCreateChunk = 100
	// autoCreateRunaway stops the flood once the cluster holds this many
	// partitions past the cap: the cap is not enforced, and creating
	// thousands of topics would only take the rest of the suite down with it.
	autoCreateRunaway = 100
)

func attackAutoCreateFlood(t *testing.T, su *suite) string {
	c, err := dialRaw(su.bs[0].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	defer func() { deleteTopics(t, su, names) }()
	errs := map[string]int{}
	total := su.partitionCount(t)
	asked := 0
	for asked < autoCreateNames {
		var chunk []string
		for range autoCreateChunk {
			chunk = append(chunk, fmt.Sprintf("flood-%05d", asked))
			asked++
		}
		names = append(names, chunk...)
		resp, err := c.roundTrip(metadataReq(chunk, true), 60*time.Second)
		if err != nil {
			t.Fatalf("metadata with %d topics to create: %v", len(chunk), err)
		}
		for _, mt := range resp.(*kmsg.MetadataResponse).Topics {
			key := "OK"
			if e := kerr.ErrorForCode(mt.ErrorCode); e != nil {
				key = e.Error()
			}
			errs[key]++
		}
		if total = su.partitionCount(t); total > maxPartitions+autoCreateRunaway {
			t.Errorf("%d partitions after auto-creating from %d names; want at most CHRONIK_MAX_PARTITIONS=%d (flood stopped)", total, asked, maxPartitions)
			break
		}
	}
	if total > maxPartitions {
		t.Errorf("%d partitions after auto-creating from %d names; want at most CHRONIK_MAX_PARTITIONS=%d", total, asked, maxPartitions)
	}

	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	resp, err := su.adm.CreateTopic(ctx, 50, 3, nil, "flood-past-the-cap")
	names = append(names, "flood-past-the-cap")
	if err != nil && resp.Err == nil {
		resp.Err = err // kadm's single-topic CreateTopic returns the topic's error too
	}
	var kerrErr *kerr.Error
	switch {
	case err != nil && !errors.As(err, &kerrErr):
		t.Fatal(err)
	case total < maxPartitions-50:
		t.Logf("%d partitions: a topic of 50 fits under the cap; its answer proves nothing", total)
	case resp.Err == nil:
		t.Errorf("CreateTopics of 50 partitions with %d of CHRONIK_MAX_PARTITIONS=%d in use: created; want POLICY_VIOLATION or INVALID_PARTITIONS", total, maxPartitions)
	case !isErr(resp.Err, kerr.PolicyViolation, kerr.InvalidPartitions):
		t.Errorf("CreateTopics past the cap: %v (%s); want POLICY_VIOLATION or INVALID_PARTITIONS", resp.Err, resp.ErrMessage)
	}
	return fmt.Sprintf("%d names asked for (%s): %d partitions in the cluster; CreateTopics past the cap: %v", asked, fmtCounts(errs), total, resp.Err)
}

func isErr(err error, want ...*kerr.Error) bool {
	for _, w := range want {
		if err == w {
			return true
		}
	}
	return false
}

func deleteTopics(t *testing.T, su *suite, names []string) {
	for len(names) > 0 {
		n := min(len(names), 200)
		ctx, cancel := withTimeout(60 * time.Second)
		_, err := su.adm.DeleteTopics(ctx, names[:n]...)
		cancel()
		if err != nil {
			t.Logf("deleting flood topics: %v", err)
		}
		names = names[n:]
	}
}

// duplicateNodeWait bounds how long the impostor may take to give up.
const duplicateNodeWait = 20 * time.Second

// duplicateNodeErr is how the impostor's error must name the node ID.
var duplicateNodeErr = regexp.MustCompile(`(?i)(duplicate|already|in use|registered|another).*node.{0,12}\b2\b|node.{0,12}\b2\b.*(duplicate|already|in use|registered|another)`)

func attackDuplicateNodeID(t *testing.T, su *suite) string {
	kafka, _ := testharness.FreeAddr()
	httpAddr, _ := testharness.FreeAddr()
	raft, _ := testharness.FreeAddr()
	var peers []string
	for i, b := range su.bs {
		peers = append(peers, fmt.Sprintf("%d@%s", i+1, b.RaftAddr()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), duplicateNodeWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, testharness.Binary(t), "start", "--node-id", "2", "--peers", strings.Join(peers, ","),
		"--raft-addr", raft, "--kafka-addr", kafka, "--advertised-addr", kafka, "--http-addr", httpAddr, "--data-dir", t.TempDir(),
		"--default-replication-factor", "3", "--min-insync-replicas", "2")
	cmd.Env = append(os.Environ(), clusterEnv()...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	outcome := fmt.Sprintf("impostor exited after %v: %v", took.Round(time.Millisecond), err)
	switch {
	case ctx.Err() != nil:
		t.Errorf("a broker started with broker 2's node ID still ran after %v; want it to exit naming the duplicate node ID\n%s", duplicateNodeWait, tail(out.String()))
		outcome = "impostor still running; killed"
	case err == nil:
		t.Errorf("a broker started with broker 2's node ID exited 0; want an error naming the duplicate node ID\n%s", tail(out.String()))
	case !duplicateNodeErr.MatchString(lastLines(out.String(), 10)):
		t.Errorf("a broker started with broker 2's node ID exited (%v) without naming the duplicate node ID 2\n%s", err, tail(out.String()))
	}

	// Broker 2 stays registered at its own address and serving.
	testharness.CheckFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		m, err := su.adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		for _, b := range m.Brokers {
			if b.NodeID == 2 {
				if got := fmt.Sprintf("%s:%d", b.Host, b.Port); got != su.bs[1].Addr() {
					return fmt.Errorf("broker 2 registered at %s; it is %s", got, su.bs[1].Addr())
				}
				return testharness.ProbeAPIVersions(su.bs[1].Addr(), 5*time.Second)
			}
		}
		return fmt.Errorf("broker 2 is not in the cluster's metadata")
	})
	// The window: traffic after the impostor, too.
	time.Sleep(time.Until(start.Add(su.oneShotWindow())))
	return outcome
}

// lastLines is the last n lines of s: where a process that gives up says
// why, rather than anywhere in its log.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func tail(s string) string {
	const n = 3000
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
