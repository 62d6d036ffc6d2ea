package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxLineBytes bounds one stdin line; Chronik's own default
// message.max.bytes is 1 MiB, so a longer line is almost surely a mistake.
const maxLineBytes = 16 << 20

type produceFlags struct {
	conn        connFlags
	topic       string
	key         string
	value       string
	headers     []string
	partition   int32
	acks        string
	compression string
}

func newProduceCmd() *cobra.Command {
	var f produceFlags
	cmd := &cobra.Command{
		Use:   "produce --topic T [--key K] [--header k=v ...] [--value V]",
		Short: "Produce records: one per stdin line, or --value",
		Long: `Produce records to a topic. Each line of stdin becomes one record (an empty
line, an empty value), or --value gives a single record. Unknown topics are
created if the broker auto-creates topics.`,
		Example: `  echo hello | chronik produce --topic orders
  chronik produce --topic orders --key user-1 --header source=cli --value '{"total":12}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var key []byte
			if cmd.Flags().Changed("key") {
				key = []byte(f.key)
			}
			var in io.Reader = cmd.InOrStdin()
			if cmd.Flags().Changed("value") {
				in = nil
			}
			return runProduce(cmd.Context(), &f, key, in, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVarP(&f.topic, "topic", "t", "", "topic to produce to (required)")
	fs.StringVarP(&f.key, "key", "k", "", "key of every record (default: no key)")
	fs.StringVar(&f.value, "value", "", "produce this one record instead of reading stdin")
	fs.StringArrayVarP(&f.headers, "header", "H", nil, "record header key=value (repeatable)")
	fs.Int32VarP(&f.partition, "partition", "p", -1, "partition to write to (default: chosen by the partitioner)")
	fs.StringVar(&f.acks, "acks", "all", "acknowledgement: all, 1 or 0")
	fs.StringVar(&f.compression, "compression", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	return cmd
}

func runProduce(ctx context.Context, f *produceFlags, key []byte, in io.Reader, stderr io.Writer) error {
	if err := requireTopic(f.topic); err != nil {
		return err
	}
	acks, err := parseAcks(f.acks)
	if err != nil {
		return err
	}
	codec, err := parseCompression(f.compression)
	if err != nil {
		return err
	}
	kvs, err := parseKVs("header", f.headers)
	if err != nil {
		return err
	}
	if f.partition < -1 {
		return fmt.Errorf("--partition %d is negative: partitions are numbered from 0", f.partition)
	}
	headers := make([]kgo.RecordHeader, len(kvs))
	for i, kv := range kvs {
		headers[i] = kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])}
	}

	opts := []kgo.Opt{
		kgo.DefaultProduceTopic(f.topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerBatchCompression(codec),
		kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(f.conn.timeout),
	}
	if f.acks != "all" && f.acks != "-1" {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if f.partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := f.conn.connect(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	var (
		sent, failed atomic.Int64
		errMu        sync.Mutex
		firstErr     error // guarded by errMu
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			errMu.Unlock()
		}
	}
	produce := func(value []byte) {
		// Not ctx: an interrupt stops reading input, but what was read is
		// still delivered (bounded by RecordDeliveryTimeout).
		cl.Produce(context.Background(), &kgo.Record{Key: key, Value: value, Headers: headers, Partition: f.partition}, promise)
		sent.Add(1)
	}

	var readErr error
	if in == nil {
		produce([]byte(f.value))
	} else {
		readErr = readLines(ctx, in, produce)
	}
	fctx, cancel := context.WithTimeout(context.Background(), f.conn.timeout)
	defer cancel()
	if err := cl.Flush(fctx); err != nil && readErr == nil {
		readErr = f.conn.explain(err, f.topic)
	}

	ok := sent.Load() - failed.Load()
	fmt.Fprintf(stderr, "produced %d of %d records to %q\n", ok, sent.Load(), f.topic)
	if failed.Load() > 0 {
		errMu.Lock()
		defer errMu.Unlock()
		return fmt.Errorf("%d of %d records failed: %w", failed.Load(), sent.Load(), f.conn.explain(firstErr, f.topic))
	}
	return readErr
}

// readLines calls fn with a copy of each line of in until EOF or until ctx
// ends. The read runs in its own goroutine so an interrupt is not stuck
// behind a terminal waiting for input.
func readLines(ctx context.Context, in io.Reader, fn func([]byte)) error {
	lines := make(chan []byte, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), maxLineBytes)
		n := 0
		for sc.Scan() {
			n++
			select {
			case lines <- append([]byte(nil), sc.Bytes()...):
			case <-ctx.Done():
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("line %d is longer than %d bytes", n+1, maxLineBytes)
			}
			errc <- fmt.Errorf("read stdin: %w", err)
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				select {
				case err := <-errc:
					return err
				default:
					return nil
				}
			}
			fn(line)
		case <-ctx.Done():
			return nil
		}
	}
}
