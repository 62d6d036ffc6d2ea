package indexer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Building a segment's index takes a few hundred times the CPU that
// producing its records did, and allocates heavily. A broker runs the
// build in a child process (Config.BuildCommand) at the lowest CPU
// priority, so the kernel gives the produce and fetch paths the cores
// first and the broker's heap and garbage collector never carry Bleve's
// garbage. The broker still reads the segment, packs and uploads the
// index and writes the manifest: only the build moves.
//
// The child reads frames from stdin, each a 4-byte big-endian length and
// that many bytes:
//
//	frame 1      JSON buildRequest: topic, partition, offsets [from, to)
//	frames 2..n  whole stored record batches, as Log.Read returns them
//	last frame   empty: the input is complete
//
// It builds the index directory named by its argument and, on success,
// writes one JSON buildResult line to stdout and exits 0. On failure it
// exits non-zero with the reason on stderr; input that ends before the
// empty frame (the broker died or gave up) is a failure, so a half-fed
// child never passes for a finished build.

// maxFrame bounds one frame: a stored batch is at most the broker's
// largest request (CHRONIK_MAX_REQUEST_BYTES, 100 MiB by default).
const maxFrame = 1 << 30

// buildRequest is the first frame of a build child's input.
type buildRequest struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	// InflateLimit bounds the topic's batches' records once inflated.
	InflateLimit int `json:"inflate_limit"`
}

// buildResult is what a build child writes to stdout when it succeeds.
type buildResult struct {
	Records int64 `json:"records"`
}

// childWait bounds how long a cancelled child's pipes are waited for
// after it is killed.
const childWait = 5 * time.Second

// stderrTail bounds the child's stderr kept for the error message.
const stderrTail = 4 << 10

// buildLocal builds the index of t's partition's offsets [from, to) into
// dir in this process and returns the records it holds.
func buildLocal(ctx context.Context, l Log, t Topic, p int32, from, to int64, dir string) (int64, error) {
	b, err := newDiskBuilder(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := scan(ctx, l, t, p, from, to, func(r *Record) error { n++; return b.add(r) }); err != nil {
		b.abort()
		return 0, err
	}
	if err := b.close(); err != nil {
		return 0, err
	}
	return n, nil
}

// childConfig says how build children run.
type childConfig struct {
	command []string // the program and its arguments; the index directory is appended
	// yieldCPU pauses the child while this process uses more than that
	// many cores (see throttle); 0 never pauses.
	yieldCPU float64
	paused   func(bool) // told when the child is paused and resumed; may be nil
	// done, if set, is given a successful child's exit state (its CPU
	// time and peak memory).
	done func(*os.ProcessState)
}

// buildInChild builds the same index as buildLocal in a child process
// run from c.command (dir appended to its arguments): this process reads
// the batches and feeds them to the child. Cancelling ctx kills the
// child; a child that fails or is killed leaves dir half built, for the
// caller to remove.
func buildInChild(ctx context.Context, c childConfig, l Log, t Topic, p int32, from, to int64, dir string) (int64, error) {
	command := c.command
	cmd := exec.CommandContext(ctx, command[0], append(command[1:len(command):len(command)], dir)...)
	cmd.WaitDelay = childWait
	killWithParent(cmd)
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout = &limitedBuffer{b: &stdout, max: 4 << 10}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start index build child %s: %w", command[0], err)
	}
	done := make(chan struct{})
	throttled := make(chan struct{})
	go func() {
		defer close(throttled)
		if c.yieldCPU > 0 {
			throttle(cmd.Process, c.yieldCPU, done, c.paused)
		}
	}()
	w := bufio.NewWriterSize(in, 64<<10)
	feedErr := feedChild(ctx, w, l, t, p, from, to)
	if feedErr == nil {
		if err := w.Flush(); err != nil {
			feedErr = &childInputError{err}
		}
	}
	in.Close()
	var pipeErr *childInputError
	if feedErr != nil && !errors.As(feedErr, &pipeErr) {
		// Reading the log failed: the build is lost, and a child the
		// throttle has stopped would not see its input end until the
		// broker is quiet.
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	close(done)
	<-throttled
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if feedErr != nil && !errors.As(feedErr, &pipeErr) {
		return 0, feedErr // reading the log failed; the child only saw its input end
	}
	if waitErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return 0, fmt.Errorf("index build child (%w): %s", waitErr, msg)
	}
	if feedErr != nil {
		return 0, feedErr
	}
	var res buildResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return 0, fmt.Errorf("index build child: result %q: %w", stdout.String(), err)
	}
	if c.done != nil {
		c.done(cmd.ProcessState)
	}
	return res.Records, nil
}

