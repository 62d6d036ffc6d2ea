package hostile_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

// traffic is the well-behaved load every attack runs beside: one acks=all
// idempotent producer at a steady rate and one consumer, each record's ack
// latency kept so any window can be measured against the baseline.
type traffic struct {
	topic string
	rate  int // records/s

	mu sync.Mutex // guards the following
	// sched[i] is when record i was due (latency counts from then, so a
	// stalled producer loop cannot hide a stall); acked[i] when its
	// acks=all answer came, zero until then or when it failed.
	sched, acked []time.Time
	failed       int
	lastErr      error
	consumed     []time.Time // arrival of each consumed record

	prod *kgo.Client
	stop context.CancelFunc
	done sync.WaitGroup
}

// trafficValue is record i of the traffic topic.
func trafficValue(i int) string { return fmt.Sprintf("traffic-%09d-%s", i, strings.Repeat("v", 64)) }

func startTraffic(t *testing.T, seeds []string, topic string, rate int) *traffic {
	tr := &traffic{topic: topic, rate: rate}
	prod := newClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(60*time.Second), kgo.MaxBufferedRecords(1<<20))
	cons := newClient(t, seeds, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	tr.prod = prod
	ctx, cancel := context.WithCancel(context.Background())
	tr.stop = cancel
	tr.done.Add(2)
	go func() {
		defer tr.done.Done()
		const tick = 10 * time.Millisecond
		perTick := max(rate/int(time.Second/tick), 1)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case due := <-tk.C:
				for range perTick {
					tr.mu.Lock()
					i := len(tr.sched)
					tr.sched = append(tr.sched, due)
					tr.acked = append(tr.acked, time.Time{})
					tr.mu.Unlock()
					// Not ctx: a record in flight when traffic stops still
					// gets its answer.
					prod.Produce(context.Background(), &kgo.Record{Value: []byte(trafficValue(i))}, func(_ *kgo.Record, err error) {
						now := time.Now()
						tr.mu.Lock()
						defer tr.mu.Unlock()
						if err != nil {
							tr.failed++
							tr.lastErr = err
							return
						}
						tr.acked[i] = now
					})
				}
			}
		}
	}()
	go func() {
		defer tr.done.Done()
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			now := time.Now()
			n := fs.NumRecords()
			tr.mu.Lock()
			for range n {
				tr.consumed = append(tr.consumed, now)
			}
			tr.mu.Unlock()
		}
	}()
	t.Cleanup(tr.halt)
	return tr
}

// halt stops producing and consuming and waits (a minute at most) for the
// answers of what was sent.
func (tr *traffic) halt() {
	tr.stop()
	tr.done.Wait()
	ctx, cancel := withTimeout(time.Minute)
	defer cancel()
	tr.prod.Flush(ctx)
}

// failures is how many records failed, and the last error.
func (tr *traffic) failures() (int, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.failed, tr.lastErr
}

// windowStats is the traffic seen in one window.
type windowStats struct {
	dur          time.Duration
	ackRate      float64       // acks/s answered in the window
	consumeRate  float64       // records/s consumed in the window
	p99          time.Duration // of records due in the window; unanswered ones count as waiting until now
	due, failed  int
	failedBefore int // failures counted before the window (for deltas)
}

// window measures [from, to). Call it a little after to, so records due
// near the end had their chance to be answered.
func (tr *traffic) window(from, to time.Time) windowStats {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	w := windowStats{dur: to.Sub(from), failed: tr.failed}
	var lats []time.Duration
	acks := 0
	for i, due := range tr.sched {
		at := tr.acked[i]
		if !at.IsZero() && !at.Before(from) && at.Before(to) {
			acks++
		}
		if due.Before(from) || !due.Before(to) {
			continue
		}
		w.due++
		if at.IsZero() {
			at = now
		}
		lats = append(lats, at.Sub(due))
	}
	cons := 0
	for _, at := range tr.consumed {
		if !at.Before(from) && at.Before(to) {
			cons++
		}
	}
	w.ackRate = float64(acks) / w.dur.Seconds()
	w.consumeRate = float64(cons) / w.dur.Seconds()
	if len(lats) > 0 {
		slices.Sort(lats)
		w.p99 = lats[(len(lats)*99)/100]
	}
	return w
}

// ackedIDs returns the numbers of the records acknowledged so far.
func (tr *traffic) ackedIDs() []int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []int
	for i, at := range tr.acked {
		if !at.IsZero() {
			out = append(out, i)
		}
	}
	return out
}

// sampler reads every broker's RSS and WAL size a few times a second, so
// a window's maximum can be held to a bound.
type sampler struct {
	dataDirs []string

	mu      sync.Mutex // guards the following
	pids    []int      // 0 while a broker is down
	samples []sample

	stop context.CancelFunc
	done chan struct{}
}

type sample struct {
	at       time.Time
	rss, wal []int64 // per broker; -1 when unreadable
}

func startSampler(t *testing.T, bs []*testharness.Broker) *sampler {
	s := &sampler{done: make(chan struct{})}
	for _, b := range bs {
		s.dataDirs = append(s.dataDirs, b.DataDir())
		s.pids = append(s.pids, b.PID())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() {
		defer close(s.done)
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			s.take()
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(func() { s.stop(); <-s.done })
	return s
}

// setPID records broker i's process after a restart (0: down).
func (s *sampler) setPID(i, pid int) {
	s.mu.Lock()
	s.pids[i] = pid
	s.mu.Unlock()
}

func (s *sampler) take() {
	s.mu.Lock()
	pids := slices.Clone(s.pids)
	s.mu.Unlock()
	sm := sample{at: time.Now()}
	for i, pid := range pids {
		rss := int64(-1)
		if pid != 0 {
			if v, err := testharness.RSSOf(pid); err == nil {
				rss = v
			}
		}
		sm.rss = append(sm.rss, rss)
		sm.wal = append(sm.wal, walBytes(s.dataDirs[i]))
	}
	s.mu.Lock()
	s.samples = append(s.samples, sm)
	s.mu.Unlock()
}

// walBytes is the size of the files under a broker's WAL directory
// (<data-dir>/wal, tier1 segments NNNNNNNNNNNNNNNNNNNN.wal).
func walBytes(dataDir string) int64 {
	var n int64
	filepath.WalkDir(filepath.Join(dataDir, "wal"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// peaks are the largest values per broker in [from, to]; rssStart and
// walStart are each broker's at the first sample of the window.
func (s *sampler) peaks(from, to time.Time) (rss, wal, rssStart, walStart []int64) {
	s.take()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sm := range s.samples {
		if sm.at.Before(from) || sm.at.After(to) {
			continue
		}
		if rss == nil {
			rss, wal = make([]int64, len(sm.rss)), make([]int64, len(sm.wal))
			rssStart, walStart = slices.Clone(sm.rss), slices.Clone(sm.wal)
		}
		for i := range sm.rss {
			rss[i] = max(rss[i], sm.rss[i])
			wal[i] = max(wal[i], sm.wal[i])
		}
	}
	return rss, wal, rssStart, walStart
}

func mib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB" }
