package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

// Records are JSON objects with a unique id, (p, seq): producer p's seq-th
// record. Every field is derived from the id, so a value read back (from a
// fetch or a search hit) is checked byte for byte against value(p, seq).
type payload struct {
	P    int    `json:"p"`
	Seq  int64  `json:"seq"`
	City string `json:"city"`
	Note string `json:"note"`
}

type recID struct {
	producer int
	seq      int64
}

var cities = []string{"paris", "lisbon", "osaka", "quito", "dakar", "oslo", "perth", "lima"}

func value(p int, seq int64) []byte {
	b, _ := json.Marshal(payload{P: p, Seq: seq, City: cities[seq%int64(len(cities))],
		Note: fmt.Sprintf("chaos record %d of producer %d, kept through every fault: %s", seq, p, filler)})
	return b
}

// filler makes a value about 270 bytes, so a burst of 1,300 records fills
// more than segment.bytes.
const filler = "leaders killed and paused, followers killed, brokers cut off the network or back with an empty disk, the controller killed, the object store gone for a while"

// parseID returns the id of a value written by value, or false.
func parseID(v []byte) (recID, bool) {
	var pl payload
	if err := json.Unmarshal(v, &pl); err != nil {
		return recID{}, false
	}
	id := recID{pl.P, pl.Seq}
	return id, string(value(id.producer, id.seq)) == string(v)
}

// The producers: the two that run throughout, and one that sends a record
// to each partition at the end (see verify).
const (
	steadyProducers = 2
	markerProducer  = 2
)

type ackPos struct {
	partition int32
	offset    int64
}

// ackLog records every acknowledgement. Safe for the producers' callbacks.
type ackLog struct {
	mu      sync.Mutex
	acked   map[recID]ackPos
	atOff   [partitions]map[int64]recID // each partition's acknowledged offsets
	newest  [partitions]time.Time       // the latest produce time of an acknowledged record
	ackedAt [partitions]time.Time       // when that acknowledgement came
	// Two records acknowledged at one offset of a partition: one of the
	// acknowledged records was lost as it happened (found at once, with
	// the time, rather than only by the final read).
	conflicts     int
	firstConflict string
	// Per producer and partition: the latest produce time of an
	// acknowledged record, and the records given up.
	newestBy   [markerProducer + 1][partitions]time.Time
	giveUpBy   map[[2]int]giveUp
	giveUps    int
	giveUpErrs map[string]int
}

// giveUp counts the records one producer gave up on one partition.
type giveUp struct {
	n       int
	lastErr string
	lastAt  time.Time
}

func newAckLog() *ackLog {
	a := &ackLog{acked: map[recID]ackPos{}, giveUpErrs: map[string]int{}, giveUpBy: map[[2]int]giveUp{}}
	for p := range a.atOff {
		a.atOff[p] = map[int64]recID{}
	}
	return a
}

func (a *ackLog) add(id recID) func(*kgo.Record, error) {
	return func(r *kgo.Record, err error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil {
			a.giveUps++
			a.giveUpErrs[err.Error()]++
			k := [2]int{id.producer, int(r.Partition)}
			g := a.giveUpBy[k]
			a.giveUpBy[k] = giveUp{g.n + 1, err.Error(), time.Now()}
			return
		}
		if r.Timestamp.After(a.newestBy[id.producer][r.Partition]) {
			a.newestBy[id.producer][r.Partition] = r.Timestamp
		}
		a.acked[id] = ackPos{r.Partition, r.Offset}
		if prev, ok := a.atOff[r.Partition][r.Offset]; ok && prev != id {
			a.conflicts++
			if a.firstConflict == "" {
				a.firstConflict = fmt.Sprintf("%s: partition %d offset %d acknowledged for record %v and again for %v",
					time.Now().Format("15:04:05.000"), r.Partition, r.Offset, prev, id)
			}
		}
		a.atOff[r.Partition][r.Offset] = id
		if r.Timestamp.After(a.newest[r.Partition]) {
			a.newest[r.Partition], a.ackedAt[r.Partition] = r.Timestamp, time.Now()
		}
	}
}

