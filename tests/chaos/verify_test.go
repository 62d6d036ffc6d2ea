package chaos_test

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// checkResult is one of the final checks.
type checkResult struct {
	name   string
	detail string
	err    error
}

func (s *suite) check(name, detail string, err error) {
	s.checks = append(s.checks, checkResult{name, detail, err})
	if err != nil {
		s.t.Errorf("check FAILED: %s: %v", name, err)
		return
	}
	s.t.Logf("check ok: %s: %s", name, detail)
}

// totals are the numbers the report ends with; -1 where not reached.
type totals struct {
	acked, lost, moved, unreadable, dups, foreign, giveUps int
	readBack, unacked, searchHits                          int
	giveUpErrs                                             string
}

// verify runs the checks after the rounds. Each check records its result
// and the next ones still run where they can, so one run shows every way
// the cluster went wrong.
func (s *suite) verify() {
	start := time.Now()
	// A cluster that did not recover in the rounds gets shorter waits
	// here: the checks still say what state it is in, sooner.
	wait := recoverTimeout
	if len(s.rounds) < s.set.rounds {
		wait = 30 * time.Second
	}
	if _, err := s.waitFullISR(wait); err != nil {
		s.check("full ISR after the producers stopped", "", err)
		wait = 30 * time.Second
	}

	// 1. Everything sealed (segment.ms) and archived within 60 s.
	hws, err := s.agreedHighWatermarks(nil, 60*time.Second)
	s.check("replicas agree on each partition's high watermark", fmt.Sprint(hws), err)
	detail, err := s.waitArchived(hws, start, 60*time.Second, false)
	s.check("upload lag back to 0 and the archive reaching the high watermark within 60 s", detail, err)
	caughtUp := err == nil
	s.metricsSnapshot = s.tierMetrics()

	// 2. The archive's shape.
	detail, err = s.checkManifests(hws)
	s.check("archive of each partition: ordered, non-overlapping, gapless, offset 0 to the high watermark", detail, err)
	detail, err = s.checkSealTriggers()
	s.check("both seal triggers fired (segment.bytes and segment.ms)", detail, err)

	// 3. Local disk use within local retention.
	detail, err = s.checkLocalBound()
	s.check(fmt.Sprintf("local sealed segments per partition within local.retention.bytes + segment.bytes (%d B)", localRetentionBytes+segmentBytes), detail, err)

	// 4. Every local copy gone, every broker restarted: cold caches. An
	// archive that never caught up cannot take the local copies' place:
	// then the brokers restart with them and the reads check what they
	// serve.
	if caughtUp {
		hws, detail, err = s.dropLocalCopies(hws)
	} else {
		detail, err = "", errors.New("not attempted: the archive never caught up (above)")
	}
	s.check("local.retention.* 0 deletes every local segment once archived", detail, err)
	detail, err = s.restartAll(wait)
	s.check("every broker restarted with no local segment (cold caches)", detail, err)

	// 5. Every partition from offset 0 on every replica.
	logs, err := s.readAll(hws)
	s.check("every replica serves its partitions from offset 0 to the high watermark", fmt.Sprintf("high watermarks %v", hws), err)
	s.checkLog(logs)
	detail, err = s.checkArchiveReads()
	s.check("the reads came from the archive on every broker", detail, err)

	// 6. Search straight from the bucket, no broker running.
	s.stopAll()
	if len(logs) > 0 {
		detail, err = s.checkSearch(logs)
		s.check("chronik search --bucket returns exactly the records read back", detail, err)
	} else {
		s.check("chronik search --bucket returns exactly the records read back", "", errors.New("not run: nothing was read back"))
	}
}

// agreedHighWatermarks waits until every replica reports the same high
// watermark for each partition (at least want[p] when want is given). It
// returns the highest each partition reported, also when they disagree.
func (s *suite) agreedHighWatermarks(want map[int32]int64, timeout time.Duration) (map[int32]int64, error) {
	hws := map[int32]int64{}
	err := poll(timeout, 200*time.Millisecond, func() error {
		var errs []error
		for p := range int32(partitions) {
			var seen []int64
			from := s.acks.end(p)
			if w, ok := want[p]; ok {
				from = max(from, w)
			}
			for _, n := range s.nodes {
				hw, err := s.highWatermark(n, p, from)
				if err != nil {
					errs = append(errs, err)
					hw = -1
				}
				seen = append(seen, hw)
				hws[p] = max(hws[p], hw)
			}
			for _, hw := range seen[1:] {
				if hw != seen[0] {
					errs = append(errs, fmt.Errorf("partition %d: high watermarks %v on brokers 1-3", p, seen))
					break
				}
			}
			if w, ok := want[p]; ok && hws[p] < w {
				errs = append(errs, fmt.Errorf("partition %d: high watermark %d, below the %d it had", p, hws[p], w))
			}
		}
		return errors.Join(errs...)
	})
	return hws, err
}

