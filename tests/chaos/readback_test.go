package chaos_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
)

var poll = testharness.Poll

// readAll reads every partition from offset 0 on every replica and
// returns the longest replica's records per partition (the others are
// reported where they differ). The replicas must agree record for record,
// each up to the high watermark the partition had before the restart,
// with offsets strictly increasing.
func (s *suite) readAll(hws map[int32]int64) (map[int32][]rec, error) {
	var errs []error
	now, err := s.agreedHighWatermarks(hws, 60*time.Second)
	if err != nil {
		errs = append(errs, fmt.Errorf("after the restart: %w", err))
	}
	// A broken archive stalls every read for its retry time: bound the
	// whole pass, then give each read one try.
	deadline := time.Now().Add(4 * time.Minute)
	logs := map[int32][]rec{}
	for p := range int32(partitions) {
		if now[p] != hws[p] {
			errs = append(errs, fmt.Errorf("partition %d: high watermark %d after the restart, %d before", p, now[p], hws[p]))
		}
		var reads [][]rec
		var from []int32
		for _, n := range s.nodes {
			recs, hw, err := s.readReplica(n, p, deadline)
			if err != nil {
				errs = append(errs, fmt.Errorf("partition %d on broker %d: read %d records, then: %w", p, n.id, len(recs), err))
				continue
			}
			if hw != hws[p] {
				errs = append(errs, fmt.Errorf("partition %d on broker %d: high watermark %d, want %d", p, n.id, hw, hws[p]))
			}
			for j := 1; j < len(recs); j++ {
				if recs[j].offset <= recs[j-1].offset {
					errs = append(errs, fmt.Errorf("partition %d on broker %d: offset %d after %d", p, n.id, recs[j].offset, recs[j-1].offset))
					break
				}
			}
			reads, from = append(reads, recs), append(from, n.id)
		}
		if len(reads) == 0 {
			continue
		}
		ref := 0
		for i := range reads {
			if len(reads[i]) > len(reads[ref]) {
				ref = i
			}
		}
		for i := range reads {
			if d := equalRecs(reads[ref], reads[i]); i != ref && d != "" {
				errs = append(errs, fmt.Errorf("partition %d: broker %d differs from broker %d: %s", p, from[i], from[ref], d))
			}
		}
		logs[p] = reads[ref]
	}
	return logs, errors.Join(errs...)
}

// checkLog compares the log read back with the acknowledgements.
func (s *suite) checkLog(logs map[int32][]rec) {
	a := s.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	tot := &s.totals
	tot.acked, tot.giveUps = len(a.acked), a.giveUps
	seen := map[recID]int{}
	byOffset := map[int32]map[int64]string{}
	tot.readBack, tot.unacked, tot.foreign, tot.dups = 0, 0, 0, 0
	var foreign []string
	for p, recs := range logs {
		byOffset[p] = make(map[int64]string, len(recs))
		for _, r := range recs {
			tot.readBack++
			byOffset[p][r.offset] = r.value
			id, ok := parseID([]byte(r.value))
			s.prod.mu.Lock()
			known := ok && id.producer >= 0 && id.producer < len(s.prod.produced) && id.seq >= 0 && id.seq < s.prod.produced[id.producer]
			s.prod.mu.Unlock()
			if !known {
				tot.foreign++
				if len(foreign) < 5 {
					foreign = append(foreign, fmt.Sprintf("partition %d offset %d: %.80q", p, r.offset, r.value))
				}
				continue
			}
			seen[id]++
			if seen[id] == 2 {
				tot.dups++
			}
			if _, ok := a.acked[id]; !ok {
				tot.unacked++
			}
		}
	}
	lostAt := map[int32][]int64{}
	tot.lost, tot.moved, tot.unreadable = 0, 0, 0
	for id, pos := range a.acked {
		if _, read := logs[pos.partition]; !read {
			tot.unreadable++ // no replica served the partition: not counted as lost
			continue
		}
		got, ok := byOffset[pos.partition][pos.offset]
		switch {
		case !ok:
			tot.lost++
			lostAt[pos.partition] = append(lostAt[pos.partition], pos.offset)
		case got != string(value(id.producer, id.seq)):
			tot.moved++
			lostAt[pos.partition] = append(lostAt[pos.partition], pos.offset)
		}
	}
	detail := fmt.Sprintf("%d acknowledged, %d missing from the log, %d with another record at their offset", tot.acked, tot.lost, tot.moved)
	if !s.coldRead {
		// Still a check of what the brokers serve, but not of the archive
		// alone: the checks before this one say why.
		detail += " (NOT a cold read: local segments were left when the brokers restarted)"
	}
	var errs []error
	if tot.lost+tot.moved > 0 {
		errs = append(errs, fmt.Errorf("%s; acknowledged offsets lost: %s", detail, s.describeLost(lostAt)))
	}
	if len(logs) < partitions {
		errs = append(errs, fmt.Errorf("%d acknowledged records unreadable: %d of %d partitions served by no replica", tot.unreadable, partitions-len(logs), partitions))
	}
	s.check("0 acknowledged records lost", detail, errors.Join(errs...))
	if !s.coldRead {
		s.check("every record read from the archive alone", "", errors.New("not proven: local segments were left when the brokers restarted"))
	}
	var err error
	if tot.dups > 0 {
		err = fmt.Errorf("%d records appear more than once in the log", tot.dups)
	}
	s.check("0 records duplicated", fmt.Sprintf("%d records read back, %d written but never acknowledged (given up by the client: legitimate)", tot.readBack, tot.unacked), err)
	err = nil
	if tot.foreign > 0 {
		err = fmt.Errorf("%d records in the log were never produced: %s", tot.foreign, strings.Join(foreign, "; "))
	}
	s.check("only produced records in the log", "", err)
	n, first := a.conflicts, a.firstConflict
	err = nil
	if n > 0 {
		err = fmt.Errorf("%d offsets acknowledged for two different records (an acknowledged record overwritten); first: %s", n, first)
	}
	s.check("no offset acknowledged twice during the rounds", "", err)
	tot.giveUpErrs = ""
	if a.giveUps > 0 {
		tot.giveUpErrs = "(" + s.acks.giveUpSummaryLocked() + ")"
	}
}

