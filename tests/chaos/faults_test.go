package chaos_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
)

type faultKind string

const (
	leaderKill     faultKind = "leader-kill"
	followerKill   faultKind = "follower-kill"
	leaderStop     faultKind = "leader-stop"
	leaderCut      faultKind = "leader-cut"
	wipe           faultKind = "wipe"
	controllerKill faultKind = "controller-kill"
	minioDown      faultKind = "minio-down"
)

var allFaults = []faultKind{leaderKill, followerKill, leaderStop, leaderCut, wipe, controllerKill, minioDown}

func (k faultKind) valid() bool { return slices.Contains(allFaults, k) }

const (
	// A failover on this machine takes 2-8 s (a session of 1.5 s, an
	// election, the client's request timeout of 3 + 2 s for a silent
	// broker); the deadlines leave room for a loaded 2-core machine.
	ackTimeout     = 60 * time.Second
	recoverTimeout = 120 * time.Second
	// dwell is a deliberate pause inside a fault: the cluster runs without
	// the failed broker for a moment before it returns.
	dwell = time.Second
)

// roundLog is what one round did and measured.
type roundLog struct {
	n       int
	kind    faultKind
	target  string
	nextAck time.Duration // fault → next acknowledged produce on the affected partition; -1 where it does not apply
	fullISR time.Duration // recovery (restart, resume, heal, MinIO back) → full ISR everywhere; -1 if never
	note    string
	err     error
	blocked string // goroutines blocked for minutes, when the cluster did not recover
}

func (r roundLog) String() string {
	ack, isr := "-", "-"
	if r.nextAck >= 0 {
		ack = r.nextAck.Round(time.Millisecond).String()
	}
	if r.fullISR >= 0 {
		isr = r.fullISR.Round(time.Millisecond).String()
	}
	s := fmt.Sprintf("round %2d %-15s next ack %-8s full ISR %-8s %s", r.n, r.kind, ack, isr, r.target)
	if r.note != "" {
		s += "; " + r.note
	}
	if r.err != nil {
		s += "; FAILED: " + r.err.Error()
	}
	return s
}

// runRound injects one fault, recovers from it and waits until the
// cluster is whole again. It returns false when the cluster did not
// recover, so later rounds would prove nothing.
func (s *suite) runRound(round int) bool {
	t := s.t
	kind := s.set.faults[round%len(s.set.faults)]
	p := int32(round % partitions)
	r := roundLog{n: round + 1, kind: kind, nextAck: -1, fullISR: -1}
	giveUps := s.acks.giveUpsByKey()
	v, err := s.agreedView(30 * time.Second)
	var recovered time.Time
	if err == nil {
		recovered, r.err = s.inject(kind, p, v, &r)
	} else {
		r.err = fmt.Errorf("no metadata before the fault: %w", err)
		recovered = time.Now()
	}
	ok := true
	if _, err := s.waitFullISR(recoverTimeout); err != nil {
		r.err = joinErr(r.err, fmt.Errorf("no full ISR %v after recovery: %w", recoverTimeout, err))
		r.blocked = s.blockedGoroutines()
		ok = false
	} else {
		r.fullISR = time.Since(recovered)
		if stuck, err := s.acks.waitAcksEverywhere(recovered, ackTimeout); err != nil {
			r.err = joinErr(r.err, fmt.Errorf("after recovery: %w", err))
			if stuck[0] >= 0 {
				lines := s.prod.logs[stuck[0]].tail(int32(stuck[1]), 40)
				r.blocked = fmt.Sprintf("  the last lines producer %d's client logged about partition %d or errors:\n    %s\n",
					stuck[0], stuck[1], strings.Join(lines, "\n    "))
			}
			r.blocked += s.blockedGoroutines()
			ok = false
		}
	}
	if g := s.acks.giveUpsSince(giveUps); g != "" {
		r.note = strings.TrimPrefix(r.note+"; "+g, "; ")
	}
	// Which round broke the archive, if one did (the final checks say
	// how; this says when).
	for p := range int32(partitions) {
		if m, err := s.manifest(p); err == nil && s.archiveBroken[p] == "" {
			if o := overlaps(m); o != "" {
				s.archiveBroken[p] = fmt.Sprintf("round %d", r.n)
				r.note = strings.TrimPrefix(r.note+fmt.Sprintf("; ARCHIVE BROKEN: partition %d: %s", p, o), "; ")
			}
		}
	}
	if n, first := s.acks.conflictCount(); n > 0 {
		r.note = strings.TrimPrefix(r.note+fmt.Sprintf("; %d offsets acknowledged twice so far (first %s)", n, first), "; ")
	}
	s.occurred[kind]++
	s.rounds = append(s.rounds, r)
	t.Log(r.String())
	if r.err != nil {
		t.Errorf("round %d (%s): %v", r.n, kind, r.err)
	}
	return ok
}

