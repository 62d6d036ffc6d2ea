// Package crash_test kills a real Chronik broker with SIGKILL while an
// idempotent producer writes at acks=all, restarts it on the same data
// directory, and proves afterwards that no acknowledged record was lost or
// moved, that the log is dense, and that nothing unwritten or corrupt is
// served.
//
//	go test ./tests/crash                                # 20 kills
//	CHRONIK_CRASH_KILLS=100 go test ./tests/crash -timeout 30m
//	CHRONIK_TEST_TARGET=kfake go test ./tests/crash      # harness check only:
//	                                                     # kfake's "kill" is a clean close
package crash_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const (
	topic      = "crash"
	partitions = 4
)

func TestKillDuringProduce(t *testing.T) {
	kills := 20
	if s := os.Getenv("CHRONIK_CRASH_KILLS"); s != "" {
		var err error
		if kills, err = strconv.Atoi(s); err != nil || kills < 1 {
			t.Fatalf("CHRONIK_CRASH_KILLS=%q: want a positive integer", s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(kills)*10*time.Second)
	defer cancel()

	b := testharness.Start(t, testharness.Options{})
	admCl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	// Small segments make the broker roll and seal segments between kills,
	// so recovery meets sealed segments as well as the WAL tail.
	segmentBytes := "1048576"
	configs := map[string]*string{"segment.bytes": &segmentBytes}
	if resp, err := adm.CreateTopic(ctx, partitions, 1, configs, topic); err != nil || resp.Err != nil {
		t.Fatalf("creating topic: %v %v %s", err, resp.Err, resp.ErrMessage)
	}

	p := startProducer(t, b.Addr())
	for k := 1; k <= kills; k++ {
		if d := p.waitProgress(t); d > 2*time.Second {
			t.Logf("production resumed only %v after restart %d", d.Round(time.Millisecond), k-1)
		}
		// The crash lands at a random point of steady production.
		time.Sleep(time.Duration(100+rand.IntN(301)) * time.Millisecond)
		b.Kill()
		acked := p.acks.count()
		start := time.Now()
		b.Restart()
		t.Logf("kill %d: %d records acknowledged so far; serving again after %v", k, acked, time.Since(start).Round(time.Millisecond))
	}
	p.waitProgress(t)
	produced := p.stop(ctx, t)

	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("ListEndOffsets: %v %v", err, ends.Error())
	}
	verifyStart := time.Now()
	v := verifyLog(ctx, t, b.Addr(), ends, p.acks, produced)
	t.Logf("read back and verified %d records in %v", v.read, time.Since(verifyStart).Round(time.Millisecond))

	t.Logf("kills %d, produced %d, acknowledged %d, failed %d, lost %d, wrong value at acked offset %d, duplicated %d, present but unacknowledged %d, log records %d",
		kills, produced, p.acks.count(), p.failed.Load(), v.lost, v.mismatched, v.duplicates, v.unacked, v.read)
	if v.lost != 0 || v.mismatched != 0 {
		t.Errorf("%d acknowledged records lost, %d replaced by another record", v.lost, v.mismatched)
	}
	if v.duplicates != 0 {
		t.Errorf("%d records stored more than once by an idempotent producer", v.duplicates)
	}
	if n := p.failed.Load(); n != 0 {
		t.Errorf("%d records failed to produce (a retrying idempotent producer should never see a final error); first: %v", n, p.firstErr())
	}
	if c := p.acks.conflicts(); len(c) != 0 {
		t.Errorf("two records acknowledged at the same offset (%d times), e.g. %s", len(c), c[0])
	}
}

// producer writes records with increasing sequence numbers from one
// goroutine until stopped, and logs where each was acknowledged.
type producer struct {
	cl       *kgo.Client
	acks     *ackLog
	failed   atomic.Int64
	errMu    sync.Mutex
	err      error // first produce error
	produced atomic.Int64
	quitOnce sync.Once
	quit     chan struct{} // closed to end production
	done     chan struct{} // closed when the production loop has returned
}

func startProducer(t *testing.T, addr string) *producer {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // and idempotent, kgo's default
		// Reconnect promptly after a restart: no backoff to 1s, and no 5s
		// wait for the metadata refresh a failed produce triggers.
		kgo.RetryBackoffFn(func(int) time.Duration { return 25 * time.Millisecond }),
		kgo.MetadataMinAge(50*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{cl: cl, acks: newAckLog(), quit: make(chan struct{}), done: make(chan struct{})}
	// On an early failure: end the loop, and close the client to unblock a
	// Produce waiting for buffer space.
	t.Cleanup(func() {
		p.quitOnce.Do(func() { close(p.quit) })
		cl.Close()
		<-p.done
	})
	go func() {
		defer close(p.done)
		for seq := int64(0); ; seq++ {
			select {
			case <-p.quit:
				return
			default:
			}
			p.produced.Store(seq + 1)
			// Produce blocks while kgo's buffer is full, as it is while the
			// broker is down; the background context keeps buffered records
			// retrying until the broker is back.
			cl.Produce(context.Background(), &kgo.Record{Value: value(seq)}, func(r *kgo.Record, err error) {
				if err != nil {
					p.failed.Add(1)
					p.errMu.Lock()
					if p.err == nil {
						p.err = fmt.Errorf("record %d: %w", seq, err)
					}
					p.errMu.Unlock()
					return
				}
				p.acks.add(r.Partition, r.Offset, seq)
			})
		}
	}()
	return p
}

// waitProgress waits until records are acknowledged again, so that the next
// kill lands during production rather than during recovery.
func (p *producer) waitProgress(t *testing.T) time.Duration {
	t.Helper()
	begin := time.Now()
	start := p.acks.count()
	testharness.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if p.acks.count() < start+100 {
			return fmt.Errorf("%d records acknowledged since the broker (re)started, want 100", p.acks.count()-start)
		}
		return nil
	})
	return time.Since(begin)
}