func (a *ackLog) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// giveUpsByKey copies the give-up counts per producer and partition.
func (a *ackLog) giveUpsByKey() map[[2]int]giveUp {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[[2]int]giveUp, len(a.giveUpBy))
	for k, g := range a.giveUpBy {
		out[k] = g
	}
	return out
}

// giveUpsSince describes the records given up since before was taken.
func (a *ackLog) giveUpsSince(before map[[2]int]giveUp) string {
	var parts []string
	for k, g := range a.giveUpsByKey() {
		if n := g.n - before[k].n; n > 0 {
			parts = append(parts, fmt.Sprintf("producer %d gave up %d records on partition %d (last at %s: %s)",
				k[0], n, k[1], g.lastAt.Format("15:04:05.000"), g.lastErr))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func (a *ackLog) conflictCount() (int, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conflicts, a.firstConflict
}

// end is one past partition p's highest acknowledged offset.
func (a *ackLog) end(p int32) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := int64(0)
	for off := range a.atOff[p] {
		e = max(e, off+1)
	}
	return e
}

// newestProducedBy is the produce time of producer pi's newest
// acknowledged record on partition p.
func (a *ackLog) newestProducedBy(pi int, p int32) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.newestBy[pi][p]
}

// waitAckAfter waits until partition p acknowledges a record produced
// after t (so no replica that failed at t could have acknowledged it) and
// returns how long after t the acknowledgement came.
func (a *ackLog) waitAckAfter(p int32, t time.Time, timeout time.Duration) (time.Duration, error) {
	var at time.Time
	err := testharness.Poll(timeout, 5*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.newest[p].After(t) {
			at = a.ackedAt[p]
			return nil
		}
		return fmt.Errorf("partition %d acknowledged no record produced after %s (newest produced %s)",
			p, t.Format("15:04:05.000"), a.newest[p].Format("15:04:05.000"))
	})
	if err != nil {
		return -1, err
	}
	return at.Sub(t), nil
}

// waitAcksEverywhere waits until every steady producer has a record
// produced after t acknowledged on every partition: every client
// recovered, not just one. On failure it names the producer and partition.
func (a *ackLog) waitAcksEverywhere(t time.Time, timeout time.Duration) (stuck [2]int, err error) {
	stuck = [2]int{-1, -1}
	err = testharness.Poll(timeout, 10*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		for pi := range steadyProducers {
			for p := range partitions {
				if n := a.newestBy[pi][p]; !n.After(t) {
					stuck = [2]int{pi, p}
					return fmt.Errorf("producer %d has no record produced after %s acknowledged on partition %d (its newest: produced %s)",
						pi, t.Format("15:04:05.000"), p, n.Format("15:04:05.000"))
				}
			}
		}
		return nil
	})
	return stuck, err
}

// giveUpSummaryLocked lists the errors records were given up with, most
// frequent first. a.mu must be held.
func (a *ackLog) giveUpSummaryLocked() string {
	type kv struct {
		err string
		n   int
	}
	var kvs []kv
	for e, n := range a.giveUpErrs {
		kvs = append(kvs, kv{e, n})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].n > kvs[j].n })
	var parts []string
	for i, e := range kvs {
		if i == 5 {
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", e.n, e.err))
	}
	return strings.Join(parts, "; ")
}

// clientLog keeps the last lines a franz-go client logged, to show what a
// producer that stopped getting acknowledgements was doing. Safe for
// concurrent use.
type clientLog struct {
	mu    sync.Mutex
	lines []string
}

const clientLogLines = 400

func (l *clientLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if len(l.lines) == clientLogLines {
			l.lines = append(l.lines[:0], l.lines[clientLogLines/2:]...)
		}
		l.lines = append(l.lines, line)
	}
	return len(b), nil
}

// tail returns the last n lines that mention partition p of the topic or
// an error, with the time each was logged.
func (l *clientLog) tail(p int32, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	part := fmt.Sprintf("partition: %d", p)
	for _, line := range l.lines {
		if strings.Contains(line, part) || strings.Contains(line, "err") || strings.Contains(line, "ERROR") || strings.Contains(line, "WARN") {
			out = append(out, line)
		}
	}
	return out[max(0, len(out)-n):]
}

