package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConsumeGroup: two `consume --group` runs in a row split a topic's
// records between them with nothing read twice or skipped, and each reports
// the commits it made.
func TestConsumeGroup(t *testing.T) {
	addr := newBroker(t)
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "g", "--partitions", "2"}, b...)...)
	var in strings.Builder
	for i := range 10 {
		fmt.Fprintf(&in, "v%d\n", i)
	}
	mustChronik(t, in.String(), append([]string{"produce", "--topic", "g"}, b...)...)

	seen := map[[2]int64]int{}
	committed := map[int32]int64{}
	for i, n := range []int{6, 4} {
		// The second run uses KIP-848 and resumes from the first's commits.
		protocol := []string{"classic", "consumer"}[i]
		r := mustChronik(t, "", append([]string{"consume", "--topic", "g", "--group", "svc", "--count", fmt.Sprint(n),
			"--format", "json", "--report-commits", "--session-timeout", "6s", "--balancer", "range", "--group-protocol", protocol}, b...)...)
		records := 0
		sc := bufio.NewScanner(strings.NewReader(r.stdout))
		for sc.Scan() {
			var line struct {
				Partition *int32
				Offset    int64
				Committed *jsonCommitOffset
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			switch {
			case line.Committed != nil:
				committed[line.Committed.Partition] = max(committed[line.Committed.Partition], line.Committed.Offset)
			case line.Partition != nil:
				records++
				seen[[2]int64{int64(*line.Partition), line.Offset}]++
			}
		}
		if records != n {
			t.Errorf("consume --count %d printed %d records:\n%s", n, records, r.stdout)
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct records consumed, want 10: %v", len(seen), seen)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("record %v consumed %d times", k, c)
		}
	}
	got := committed[0] + committed[1]
	if got != 10 {
		t.Errorf("reported commits %v sum to %d, want 10", committed, got)
	}
	fromGroup := committedOffsets(t, addr, "svc", "g")
	if fromGroup[0]+fromGroup[1] != 10 {
		t.Errorf("group svc committed %v, want offsets summing to 10", fromGroup)
	}

	lg := kmsg.NewPtrListGroupsRequest()
	lg.TypesFilter = []string{"consumer"}
	lresp, err := lg.RequestWith(context.Background(), newAdminClient(t, addr))
	if err != nil || len(lresp.Groups) != 1 || lresp.Groups[0].Group != "svc" {
		t.Errorf("consumer-protocol groups after the KIP-848 run: %v %+v", err, lresp)
	}

	r := mustChronik(t, "", append([]string{"group", "describe", "svc"}, b...)...)
	if !strings.Contains(r.stdout, "group svc: state Empty, protocol consumer/") {
		t.Errorf("group describe of the KIP-848 group:\n%s", r.stdout)
	}

	r = chronik(t, "", append([]string{"consume", "--topic", "g", "--group", "svc", "--partition", "1"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "--partition cannot be used with --group") {
		t.Errorf("--partition with --group: exit %d, stderr %q", r.code, r.stderr)
	}
	r = chronik(t, "", append([]string{"consume", "--topic", "g", "--group", "svc", "--group-protocol", "consumer", "--balancer", "roundrobin"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "roundrobin is not served") {
		t.Errorf("roundrobin with the consumer protocol: exit %d, stderr %q", r.code, r.stderr)
	}
	r = chronik(t, "", append([]string{"consume", "--topic", "g", "--group", "svc", "--balancer", "nope"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, `--balancer "nope"`) {
		t.Errorf("bad --balancer: exit %d, stderr %q", r.code, r.stderr)
	}
}

func newAdminClient(t *testing.T, addr string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func committedOffsets(t *testing.T, addr, group, topic string) map[int32]int64 {
	t.Helper()
	resp, err := newAdmin(t, addr).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		out[p] = o.At
	}
	return out
}