// waitArchived waits until every broker reports no upload lag and each
// partition's manifest ends at its high watermark; with noLocal, also
// until no broker holds a sealed segment of the topic.
func (s *suite) waitArchived(hws map[int32]int64, since time.Time, timeout time.Duration, noLocal bool) (string, error) {
	err := poll(timeout, 250*time.Millisecond, func() error {
		var errs []error
		for _, n := range s.nodes {
			m, err := n.b.TryScrape(5 * time.Second)
			if err != nil {
				errs = append(errs, fmt.Errorf("broker %d: %w", n.id, err))
				continue
			}
			if lag := m["chronik_tier3_upload_lag_segments"]; lag != 0 {
				errs = append(errs, fmt.Errorf("broker %d: chronik_tier3_upload_lag_segments %v (%v bytes), upload errors so far %v",
					n.id, lag, m["chronik_tier3_upload_lag_bytes"], m["chronik_tier3_upload_errors_total"]))
			}
			if !noLocal {
				continue
			}
			for p := range int32(partitions) {
				if c, b, err := localSegments(s.partDir(n, p)); err != nil || c > 0 {
					errs = append(errs, fmt.Errorf("broker %d partition %d: %d local segments (%d B) %v", n.id, p, c, b, err))
				}
			}
		}
		for p := range int32(partitions) {
			m, err := s.manifest(p)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if m.End() != hws[p] {
				errs = append(errs, fmt.Errorf("partition %d: the archive ends at %d, the high watermark is %d", p, m.End(), hws[p]))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("after %v", time.Since(since).Round(time.Millisecond)), nil
}

// checkManifests checks each partition's archive: segments in offset
// order, each starting where the previous ended (no overlap, no gap),
// from offset 0 (retention.ms is -1) to the high watermark.
func (s *suite) checkManifests(hws map[int32]int64) (string, error) {
	var errs []error
	var counts []string
	for p := range int32(partitions) {
		m, err := s.manifest(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		counts = append(counts, fmt.Sprintf("partition %d: %d segments", p, len(m.Segments)))
		if len(m.Segments) == 0 {
			errs = append(errs, fmt.Errorf("partition %d: nothing archived", p))
			continue
		}
		if b := m.Segments[0].Base; b != 0 {
			errs = append(errs, fmt.Errorf("partition %d: the archive starts at %d, not 0", p, b))
		}
		for i, e := range m.Segments {
			if e.Next <= e.Base {
				errs = append(errs, fmt.Errorf("partition %d: segment #%d is [%d,%d)", p, i, e.Base, e.Next))
				break
			}
			if i == 0 {
				continue
			}
			prev := m.Segments[i-1]
			if e.Base < prev.Next {
				errs = append(errs, fmt.Errorf("partition %d: segment #%d [%d,%d) overlaps #%d [%d,%d); around it: %s",
					p, i, e.Base, e.Next, i-1, prev.Base, prev.Next, describeSegments(m, e.Base)))
				break
			}
			if e.Base > prev.Next {
				errs = append(errs, fmt.Errorf("partition %d: offsets [%d,%d) missing between segments #%d and #%d; around it: %s",
					p, prev.Next, e.Base, i-1, i, describeSegments(m, e.Base)))
				break
			}
		}
		if m.End() != hws[p] {
			errs = append(errs, fmt.Errorf("partition %d: the archive ends at %d, the high watermark is %d", p, m.End(), hws[p]))
		}
	}
	return strings.Join(counts, ", "), errors.Join(errs...)
}

// checkSealTriggers looks for both kinds of segments in the archive: ones
// near segment.bytes (sealed by size, during bursts) and ones well below
// it (sealed by age). The size alone cannot prove the trigger, since a
// segment.ms seal of a partition holding more than segment.bytes also cuts
// full segments, but a run without small segments never sealed by age and
// one without full ones never reached segment.bytes.
func (s *suite) checkSealTriggers() (string, error) {
	full, small := 0, 0
	for p := range int32(partitions) {
		m, err := s.manifest(p)
		if err != nil {
			return "", err
		}
		for _, e := range m.Segments {
			switch {
			case e.Size >= segmentBytes*3/4:
				full++
			case e.Size < segmentBytes/2:
				small++
			}
		}
	}
	detail := fmt.Sprintf("%d segments of at least 3/4 segment.bytes, %d below half of it", full, small)
	if full == 0 || small == 0 {
		return detail, errors.New(detail)
	}
	return detail, nil
}

// checkLocalBound checks on disk that every broker's partition directory
// holds at most local.retention.bytes + segment.bytes of sealed segments
// once they are archived. Why that bound: retention deletes the oldest
// archived segment while the partition keeps at least local.retention.bytes
// without it (Kafka's rule), so what stays is below local.retention.bytes
// plus the oldest segment kept, and a sealed segment is at most
// segment.bytes (the producers' batches, at most 32 KiB, are far smaller).
// Retention runs after uploads, so the check polls for up to 30 s. It is
// made only once the upload lag is 0: while MinIO is down or uploads are
// behind, unarchived segments rightly stay, so no bound holds during the
// rounds.
func (s *suite) checkLocalBound() (string, error) {
	const bound = localRetentionBytes + segmentBytes
	var worst []string
	err := poll(30*time.Second, 250*time.Millisecond, func() error {
		worst = worst[:0]
		var errs []error
		for _, n := range s.nodes {
			most := int64(0)
			for p := range int32(partitions) {
				c, b, err := localSegments(s.partDir(n, p))
				if err != nil {
					return err
				}
				most = max(most, b)
				if b > bound {
					errs = append(errs, fmt.Errorf("broker %d partition %d: %d sealed segments of %d B on disk", n.id, p, c, b))
				}
			}
			worst = append(worst, fmt.Sprintf("broker %d at most %d B", n.id, most))
		}
		return errors.Join(errs...)
	})
	return strings.Join(worst, ", "), err
}

// dropLocalCopies sets local.retention.* to 0 and makes the brokers apply
// it. Local retention runs after an upload (or every 5 minutes), so one
// more record is produced to each partition: once those are sealed and
// archived, nothing of the topic stays on any broker's disk except what
// is not sealed, and nothing is left unsealed (segment.ms). It returns
// the new high watermarks.
func (s *suite) dropLocalCopies(hws map[int32]int64) (map[int32]int64, string, error) {
	start := time.Now()
	if err := s.alterTopic("local.retention.bytes", "0", "local.retention.ms", "0"); err != nil {
		return hws, "", fmt.Errorf("alter local.retention.*: %w", err)
	}
	if err := s.produceMarkers(); err != nil {
		return hws, "", err
	}
	want := map[int32]int64{}
	for p, hw := range hws {
		want[p] = hw + 1
	}
	now, err := s.agreedHighWatermarks(want, 60*time.Second)
	if err != nil {
		return hws, "", err
	}
	detail, err := s.waitArchived(now, start, 90*time.Second, true)
	return now, detail, err
}

// restartAll stops every broker (SIGTERM), checks that no sealed segment of
// the topic is left on disk, and starts them again: every cache is cold
// (the memory caches die with the process, the on-disk tier3-cache is
// emptied at startup). The write-ahead log may still hold bytes of batches
// sealed since its last trim; recovery knows them as sealed and never
// serves them, so the reads after this go to the archive.
func (s *suite) restartAll(wait time.Duration) (string, error) {
	var errs []error
	for _, n := range s.nodes {
		if err := n.b.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("broker %d exited with %v on SIGTERM", n.id, err))
		}
	}
	for _, n := range s.nodes {
		for p := range int32(partitions) {
			if c, b, err := localSegments(s.partDir(n, p)); err != nil || c > 0 {
				errs = append(errs, fmt.Errorf("broker %d partition %d: %d local segments (%d B) while stopped %v", n.id, p, c, b, err))
			}
		}
	}
	for _, n := range s.nodes {
		n.b.Restart()
	}
	s.coldRead = len(errs) == 0
	d, err := s.waitFullISR(wait)
	if err != nil {
		errs = append(errs, fmt.Errorf("after the restart: %w", err))
	}
	return fmt.Sprintf("full ISR %v after the restart", d.Round(time.Millisecond)), errors.Join(errs...)
}

// stopAll stops every running broker.
func (s *suite) stopAll() {
	for _, n := range s.nodes {
		if n.b.Running() {
			if err := n.b.Stop(); err != nil {
				s.t.Logf("broker %d exited with %v on SIGTERM", n.id, err)
			}
		}
	}
}

// checkArchiveReads checks that every broker read archived data: after
// the restart no local segment exists, so serving offset 0 takes GETs.
func (s *suite) checkArchiveReads() (string, error) {
	var parts []string
	var errs []error
	for _, n := range s.nodes {
		m, err := n.b.TryScrape(10 * time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("broker %d: %w", n.id, err))
			continue
		}
		gets, bytes := m["chronik_tier3_read_gets_total"], m["chronik_tier3_read_bytes_total"]
		parts = append(parts, fmt.Sprintf("broker %d: %v GETs, %.1f MB", n.id, gets, bytes/(1<<20)))
		if gets == 0 {
			errs = append(errs, fmt.Errorf("broker %d served the partitions from offset 0 without a GET", n.id))
		}
	}
	return strings.Join(parts, ", "), errors.Join(errs...)
}