// stop ends production, waits for every buffered record to be acknowledged
// or failed, and returns how many records were produced.
func (p *producer) stop(ctx context.Context, t *testing.T) int64 {
	t.Helper()
	p.quitOnce.Do(func() { close(p.quit) })
	// The loop may be blocked in Produce on a full buffer until
	// acknowledgements make room.
	flushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	select {
	case <-p.done:
	case <-flushCtx.Done():
		t.Fatalf("producer loop did not stop: %v", flushCtx.Err())
	}
	if err := p.cl.Flush(flushCtx); err != nil {
		t.Fatalf("flushing producer: %v (%d records produced, %d acknowledged)", err, p.produced.Load(), p.acks.count())
	}
	return p.produced.Load()
}

func (p *producer) firstErr() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// ackLog records, for each partition and offset, the sequence number of the
// record acknowledged there.
type ackLog struct {
	mu       sync.Mutex
	slots    [partitions][]int64 // offset → seq+1; 0 means nothing acknowledged there
	n        int
	conflict []string
}

func newAckLog() *ackLog { return &ackLog{} }

func (a *ackLog) add(partition int32, offset, seq int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if partition < 0 || partition >= partitions || offset < 0 {
		a.conflict = append(a.conflict, fmt.Sprintf("record %d acknowledged at partition %d offset %d", seq, partition, offset))
		return
	}
	s := &a.slots[partition]
	for int64(len(*s)) <= offset {
		*s = append(*s, 0)
	}
	if prev := (*s)[offset]; prev != 0 {
		a.conflict = append(a.conflict, fmt.Sprintf("partition %d offset %d: records %d and %d", partition, offset, prev-1, seq))
		return
	}
	(*s)[offset] = seq + 1
	a.n++
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *ackLog) conflicts() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conflict
}

