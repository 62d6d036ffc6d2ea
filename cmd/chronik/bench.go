package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const defaultBenchCount = 1_000_000

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure produce and consume throughput and latency",
		Long: `Measure a broker (Chronik or any Kafka) with franz-go clients. Progress goes
to stderr once a second; the summary goes to stdout, as one JSON object with
--json.`,
	}
	cmd.AddCommand(newBenchProduceCmd(), newBenchConsumeCmd())
	return cmd
}

type benchProduceFlags struct {
	conn        connFlags
	topic       string
	acks        string
	linger      time.Duration
	batchBytes  int32
	compression string
	partitions  int32
	recordSize  int
	count       int64
	duration    time.Duration
	producers   int
	idempotent  bool
	maxBuffered int
	json        bool
	progress    bool
	rate        float64 // records per second over all producers; 0: as fast as possible
	// txnInterval, when set, makes each producer transactional: it
	// commits a transaction this often.
	txnInterval time.Duration
}

func newBenchProduceCmd() *cobra.Command {
	var f benchProduceFlags
	cmd := &cobra.Command{
		Use:   "produce [--count N | --duration D] [flags]",
		Short: "Produce fixed-size records as fast as the broker takes them",
		Long: `Produce fixed-size records asynchronously from --producers independent
clients, each keeping up to --max-buffered-records in flight. Latency is
per record, from the Produce call to its acknowledgement. The topic is
created with --partitions partitions if it does not exist.`,
		Example: `  chronik bench produce --topic bench --count 5000000 --partitions 8 --producers 4
  chronik bench produce --duration 30s --acks 1 --compression lz4 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchProduce(cmd.Context(), &f, cmd.Flags().Changed("idempotent"), cmd.Flags().Changed("partitions"),
				cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVarP(&f.topic, "topic", "t", "chronik-bench", "topic to produce to")
	fs.StringVar(&f.acks, "acks", "all", "acknowledgement: all, 1 or 0")
	fs.DurationVar(&f.linger, "linger", 10*time.Millisecond, "how long a partition's batch waits for more records")
	fs.Int32Var(&f.batchBytes, "batch-bytes", 1000012, "largest record batch a client builds (ProducerBatchMaxBytes)")
	fs.StringVar(&f.compression, "compression", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	fs.Int32Var(&f.partitions, "partitions", 1, "partitions to create the topic with if it does not exist")
	fs.IntVar(&f.recordSize, "record-size", 100, "value bytes per record")
	fs.Int64Var(&f.count, "count", 0, fmt.Sprintf("records to produce (default %d unless --duration is given)", defaultBenchCount))
	fs.DurationVar(&f.duration, "duration", 0, "produce for this long instead of a --count")
	fs.IntVar(&f.producers, "producers", 1, "independent producer clients")
	fs.BoolVar(&f.idempotent, "idempotent", true, "idempotent producer; only with --acks all (other acks turn it off)")
	fs.IntVar(&f.maxBuffered, "max-buffered-records", 50000, "records each client keeps in flight before Produce blocks")
	fs.Float64Var(&f.rate, "rate", 0, "records per second over all producers (0: as fast as the broker takes them); latency then counts from each record's scheduled time, so falling behind shows")
	fs.DurationVar(&f.txnInterval, "transaction-interval", 0, "make each producer transactional, committing a transaction this often (0: no transactions)")
	fs.BoolVar(&f.json, "json", false, "print the summary as one JSON object")
	fs.BoolVar(&f.progress, "progress", true, "print a progress line to stderr every second")
	return cmd
}

// normalize checks the flags and fills the defaults that depend on others.
func (f *benchProduceFlags) normalize(idempotentSet bool) error {
	if err := requireTopic(f.topic); err != nil {
		return err
	}
	if _, err := parseAcks(f.acks); err != nil {
		return err
	}
	if _, err := parseCompression(f.compression); err != nil {
		return err
	}
	all := f.acks == "all" || f.acks == "-1"
	switch {
	case f.count < 0:
		return fmt.Errorf("--count %d is negative: give the number of records to produce", f.count)
	case f.duration < 0:
		return fmt.Errorf("--duration %v is negative", f.duration)
	case f.count > 0 && f.duration > 0:
		return errors.New("give --count or --duration, not both")
	case f.recordSize < 0 || f.recordSize > 64<<20:
		return fmt.Errorf("--record-size %d is outside 0 to %d bytes", f.recordSize, 64<<20)
	case f.producers < 1 || f.producers > 1024:
		return fmt.Errorf("--producers %d is outside 1 to 1024", f.producers)
	case f.partitions < 1:
		return fmt.Errorf("--partitions %d must be at least 1", f.partitions)
	case f.linger < 0:
		return fmt.Errorf("--linger %v is negative", f.linger)
	case f.batchBytes < 1024:
		return fmt.Errorf("--batch-bytes %d is below 1024", f.batchBytes)
	case f.maxBuffered < 1:
		return fmt.Errorf("--max-buffered-records %d must be at least 1", f.maxBuffered)
	case f.rate < 0:
		return fmt.Errorf("--rate %v is negative: give records per second, or 0 for as fast as possible", f.rate)
	case idempotentSet && f.idempotent && !all:
		return fmt.Errorf("--idempotent needs --acks all, not %s", f.acks)
	case f.txnInterval < 0:
		return fmt.Errorf("--transaction-interval %v is negative", f.txnInterval)
	case f.txnInterval > 0 && (!all || idempotentSet && !f.idempotent):
		return errors.New("--transaction-interval needs an idempotent producer with --acks all")
	}
	if !all {
		f.idempotent = false
	}
	if f.count == 0 && f.duration == 0 {
		f.count = defaultBenchCount
	}
	return nil
}

// benchRec is a pooled record. It is also the record's Context, which is
// how the shared promise finds the start time without a closure per record:
// kgo truncates Record.Timestamp to milliseconds, too coarse for latency.
type benchRec struct {
	context.Context // context.Background: never canceled
	rec             kgo.Record
	start           time.Time
}

func runBenchProduce(ctx context.Context, f *benchProduceFlags, idempotentSet, partitionsSet bool, stdout, stderr io.Writer) error {
	if err := f.normalize(idempotentSet); err != nil {
		return err
	}
	acks, _ := parseAcks(f.acks)
	codec, _ := parseCompression(f.compression)

	nparts, err := ensureBenchTopic(ctx, f, partitionsSet, stderr)
	if err != nil {
		return err
	}

	secOpts, err := f.conn.securityOpts(ctx)
	if err != nil {
		return err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(f.conn.brokers...),
		kgo.DefaultProduceTopic(f.topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerLinger(f.linger),
		kgo.ProducerBatchMaxBytes(f.batchBytes),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(f.maxBuffered),
		kgo.RecordDeliveryTimeout(f.conn.timeout),
	}
	opts = append(opts, secOpts...)
	if !f.idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	clients := make([]*kgo.Client, f.producers)
	for i := range clients {
		copts := opts
		if f.txnInterval > 0 {
			copts = append(slices.Clip(opts), kgo.TransactionalID(fmt.Sprintf("chronik-bench-%d-%d", os.Getpid(), i)))
		}
		if clients[i], err = kgo.NewClient(copts...); err != nil {
			for _, cl := range clients[:i] {
				cl.Close()
			}
			return err
		}
	}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()

	payload := make([]byte, f.recordSize)
	for i := range payload {
		payload[i] = byte('A' + rand.IntN(26)) // like kafka-producer-perf-test: compressible, not trivially
	}

	var (
		c        counters
		hist     histogram
		errMu    sync.Mutex
		firstErr error // guarded by errMu
		stopped  atomic.Bool
		pool     = sync.Pool{New: func() any { return &benchRec{Context: context.Background()} }}
	)
	stopWatch := context.AfterFunc(ctx, func() { stopped.Store(true) })
	defer stopWatch()
	fail := func(err error) {
		c.errors.Add(1)
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	promise := func(r *kgo.Record, err error) {
		br := r.Context.(*benchRec)
		if err != nil {
			fail(err)
		} else {
			hist.record(time.Since(br.start))
			c.records.Add(1)
			c.bytes.Add(int64(len(r.Key) + len(r.Value)))
		}
		pool.Put(br)
	}

	prog := startProgress(stderr, "produce", &c, f.progress)
	began := time.Now()
	deadline := began.Add(f.duration)
	var wg sync.WaitGroup
	for i, cl := range clients {
		n := f.count / int64(f.producers)
		if int64(i) < f.count%int64(f.producers) {
			n++
		}
		var interval time.Duration // between one producer's records at --rate
		if f.rate > 0 {
			interval = time.Duration(float64(time.Second) * float64(f.producers) / f.rate)
		}
		wg.Go(func() {
			var txnEnds time.Time
			if f.txnInterval > 0 {
				defer func() {
					if err := endBenchTxn(cl, f.conn.timeout); err != nil {
						fail(err)
					}
				}()
			}
			for j := int64(0); f.count == 0 || j < n; j++ {
				if stopped.Load() || f.duration > 0 && j&255 == 0 && time.Now().After(deadline) {
					break
				}
				if f.txnInterval > 0 && j&63 == 0 && time.Now().After(txnEnds) {
					if err := endBenchTxn(cl, f.conn.timeout); err != nil {
						fail(err)
						return
					}
					if err := cl.BeginTransaction(); err != nil {
						fail(err)
						return
					}
					txnEnds = time.Now().Add(f.txnInterval)
				}
				br := pool.Get().(*benchRec)
				br.rec = kgo.Record{Value: payload, Context: br}
				br.start = time.Now()
				if interval > 0 {
					// Open loop: each record has a scheduled time, and its
					// latency counts from then, waiting included.
					br.start = began.Add(time.Duration(j) * interval)
					if d := time.Until(br.start); d > time.Millisecond {
						time.Sleep(d)
					}
				}
				cl.Produce(context.Background(), &br.rec, promise)
			}
			// An interrupt stops producing; Flush still waits for what is in
			// flight, bounded so an unreachable broker cannot hang the summary.
			fctx, cancel := context.WithTimeout(context.Background(), f.conn.timeout)
			defer cancel()
			if err := cl.Flush(fctx); err != nil {
				fail(fmt.Errorf("flush: %w", err))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	prog.stop()

	res := newResult("produce", f.topic, &c, elapsed)
	if res.Records > 0 {
		res.LatencyMs = hist.summary()
	}
	errMu.Lock()
	if firstErr != nil {
		firstErr = f.conn.explain(firstErr, f.topic)
		res.FirstError = firstErr.Error()
	}
	errMu.Unlock()
	res.Settings = map[string]any{
		"acks": f.acks, "idempotent": f.idempotent, "linger_ms": f.linger.Milliseconds(),
		"batch_bytes": f.batchBytes, "compression": f.compression, "record_size": f.recordSize,
		"partitions": nparts, "producers": f.producers, "max_buffered_records": f.maxBuffered,
		"count": f.count, "duration_sec": f.duration.Seconds(), "rate": f.rate,
		"transaction_interval_ms": f.txnInterval.Milliseconds(),
	}
	if err := writeResult(stdout, &res, f.json); err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d records failed: %w", res.Errors, firstErr)
	}
	return nil
}

// endBenchTxn commits cl's open transaction, if any, once its records are
// acknowledged.
func endBenchTxn(cl *kgo.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ensureBenchTopic creates the topic with --partitions if it is missing and
// returns its partition count.
func ensureBenchTopic(ctx context.Context, f *benchProduceFlags, partitionsSet bool, stderr io.Writer) (int, error) {
	adm, err := f.conn.admin(ctx)
	if err != nil {
		return 0, err
	}
	defer adm.Close()
	nparts, err := f.conn.topicPartitions(ctx, adm, f.topic)
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		if _, err := adm.CreateTopic(ctx, f.partitions, -1, nil, f.topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, explainTopicErr(f.topic, err, "", "create")
		}
		fmt.Fprintf(stderr, "created topic %q with %d partitions\n", f.topic, f.partitions)
		return int(f.partitions), nil
	case err != nil:
		return 0, err
	case partitionsSet && nparts != int(f.partitions):
		fmt.Fprintf(stderr, "topic %q exists with %d partitions; --partitions %d only applies when creating it\n", f.topic, nparts, f.partitions)
	}
	return nparts, nil
}

func writeResult(w io.Writer, r *benchResult, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	r.writeText(w)
	return nil
}

type benchConsumeFlags struct {
	conn     connFlags
	topic    string
	count    int64
	json     bool
	progress bool
}

func newBenchConsumeCmd() *cobra.Command {
	var f benchConsumeFlags
	cmd := &cobra.Command{
		Use:   "consume [--count N] [flags]",
		Short: "Read a topic from its start as fast as the broker serves it",
		Long: `Read every partition of a topic directly from its start (no consumer group)
until --count records are read, or, without --count, until caught up with
the end offsets seen when the run began.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchConsume(cmd.Context(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVarP(&f.topic, "topic", "t", "chronik-bench", "topic to read")
	fs.Int64Var(&f.count, "count", 0, "records to read (default: until caught up)")
	fs.BoolVar(&f.json, "json", false, "print the summary as one JSON object")
	fs.BoolVar(&f.progress, "progress", true, "print a progress line to stderr every second")
	return cmd
}

func runBenchConsume(ctx context.Context, f *benchConsumeFlags, stdout, stderr io.Writer) error {
	if err := requireTopic(f.topic); err != nil {
		return err
	}
	if f.count < 0 {
		return fmt.Errorf("--count %d is negative: give the number of records to read, or 0 to read until caught up", f.count)
	}
	adm, err := f.conn.admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	if _, err := f.conn.topicPartitions(ctx, adm, f.topic); err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, f.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return f.conn.explain(err, f.topic)
	}
	ends, err := adm.ListEndOffsets(ctx, f.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return f.conn.explain(err, f.topic)
	}

	// Partitions still to catch up, by the offset that ends them.
	pending := make(map[int32]int64)
	var available int64
	for p, end := range ends[f.topic] {
		start := starts[f.topic][p].Offset
		if end.Offset > start {
			pending[p] = end.Offset
			available += end.Offset - start
		}
	}
	if f.count == 0 && available == 0 {
		return fmt.Errorf("topic %q is empty: fill it first, e.g. `chronik bench produce --topic %s`", f.topic, f.topic)
	}

	parts := make(map[int32]kgo.Offset)
	for p := range ends[f.topic] {
		parts[p] = kgo.NewOffset().AtStart()
	}
	secOpts, err := f.conn.securityOpts(ctx)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(f.conn.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{f.topic: parts}),
	}, secOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()

	var c counters
	prog := startProgress(stderr, "consume", &c, f.progress)
	began := time.Now()
	done := func() bool {
		if f.count > 0 {
			return c.records.Load() >= f.count
		}
		return len(pending) == 0
	}
	var fetchErr error
	for !done() && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		if err := fetches.Err0(); err != nil {
			fetchErr = err
			break
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if f.count > 0 && c.records.Load() >= f.count {
					return
				}
				c.records.Add(1)
				c.bytes.Add(int64(len(r.Key) + len(r.Value)))
			}
			if n := len(p.Records); n > 0 {
				if end, ok := pending[p.Partition]; ok && p.Records[n-1].Offset+1 >= end {
					delete(pending, p.Partition)
				}
			}
		})
	}
	elapsed := time.Since(began)
	prog.stop()

	res := newResult("consume", f.topic, &c, elapsed)
	res.Settings = map[string]any{"count": f.count, "partitions": len(parts)}
	if fetchErr != nil {
		res.Errors = 1
		res.FirstError = f.conn.explain(fetchErr, f.topic).Error()
	}
	if err := writeResult(stdout, &res, f.json); err != nil {
		return err
	}
	if fetchErr != nil {
		return f.conn.explain(fetchErr, f.topic)
	}
	return nil
}