func joinErr(a, b error) error {
	if a == nil {
		return b
	}
	return fmt.Errorf("%v; %w", a, b)
}

// inject runs one fault on partition p (its leader, a follower, ...) and
// undoes it (restart, resume, heal, MinIO back) whatever happened, returning
// when the undoing began. Each fault's time, t0, is taken once the fault is
// in place (Kill returns once the process is gone, Cut once every link is
// down), so a record produced after t0 can only be acknowledged by the
// brokers that are left.
func (s *suite) inject(kind faultKind, p int32, v view, r *roundLog) (recovered time.Time, err error) {
	leader := s.node(v.parts[p].leader)
	epoch := v.parts[p].epoch
	follower := s.follower(v.parts[p])
	switch kind {
	case leaderKill:
		r.target = fmt.Sprintf("broker %d, leader of partition %d at epoch %d", leader.id, p, epoch)
		leader.b.Kill()
		t0 := time.Now()
		defer func() { recovered = time.Now(); leader.b.Restart() }()
		return recovered, s.afterLeaderLoss(p, leader.id, epoch, leader.id, t0, r)

	case followerKill:
		r.target = fmt.Sprintf("broker %d, follower of partition %d (leader %d)", follower.id, p, leader.id)
		follower.b.Kill()
		t0 := time.Now()
		defer func() { recovered = time.Now(); follower.b.Restart() }()
		if r.nextAck, err = s.acks.waitAckAfter(p, t0, ackTimeout); err != nil {
			return recovered, err
		}
		// The kill took effect: the controller fenced the follower and the
		// ISR went on without it.
		err := testharness.Poll(30*time.Second, 50*time.Millisecond, func() error {
			v, err := s.metadata(follower.id)
			if err != nil {
				return err
			}
			if slices.Contains(v.parts[p].isr, follower.id) {
				return fmt.Errorf("partition %d ISR %v still holds the killed broker %d", p, v.parts[p].isr, follower.id)
			}
			return nil
		})
		if err == nil {
			r.note = fmt.Sprintf("left the ISR after %v", time.Since(t0).Round(time.Millisecond))
		}
		return recovered, err

	case leaderStop:
		r.target = fmt.Sprintf("broker %d (SIGSTOP), leader of partition %d at epoch %d", leader.id, p, epoch)
		leader.b.Pause()
		t0 := time.Now()
		defer func() { recovered = time.Now(); leader.b.Resume() }()
		return recovered, s.afterLeaderLoss(p, leader.id, epoch, leader.id, t0, r)

	case leaderCut:
		r.target = fmt.Sprintf("broker %d (network cut), leader of partition %d at epoch %d", leader.id, p, epoch)
		s.hosts.Cut(int(leader.id))
		t0 := time.Now()
		defer func() { recovered = time.Now(); s.hosts.Heal(int(leader.id)) }()
		return recovered, s.afterLeaderLoss(p, leader.id, epoch, leader.id, t0, r)

	case wipe:
		return s.wipe(p, v, r)

	case controllerKill:
		return s.controllerKill(v, r)

	case minioDown:
		return s.minioDown(r)
	}
	return time.Now(), fmt.Errorf("unknown fault %q", kind)
}

// follower returns an ISR member of the partition other than its leader.
func (s *suite) follower(m partitionMeta) *node {
	for _, id := range m.isr {
		if id != m.leader {
			return s.node(id)
		}
	}
	return s.node(m.leader%3 + 1)
}