// describeLost compresses lost offsets into ranges per partition and shows
// the archive around the first one.
func (s *suite) describeLost(lostAt map[int32][]int64) string {
	var parts []string
	for p := range int32(partitions) {
		offs := lostAt[p]
		if len(offs) == 0 {
			continue
		}
		slices.Sort(offs)
		var ranges []string
		from, prev := offs[0], offs[0]
		flush := func() {
			if len(ranges) < 8 {
				ranges = append(ranges, fmt.Sprintf("[%d,%d]", from, prev))
			}
		}
		for _, o := range offs[1:] {
			if o != prev+1 {
				flush()
				from = o
			}
			prev = o
		}
		flush()
		desc := fmt.Sprintf("partition %d: %d offsets in %s", p, len(offs), strings.Join(ranges, " "))
		if m, err := s.manifest(p); err == nil {
			desc += fmt.Sprintf(" (archive around offset %d: %s)", offs[0], describeSegments(m, offs[0]))
		}
		parts = append(parts, desc)
	}
	return strings.Join(parts, "; ")
}

// searchHit is one line of `chronik search --output jsonl`.
type searchHit struct {
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Value     json.RawMessage `json:"value"`
}

// canonicalJSON re-encodes a JSON document with sorted keys, so two
// encodings of one object compare equal.
func canonicalJSON(b []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", err
	}
	out, err := json.Marshal(v)
	return string(out), err
}

// checkSearch runs `chronik search --bucket` as the real binary, with no
// broker running, over every record (the numeric range matches every
// seq, so it goes through the index rather than a match-all), and compares
// its hits with the records read back: the same (partition, offset, value)
// set, each once.
func (s *suite) checkSearch(logs map[int32][]rec) (string, error) {
	s.totals.searchHits = 0
	out := filepath.Join(s.t.TempDir(), "search.jsonl")
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const query = "seq:>=0"
	cmd := exec.CommandContext(ctx, testharness.Binary(s.t), "search", "--bucket", s.url, "--topic", topic,
		"--output", "jsonl", "--limit", "10000000", "--sort", "time", "--cache-dir", s.t.TempDir(), query)
	cmd.Env = append(os.Environ(), s.srv.Env()...)
	cmd.Stdout, cmd.Stderr = f, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("chronik search --bucket %s --topic %s %q: %v\n%s", s.url, topic, query, err, stderr.Bytes())
	}
	took := time.Since(start)
	if _, err := f.Seek(0, 0); err != nil {
		return "", err
	}

	type key struct {
		p   int32
		off int64
	}
	want := map[key]string{}
	for p, recs := range logs {
		for _, r := range recs {
			want[key{p, r.offset}] = r.value
		}
	}
	got := map[key]bool{}
	var missing, extra, differ, dups, bad int
	var examples []string
	example := func(format string, args ...any) {
		if len(examples) < 8 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var h searchHit
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Topic != topic {
			bad++
			example("unreadable hit %.120q (%v)", sc.Bytes(), err)
			continue
		}
		s.totals.searchHits++
		k := key{h.Partition, h.Offset}
		if got[k] {
			dups++
			example("partition %d offset %d returned twice", k.p, k.off)
			continue
		}
		got[k] = true
		v, ok := want[k]
		if !ok {
			extra++
			example("hit at partition %d offset %d is not in the log read back: %.120s", k.p, k.off, h.Value)
			continue
		}
		cg, err1 := canonicalJSON(h.Value)
		cw, err2 := canonicalJSON([]byte(v))
		if err1 != nil || err2 != nil || cg != cw {
			differ++
			example("partition %d offset %d: search has %.120s, the log %.120s", k.p, k.off, h.Value, v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the search output: %w", err)
	}
	var missed []key
	for k := range want {
		if !got[k] {
			missing++
			missed = append(missed, k)
		}
	}
	sort.Slice(missed, func(i, j int) bool {
		return missed[i].p < missed[j].p || (missed[i].p == missed[j].p && missed[i].off < missed[j].off)
	})
	for _, k := range missed[:min(len(missed), 4)] {
		example("partition %d offset %d is in the log, not in the hits", k.p, k.off)
	}
	detail := fmt.Sprintf("%d hits for %d records read back in %v; missing %d, extra %d, different value %d, returned twice %d, unreadable %d",
		s.totals.searchHits, len(want), took.Round(time.Millisecond), missing, extra, differ, dups, bad)
	if missing+extra+differ+dups+bad > 0 {
		return detail, fmt.Errorf("%s: %s", detail, strings.Join(examples, "; "))
	}
	return detail, nil
}