// producers are the steady producers' goroutines.
type producers struct {
	logs     [steadyProducers]*clientLog
	stopCh   chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	produced [markerProducer + 1]int64 // records handed to each producer
	flushErr []error
}

func (s *suite) producerClient(extra ...kgo.Opt) *kgo.Client {
	var seeds []string
	for _, n := range s.nodes {
		seeds = append(seeds, n.b.Addr())
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic),
		// Idempotent (franz-go's default with acks=all), uncompressed (the
		// checks decode raw fetches), partitions chosen by the producer.
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(60 * time.Second),
		kgo.ProducerLinger(5 * time.Millisecond), kgo.ProducerBatchMaxBytes(maxBatchBytes), kgo.MaxBufferedRecords(5000),
		// Fast failover, as in tests/replication: refresh metadata soon
		// after a leader fails, and give up on a silent broker (cut off or
		// paused) after 5 s instead of 10 s + 10 s.
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.ProduceRequestTimeout(3 * time.Second), kgo.RequestTimeoutOverhead(2 * time.Second)}, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return cl
}

// startProducers starts the two steady producers: each sends rate
// records/s round-robin over the partitions (which segment.ms seals), and
// every burstEvery a burst of records to one partition, as fast as the
// cluster takes them (which segment.bytes seals).
func (s *suite) startProducers() *producers {
	pr := &producers{stopCh: make(chan struct{})}
	for pi := range steadyProducers {
		pr.logs[pi] = &clientLog{}
		cl := s.producerClient(kgo.WithLogger(kgo.BasicLogger(pr.logs[pi], kgo.LogLevelInfo, func() string {
			return time.Now().Format("15:04:05.000 ")
		})))
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			defer cl.Close()
			const tick = 20 * time.Millisecond
			perTick := max(1, s.set.rate*int(tick/time.Millisecond)/1000)
			tk := time.NewTicker(tick)
			defer tk.Stop()
			nextBurst := time.Now().Add(s.set.burstEvery / steadyProducers * time.Duration(pi+1))
			burstPart := int32(pi)
			var seq int64
			send := func(p int32) {
				id := recID{pi, seq}
				seq++
				cl.Produce(context.Background(), &kgo.Record{Partition: p, Value: value(pi, id.seq)}, s.acks.add(id))
			}
			for {
				select {
				case <-pr.stopCh:
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					err := cl.Flush(ctx)
					cancel()
					pr.mu.Lock()
					pr.produced[pi] = seq
					if err != nil {
						pr.flushErr = append(pr.flushErr, fmt.Errorf("producer %d: flush: %w", pi, err))
					}
					pr.mu.Unlock()
					return
				case <-tk.C:
				}
				if s.set.burst > 0 && time.Now().After(nextBurst) {
					for range s.set.burst {
						send(burstPart)
					}
					burstPart = (burstPart + 1) % partitions
					nextBurst = time.Now().Add(s.set.burstEvery)
				}
				for range perTick {
					send(int32(seq % partitions))
				}
			}
		}()
	}
	return pr
}

// stop stops the steady producers once every record they were handed is
// acknowledged or given up.
func (pr *producers) stop(t *testing.T) {
	close(pr.stopCh)
	pr.wg.Wait()
	for _, err := range pr.flushErr {
		t.Errorf("%v", err)
	}
}

// produceMarkers sends one record to each partition with a fresh
// idempotent producer and waits for the acknowledgements.
func (s *suite) produceMarkers() error {
	cl := s.producerClient()
	defer cl.Close()
	var wg sync.WaitGroup
	var errs []error
	var mu sync.Mutex
	for p := range int32(partitions) {
		id := recID{markerProducer, int64(p)}
		wg.Add(1)
		ack := s.acks.add(id)
		cl.Produce(context.Background(), &kgo.Record{Partition: p, Value: value(id.producer, id.seq)}, func(r *kgo.Record, err error) {
			defer wg.Done()
			ack(r, err)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.prod.mu.Lock()
	s.prod.produced[markerProducer] = partitions
	s.prod.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("marker records: %v", errs)
	}
	return nil
}