// Pausing. Even at the lowest priority a build is not free for the produce
// path: on a 2-core machine, any process that fills the gaps the broker
// leaves (a build child at nice 19, or even in the SCHED_IDLE class) costs a
// producer running flat out 15 to 30 % of its throughput (docs/benchmarks.md),
// through wake-up latency and the caches the two share. So while the broker
// itself is busy, its build children are stopped (SIGSTOP) outright, and
// continued once it has been quiet for a while: the indexer falls behind
// under load and catches up when the broker idles. Searches stay complete
// meanwhile (segments without an index are indexed on the fly).
const (
	yieldTick  = 100 * time.Millisecond // how often this process's CPU use is looked at
	yieldQuiet = 10                     // quiet ticks in a row before a paused child continues
)

// throttle stops child while this process used more than limit cores in
// the last tick, and continues it after yieldQuiet quiet ticks, until done
// is closed (the child was waited for).
func throttle(child *os.Process, limit float64, done <-chan struct{}, paused func(bool)) {
	tick := time.NewTicker(yieldTick)
	defer tick.Stop()
	last, lastAt := processCPU(), time.Now()
	stopped, quiet := false, 0
	set := func(stop bool) {
		if pauseProcess(child, stop) == nil {
			stopped = stop
			if paused != nil {
				paused(stop)
			}
		}
	}
	for {
		select {
		case <-done:
			if stopped && paused != nil {
				paused(false)
			}
			return
		case now := <-tick.C:
			cpu := processCPU()
			busy := float64(cpu-last) > limit*float64(now.Sub(lastAt))
			last, lastAt = cpu, now
			switch {
			case busy:
				quiet = 0
				if !stopped {
					set(true)
				}
			case stopped:
				if quiet++; quiet >= yieldQuiet {
					quiet = 0
					set(false)
				}
			}
		}
	}
}

// childInputError is a failed write to a build child's stdin: the child
// exited, and its own error says why.
type childInputError struct{ err error }

func (e *childInputError) Error() string { return "write to the index build child: " + e.err.Error() }
func (e *childInputError) Unwrap() error { return e.err }

// feedChild writes a build child's whole input to w.
func feedChild(ctx context.Context, w io.Writer, l Log, t Topic, p int32, from, to int64) error {
	req, err := json.Marshal(buildRequest{Topic: t.Name, Partition: p, From: from, To: to, InflateLimit: t.inflateLimit()})
	if err != nil {
		return err
	}
	if err := writeFrame(w, req); err != nil {
		return err
	}
	err = readBatches(ctx, l, t, p, from, to, func(b []byte) error {
		if len(b) > maxFrame {
			return fmt.Errorf("read %s/%d: %d bytes of batches in one read, more than the %d a build child takes", t.Name, p, len(b), maxFrame)
		}
		return writeFrame(w, b)
	})
	if err != nil {
		return err
	}
	return writeFrame(w, nil)
}

func writeFrame(w io.Writer, b []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(b)))
	if _, err := w.Write(h[:]); err != nil {
		return &childInputError{err}
	}
	if _, err := w.Write(b); err != nil {
		return &childInputError{err}
	}
	return nil
}

// readFrame reads one frame; an empty one is the end of the input.
func readFrame(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("input ended before its last frame (the broker stopped feeding this build)")
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > maxFrame {
		return nil, fmt.Errorf("a frame of %d bytes, more than the %d allowed", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("a frame of %d bytes cut short: %w", n, err)
	}
	return b, nil
}

// serveBuild is the child's side: it reads a build child's input from
// in, builds the index into dir and writes the result to out.
func serveBuild(ctx context.Context, dir string, in io.Reader, out io.Writer) error {
	in = bufio.NewReaderSize(in, 64<<10)
	first, err := readFrame(in)
	if err != nil {
		return err
	}
	var req buildRequest
	if err := json.Unmarshal(first, &req); err != nil || req.Topic == "" || req.From > req.To {
		return fmt.Errorf("the first frame is not a build request: %q", first)
	}
	b, err := newDiskBuilder(dir)
	if err != nil {
		return err
	}
	rs := recordStream{topic: req.Topic, partition: req.Partition, next: req.From, to: req.To, limit: req.InflateLimit}
	var n int64
	add := func(r *Record) error { n++; return b.add(r) }
	for {
		if err := ctx.Err(); err != nil {
			b.abort()
			return err
		}
		f, err := readFrame(in)
		if err == nil && len(f) > 0 {
			err = rs.feed(f, add)
		}
		if err != nil {
			b.abort()
			return err
		}
		if len(f) == 0 {
			break
		}
	}
	if err := b.close(); err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(buildResult{Records: n})
}

// BuildChild is a build child process's whole work (the command that
// Config.BuildCommand names runs it): it lowers the CPU priority of every
// thread of the process to nice (0 leaves it as inherited), then reads
// the build from in, builds the index directory dir and writes the
// result to out.
func BuildChild(ctx context.Context, nice int, dir string, in io.Reader, out io.Writer) error {
	if nice < 0 || nice > 19 {
		return fmt.Errorf("nice %d is not from 0 to 19", nice)
	}
	if err := lowerPriority(nice); err != nil {
		return fmt.Errorf("lower the priority to nice %d: %w", nice, err)
	}
	return serveBuild(ctx, dir, in, out)
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// tailBuffer keeps the last max bytes written (an error is at the end).
type tailBuffer struct {
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