// acked returns the sequence number acknowledged at (partition, offset).
func (a *ackLog) acked(partition int32, offset int64) (seq int64, ok bool) {
	s := a.slots[partition]
	if offset >= int64(len(s)) || s[offset] == 0 {
		return 0, false
	}
	return s[offset] - 1, true
}

// value is record seq's value: its sequence number and a fixed filler, so a
// value read back names the record it belongs to.
func value(seq int64) []byte {
	return fmt.Appendf(nil, "%012d-chronik-crash-test-payload-0123456789abcdef", seq)
}

func parseValue(v []byte) (int64, error) {
	if len(v) < 13 || v[12] != '-' || string(v[12:]) != string(value(0)[12:]) {
		return 0, fmt.Errorf("value %q was never produced", v)
	}
	return strconv.ParseInt(string(v[:12]), 10, 64)
}

type verdict struct {
	read       int64 // records read from the log
	lost       int   // acknowledged records beyond the log end
	mismatched int   // acknowledged offsets holding another record
	duplicates int   // records stored twice
	unacked    int   // records in the log whose acknowledgement was lost in a crash
}

// verifyLog reads every partition from its start to its end offset and
// checks it against the acknowledgements: offsets dense from 0, every value
// one that was produced and stored once, every acknowledged record at its
// offset. Fetch errors, including kgo's CRC check, fail the test.
func verifyLog(ctx context.Context, t *testing.T, addr string, ends kadm.ListedOffsets, acks *ackLog, produced int64) verdict {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	for p := int32(0); p < partitions; p++ {
		e, ok := ends.Lookup(topic, p)
		if !ok {
			t.Fatalf("no end offset listed for partition %d", p)
		}
		want[p] = e.Offset
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var v verdict
	seen := make([]bool, produced)
	next := map[int32]int64{} // next expected offset per partition
	remaining := func() (n int64) {
		for p := int32(0); p < partitions; p++ {
			n += want[p] - next[p]
		}
		return n
	}
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for remaining() > 0 {
		fs := cl.PollFetches(readCtx)
		if err := readCtx.Err(); err != nil {
			t.Fatalf("reading the log back: %v; still missing per partition (end offset - next): %v", err, missing(want, next))
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("fetch partition %d: %v", fe.Partition, fe.Err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			p := r.Partition
			if r.Offset != next[p] {
				t.Fatalf("partition %d: record at offset %d, want %d: offsets are not dense", p, r.Offset, next[p])
			}
			if r.Offset >= want[p] {
				t.Fatalf("partition %d: record at offset %d, at or past the end offset %d listed after producing", p, r.Offset, want[p])
			}
			next[p]++
			v.read++
			seq, err := parseValue(r.Value)
			if err == nil && seq >= produced {
				err = fmt.Errorf("record %d was never produced (only %d were)", seq, produced)
			}
			if err != nil {
				t.Fatalf("partition %d offset %d: %v", p, r.Offset, err)
			}
			if seen[seq] {
				v.duplicates++
			}
			seen[seq] = true
			ackSeq, ok := acks.acked(p, r.Offset)
			switch {
			case !ok:
				v.unacked++
			case ackSeq != seq:
				v.mismatched++
				if v.mismatched <= 5 {
					t.Errorf("partition %d offset %d: record %d acknowledged here, record %d stored", p, r.Offset, ackSeq, seq)
				}
			}
		}
	}
	for p := int32(0); p < partitions; p++ {
		for o := want[p]; ; o++ {
			seq, ok := acks.acked(p, o)
			if !ok {
				if o >= int64(len(acks.slots[p])) {
					break
				}
				continue
			}
			v.lost++
			if v.lost <= 5 {
				t.Errorf("partition %d: record %d acknowledged at offset %d, beyond the end offset %d", p, seq, o, want[p])
			}
		}
	}
	return v
}

func missing(want, next map[int32]int64) map[int32]int64 {
	m := map[int32]int64{}
	for p, w := range want {
		m[p] = w - next[p]
	}
	return m
}
