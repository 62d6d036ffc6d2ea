package main

import (
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// histSubBits sets the histogram's precision: each power of two is split
// into 1<<histSubBits buckets, so a reported value is within 1/64 (1.6%) of
// the true one.
const histSubBits = 6

// histogram counts durations in fixed memory (about 30 KB) whatever the
// number of samples, HdrHistogram-style: exact below 64ns, log-linear above.
// Safe for concurrent use.
type histogram struct {
	counts [(64 - histSubBits + 1) << histSubBits]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func histBucket(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return (shift+1)<<histSubBits + int(v>>shift) - 1<<histSubBits
}

// histUpper is the largest value that falls in bucket b.
func histUpper(b int) uint64 {
	if b < 1<<histSubBits {
		return uint64(b)
	}
	shift := b>>histSubBits - 1
	mant := uint64(b&(1<<histSubBits-1)) + 1<<histSubBits
	return (mant+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histBucket(uint64(v))].Add(1)
	h.n.Add(1)
	for m := h.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
}

// quantile returns the value at q (0 < q ≤ 1): the upper bound of the bucket
// holding the ceil(q·n)th smallest sample, capped at the maximum seen.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			return min(time.Duration(histUpper(b)), time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// counters are what the progress line and the summary read while the
// benchmark runs.
type counters struct {
	records atomic.Int64
	bytes   atomic.Int64
	errors  atomic.Int64
}

// progress prints a status line to w every second until stop is called.
// On a terminal the line rewrites itself; elsewhere each is its own line.
type progress struct {
	stop func()
}

func startProgress(w io.Writer, label string, c *counters, enabled bool) *progress {
	if !enabled {
		return &progress{stop: func() {}}
	}
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		began, last := time.Now(), time.Now()
		var lastRecs, lastBytes int64
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case now := <-t.C:
				recs, b := c.records.Load(), c.bytes.Load()
				secs := now.Sub(last).Seconds()
				line := fmt.Sprintf("%s: %d records  %.0f msg/s  %.1f MB/s  errors %d  %s",
					label, recs, float64(recs-lastRecs)/secs, float64(b-lastBytes)/secs/1e6,
					c.errors.Load(), now.Sub(began).Round(time.Second))
				if tty {
					fmt.Fprint(w, "\r\x1b[K"+line)
				} else {
					fmt.Fprintln(w, line)
				}
				last, lastRecs, lastBytes = now, recs, b
			}
		}
	}()
	return &progress{stop: func() { close(done); <-finished }}
}

// benchResult is the summary; --json prints it as one object.
type benchResult struct {
	Mode       string          `json:"mode"` // produce or consume
	Topic      string          `json:"topic"`
	Records    int64           `json:"records"` // acknowledged (produce) or read (consume)
	Bytes      int64           `json:"bytes"`   // key and value bytes of those records
	Errors     int64           `json:"errors"`
	FirstError string          `json:"first_error,omitempty"`
	ElapsedSec float64         `json:"elapsed_sec"`
	MsgsPerSec float64         `json:"msgs_per_sec"`
	MBPerSec   float64         `json:"mb_per_sec"` // 10^6 bytes
	LatencyMs  *latencySummary `json:"latency_ms,omitempty"`
	Settings   map[string]any  `json:"settings"`
}

type latencySummary struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func newResult(mode, topic string, c *counters, elapsed time.Duration) benchResult {
	r := benchResult{
		Mode:       mode,
		Topic:      topic,
		Records:    c.records.Load(),
		Bytes:      c.bytes.Load(),
		Errors:     c.errors.Load(),
		ElapsedSec: elapsed.Seconds(),
	}
	if secs := elapsed.Seconds(); secs > 0 {
		r.MsgsPerSec = float64(r.Records) / secs
		r.MBPerSec = float64(r.Bytes) / secs / 1e6
	}
	return r
}

func (h *histogram) summary() *latencySummary {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return &latencySummary{
		P50:  ms(h.quantile(0.50)),
		P99:  ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)),
		Max:  ms(time.Duration(h.max.Load())),
	}
}

func (r *benchResult) writeText(w io.Writer) {
	fmt.Fprintf(w, "%s %q: %d records, %.1f MB in %.2fs\n", r.Mode, r.Topic, r.Records, float64(r.Bytes)/1e6, r.ElapsedSec)
	fmt.Fprintf(w, "  throughput  %.0f msg/s  %.1f MB/s\n", r.MsgsPerSec, r.MBPerSec)
	if l := r.LatencyMs; l != nil {
		fmt.Fprintf(w, "  latency     p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n", l.P50, l.P99, l.P999, l.Max)
	}
	fmt.Fprintf(w, "  errors      %d\n", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error %s\n", r.FirstError)
	}
}
