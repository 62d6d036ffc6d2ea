package chaos_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// report prints the round log, the totals, the checks, the brokers' Tier 3
// metrics and the evidence in their logs.
func (s *suite) report() {
	s.reported = true
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: %d rounds in %v\n", len(s.rounds), time.Since(s.started).Round(time.Second))
	for _, r := range s.rounds {
		fmt.Fprintf(&b, "  %s\n", r)
		if r.blocked != "" {
			fmt.Fprintf(&b, "  when round %d did not recover:\n%s", r.n, r.blocked)
		}
	}
	var kinds []string
	for _, k := range allFaults {
		if n := s.occurred[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	fmt.Fprintf(&b, "faults: %s\n", strings.Join(kinds, ", "))
	for p, when := range s.archiveBroken {
		if when != "" {
			fmt.Fprintf(&b, "archive of partition %d first overlapped or had a gap after: %s\n", p, when)
		}
	}

	tot := s.totals
	if tot.readBack < 0 { // the log was never read back: what the producers saw
		s.acks.mu.Lock()
		tot.acked, tot.giveUps = len(s.acks.acked), s.acks.giveUps
		if tot.giveUps > 0 {
			tot.giveUpErrs = "(" + s.acks.giveUpSummaryLocked() + ")"
		}
		s.acks.mu.Unlock()
	}
	num := func(n int) string {
		if n < 0 {
			return "not measured"
		}
		return fmt.Sprint(n)
	}
	fmt.Fprintf(&b, "totals: acknowledged %d, lost %s (plus %d overwritten at their offset, %d in partitions no replica served), "+
		"duplicated %s, producer give-ups %d %s, records read back %s (%d written but never acknowledged), search hits %s\n",
		tot.acked, num(tot.lost), max(tot.moved, 0), max(tot.unreadable, 0), num(tot.dups), tot.giveUps, tot.giveUpErrs,
		num(tot.readBack), max(tot.unacked, 0), num(tot.searchHits))
	failed := 0
	for _, c := range s.checks {
		if c.err != nil {
			failed++
		}
	}
	fmt.Fprintf(&b, "checks: %d passed, %d failed\n", len(s.checks)-failed, failed)
	for _, c := range s.checks {
		if c.err != nil {
			fmt.Fprintf(&b, "  FAIL %s: %v\n", c.name, c.err)
		} else {
			fmt.Fprintf(&b, "  ok   %s: %s\n", c.name, c.detail)
		}
	}
	m := s.metricsSnapshot
	if m == "" {
		m = s.tierMetrics()
	}
	fmt.Fprintf(&b, "tier 3 metrics when the archive should have caught up:\n%s", m)
	fmt.Fprintf(&b, "broker log evidence:\n%s", s.logEvidence())
	s.t.Log(b.String())
}

// tierMetrics lists each broker's Tier 3, segment and indexer series.
func (s *suite) tierMetrics() string {
	var b strings.Builder
	for _, n := range s.nodes {
		m, err := n.b.TryScrape(5 * time.Second)
		if err != nil {
			fmt.Fprintf(&b, "  broker %d: %v\n%s", n.id, err, s.metricsGoroutines(n))
			continue
		}
		var kv []string
		for k, v := range m {
			if strings.HasPrefix(k, "chronik_tier3_") || strings.HasPrefix(k, "chronik_segment") || strings.HasPrefix(k, "chronik_indexer_lag") {
				kv = append(kv, fmt.Sprintf("%s=%v", strings.TrimPrefix(k, "chronik_"), v))
			}
		}
		sort.Strings(kv)
		fmt.Fprintf(&b, "  broker %d: %s\n", n.id, strings.Join(kv, " "))
	}
	return b.String()
}

// metricsGoroutines shows where a broker whose /metrics does not answer
// is stuck: the goroutines computing its metrics.
func (s *suite) metricsGoroutines(n *node) string {
	gs, err := s.goroutines(n, func(g string) bool {
		return strings.Contains(g, "broker.(*metrics)") || strings.Contains(g, "promhttp")
	})
	if err != nil {
		return fmt.Sprintf("    goroutine dump: %v\n", err)
	}
	if len(gs) == 0 {
		return "    no goroutine is in the metrics handler\n"
	}
	return "    stuck computing metrics:\n" + indentGoroutines(gs, 3)
}

// blockedGoroutines lists, for each running broker, the goroutines in
// Chronik's broker and tier3 packages that have waited a minute or more
// (the dump says "[sync.Mutex.Lock, 2 minutes]") on a lock, a channel
// send or an archive that does not load: where a cluster that does not
// recover is stuck. Idle loops (a select or receive for minutes) are
// left out.
func (s *suite) blockedGoroutines() string {
	var b strings.Builder
	for _, n := range s.nodes {
		gs, err := s.goroutines(n, func(g string) bool {
			head, _, _ := strings.Cut(g, "\n")
			if !strings.Contains(head, "minutes]") || !(strings.Contains(g, "chronik/broker.") || strings.Contains(g, "chronik/tier3.")) {
				return false
			}
			for _, w := range []string{"semacquire", "sync.Mutex", "sync.RWMutex", "sync.Cond", "chan send"} {
				if strings.Contains(head, w) {
					return true
				}
			}
			return strings.Contains(g, "waitArchiveLoaded")
		})
		switch {
		case err != nil:
			fmt.Fprintf(&b, "  broker %d: goroutine dump: %v\n", n.id, err)
		case len(gs) == 0:
			fmt.Fprintf(&b, "  broker %d: no goroutine blocked for minutes on a lock, a channel send or the archive\n", n.id)
		default:
			fmt.Fprintf(&b, "  broker %d: %d goroutines blocked for minutes:\n%s", n.id, len(gs), indentGoroutines(gs, 4))
		}
	}
	return b.String()
}

// goroutines returns the goroutines of broker n's dump (the brokers run
// with --pprof) that match.
func (s *suite) goroutines(n *node, match func(string) bool) ([]string, error) {
	if !n.b.Running() {
		return nil, errors.New("not running")
	}
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get("http://" + n.b.HTTPAddr() + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dump, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, g := range strings.Split(string(dump), "\n\n") {
		if match(g) {
			out = append(out, g)
		}
	}
	return out, nil
}

func indentGoroutines(gs []string, most int) string {
	var b strings.Builder
	for i, g := range gs {
		if i == most {
			fmt.Fprintf(&b, "    … %d more\n", len(gs)-most)
			break
		}
		if len(g) > 3000 {
			g = g[:3000] + "\n…"
		}
		fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(g, "\n", "\n    "))
	}
	return b.String()
}

// evidence are the broker log lines that explain a failed run.
var evidence = []string{"tier 3 upload failed", "overlapping", "level=ERROR", "panic:", "DATA RACE"}

// logEvidence counts the evidence lines in each broker's log and shows the
// first and the last of each kind.
func (s *suite) logEvidence() string {
	var b strings.Builder
	for _, n := range s.nodes {
		f, err := os.Open(n.b.LogPath())
		if err != nil {
			fmt.Fprintf(&b, "  broker %d: %v\n", n.id, err)
			continue
		}
		count := map[string]int{}
		first, last := map[string]string{}, map[string]string{}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			for _, e := range evidence {
				if strings.Contains(line, e) {
					count[e]++
					if len(line) > 500 {
						line = line[:500] + "…"
					}
					if first[e] == "" {
						first[e] = line
					}
					last[e] = line
				}
			}
		}
		f.Close()
		var counts []string
		for _, e := range evidence {
			counts = append(counts, fmt.Sprintf("%d %q", count[e], e))
		}
		fmt.Fprintf(&b, "  broker %d (%s): %s\n", n.id, n.b.LogPath(), strings.Join(counts, ", "))
		shown := map[string]bool{}
		for _, e := range evidence {
			if count[e] > 0 && !shown[first[e]] {
				shown[first[e]] = true
				fmt.Fprintf(&b, "    first: %s\n", first[e])
				if count[e] > 1 {
					fmt.Fprintf(&b, "    last:  %s\n", last[e])
				}
			}
		}
	}
	return b.String()
}