// afterLeaderLoss waits, after the leader of p failed at t0, for the next
// acknowledgement on p and for metadata (from brokers other than skip)
// naming another leader at a higher epoch, then dwells.
func (s *suite) afterLeaderLoss(p, old, epoch, skip int32, t0 time.Time, r *roundLog) error {
	// The controller moves a partition only a session (1.5 s) after its
	// leader fell silent: a higher epoch seen at once was there before
	// the fault, which then missed the leader.
	if v, err := s.metadata(skip); err == nil && time.Since(t0) < time.Second {
		if m := v.parts[p]; m.epoch > epoch {
			return fmt.Errorf("partition %d was at epoch %d (leader %d) as soon as broker %d failed: the fault missed the leader of epoch %d",
				p, m.epoch, m.leader, old, epoch)
		}
	}
	var err error
	if r.nextAck, err = s.acks.waitAckAfter(p, t0, ackTimeout); err != nil {
		return err
	}
	m, err := s.waitLeaderMoved(p, old, epoch, skip)
	if err != nil {
		return fmt.Errorf("the leader did not move: %w", err)
	}
	r.note = fmt.Sprintf("new leader %d at epoch %d", m.leader, m.epoch)
	time.Sleep(dwell)
	return nil
}

// wipe kills a follower of p (every other occurrence: its leader), deletes
// its whole data directory and restarts it at once with the same node ID
// and addresses, as a broker whose disk was replaced.
func (s *suite) wipe(p int32, v view, r *roundLog) (time.Time, error) {
	m := v.parts[p]
	victim, role := s.follower(m), "follower"
	if s.occurred[wipe]%2 == 1 {
		victim, role = s.node(m.leader), "leader"
	}
	r.target = fmt.Sprintf("broker %d, %s of partition %d at epoch %d, data dir wiped", victim.id, role, p, m.epoch)
	victim.b.Kill()
	t0 := time.Now()
	files, bytes := victim.b.WipeDataDir()
	ents, err := os.ReadDir(victim.b.DataDir())
	if err != nil || len(ents) != 0 {
		victim.b.Restart()
		return time.Now(), fmt.Errorf("the data directory is not empty after the wipe: %d entries, %v", len(ents), err)
	}
	r.note = fmt.Sprintf("wiped %d files, %.1f MB; restarted %v after the kill", files, float64(bytes)/(1<<20), time.Since(t0).Round(time.Millisecond))
	recovered := time.Now()
	victim.b.Restart()
	watch := make(chan string, 1)
	go func() { watch <- s.watchEmptyLeader(victim.id, v, time.Now()) }()
	defer func() {
		if hint := <-watch; hint != "" {
			r.note += "; " + hint
		}
	}()
	if role == "leader" {
		if err := s.afterLeaderLoss(p, victim.id, m.epoch, 0, t0, r); err != nil {
			return recovered, err
		}
		r.note = fmt.Sprintf("wiped %d files, %.1f MB; %s", files, float64(bytes)/(1<<20), r.note)
		return recovered, nil
	}
	var err2 error
	r.nextAck, err2 = s.acks.waitAckAfter(p, t0, ackTimeout)
	return recovered, err2
}

// watchEmptyLeader watches the metadata from a wiped broker's restart
// until every ISR is full again (at most two minutes) and says whether
// the wiped broker was elected leader of a partition meanwhile (at an
// epoch above the one before the wipe). That is a hint for reading a
// failure, not a failure: it may lead a partition it has caught up on.
// The acknowledgements show the harm if it led one while empty (an offset
// acknowledged twice, records lost).
func (s *suite) watchEmptyLeader(id int32, before view, since time.Time) string {
	led := map[int32]bool{}
	var hints []string
	for time.Since(since) < 2*time.Minute {
		full := true
		for _, n := range s.nodes {
			v, err := s.ask(n)
			if err != nil {
				full = false
				continue
			}
			for p, m := range v.parts {
				if len(m.isr) != 3 {
					full = false
				}
				if m.leader == id && m.epoch > before.parts[p].epoch && !led[p] {
					led[p] = true
					hints = append(hints, fmt.Sprintf("the wiped broker led partition %d at epoch %d %v after its restart, ISR %v",
						p, m.epoch, time.Since(since).Round(time.Millisecond), m.isr))
				}
			}
			break
		}
		if full {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(hints) == 0 {
		return ""
	}
	return "before every ISR was full again, " + strings.Join(hints, ", ")
}

// controllerKill kills the controller (Raft) leader and waits for another
// to be elected; the partitions it led fail over too.
func (s *suite) controllerKill(v view, r *roundLog) (recovered time.Time, err error) {
	id, err := s.controller(0)
	if err != nil {
		return time.Now(), err
	}
	c := s.node(id)
	var led []int32
	for p, m := range v.parts {
		if m.leader == id {
			led = append(led, p)
		}
	}
	slices.Sort(led)
	r.target = fmt.Sprintf("broker %d, controller leader, leading partitions %v", id, led)
	c.b.Kill()
	t0 := time.Now()
	defer func() { recovered = time.Now(); c.b.Restart() }()
	var next int32
	err = testharness.Poll(60*time.Second, 50*time.Millisecond, func() error {
		var err error
		next, err = s.controller(id)
		return err
	})
	if err != nil {
		return recovered, fmt.Errorf("no new controller: %w", err)
	}
	r.note = fmt.Sprintf("new controller %d after %v", next, time.Since(t0).Round(time.Millisecond))
	if len(led) > 0 {
		if r.nextAck, err = s.acks.waitAckAfter(led[0], t0, ackTimeout); err != nil {
			return recovered, err
		}
	}
	time.Sleep(dwell)
	return recovered, nil
}

// minioDown stops MinIO for the configured time. Producing must go on:
// each producer has records produced in the second half of the outage
// acknowledged on every partition before MinIO returns. The brokers must have noticed: their upload
// error counters grow.
func (s *suite) minioDown(r *roundLog) (recovered time.Time, err error) {
	errsBefore := s.sumMetric("chronik_tier3_upload_errors_total")
	acked := s.acks.total()
	s.srv.Stop()
	t0 := time.Now()
	defer func() {
		recovered = time.Now()
		s.srv.Restart()
		if e := s.srv.Ready(5 * time.Second); e != nil {
			err = joinErr(err, fmt.Errorf("MinIO not ready after its restart: %w", e))
		}
	}()
	r.target = fmt.Sprintf("MinIO stopped for %v", s.set.minioDown)
	if err := s.srv.Ready(2 * time.Second); err == nil {
		return recovered, fmt.Errorf("MinIO still answers after Stop")
	}
	// The outage itself is the deliberate wait.
	time.Sleep(time.Until(t0.Add(s.set.minioDown - 500*time.Millisecond)))
	half := t0.Add(s.set.minioDown / 2)
	var stalled []string
	for pi := range steadyProducers {
		for p := range int32(partitions) {
			if n := s.acks.newestProducedBy(pi, p); !n.After(half) {
				stalled = append(stalled, fmt.Sprintf("producer %d on partition %d (newest acknowledged produced at %+.1fs)",
					pi, p, n.Sub(t0).Seconds()))
			}
		}
	}
	during := s.acks.total() - acked
	errsAfter := s.sumMetric("chronik_tier3_upload_errors_total")
	r.note = fmt.Sprintf("%d records acknowledged during the outage; upload errors %v → %v", during, errsBefore, errsAfter)
	if len(stalled) > 0 {
		return recovered, fmt.Errorf("producing stalled while MinIO was down: %s", strings.Join(stalled, ", "))
	}
	if errsAfter <= errsBefore {
		return recovered, fmt.Errorf("no broker counted a failed upload while MinIO was down (chronik_tier3_upload_errors_total %v → %v)", errsBefore, errsAfter)
	}
	return recovered, nil
}

// sumMetric adds up an unlabelled series over the brokers that answer.
func (s *suite) sumMetric(name string) float64 {
	sum := 0.0
	for _, n := range s.nodes {
		if m, err := n.b.TryScrape(3 * time.Second); err == nil {
			sum += m[name]
		}
	}
	return sum
}
