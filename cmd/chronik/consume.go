package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

type consumeFlags struct {
	conn      connFlags
	topic     string
	partition int32
	from      string
	count     int
	format    string
	group     groupConsumeFlags
}

func newConsumeCmd() *cobra.Command {
	var f consumeFlags
	cmd := &cobra.Command{
		Use:   "consume --topic T [--group G] [--partition N] [--from earliest|latest|OFFSET] [--count N]",
		Short: "Print records from a topic, directly or as a member of a consumer group",
		Long: `Print records from a topic. Runs until --count records are printed or it is
interrupted.

Without --group it reads partitions directly: nothing is committed. With
--group it joins consumer group G (franz-go's group consumer), prints the
records of the partitions assigned to it and commits what it has printed:
every --commit-interval, when partitions are revoked, and on exit. A record
is committed only after it was written out, so a killed consumer's
successor re-reads at most what was printed since the last commit. --from
then applies only to partitions the group has not committed.
--group-protocol consumer uses KIP-848's protocol, where the broker assigns
the partitions (--balancer range, or sticky for its uniform assignor).

--format text prints each value on its own line. --format json prints one
object per line with topic, partition, offset, timestamp (RFC3339), key,
headers and value; bytes that are not UTF-8 appear as {"base64": "..."}.`,
		Example: `  chronik consume --topic orders --from earliest --count 10
  chronik consume --topic orders --partition 2 --from 1500 --format json | jq .value
  chronik consume --topic orders --group billing --balancer range`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConsume(cmd.Context(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.conn.register(fs)
	fs.StringVarP(&f.topic, "topic", "t", "", "topic to read (required)")
	fs.Int32VarP(&f.partition, "partition", "p", -1, "read only this partition (default: all)")
	fs.StringVar(&f.from, "from", "earliest", "where to start: earliest, latest, or an offset (needs --partition)")
	fs.IntVarP(&f.count, "count", "n", 0, "stop after this many records (default: run until interrupted)")
	fs.StringVar(&f.format, "format", "text", "output: text (values) or json (one object per record)")
	f.group.register(fs)
	return cmd
}

func runConsume(ctx context.Context, f *consumeFlags, stdout, stderr io.Writer) error {
	if err := requireTopic(f.topic); err != nil {
		return err
	}
	if f.format != "text" && f.format != "json" {
		return fmt.Errorf("--format %q is not one of text, json", f.format)
	}
	if f.count < 0 {
		return fmt.Errorf("--count %d is negative: give the number of records to read, or 0 to run until interrupted", f.count)
	}
	if f.partition < -1 {
		return fmt.Errorf("--partition %d is negative: partitions are numbered from 0", f.partition)
	}
	if f.group.name != "" {
		if err := f.group.validate(f.partition, f.from); err != nil {
			return err
		}
	}
	start, exact, err := parseFrom(f.from, f.partition)
	if err != nil {
		return err
	}

	adm, err := f.conn.admin(ctx)
	if err != nil {
		return err
	}
	defer adm.Close()
	nparts, err := f.conn.topicPartitions(ctx, adm, f.topic)
	if err != nil {
		return err
	}
	if int(f.partition) >= nparts {
		return fmt.Errorf("--partition %d does not exist: topic %q has partitions 0 to %d", f.partition, f.topic, nparts-1)
	}
	if f.group.name != "" {
		return runGroupConsume(ctx, f, start, stdout, stderr)
	}
	if exact >= 0 {
		// kgo resets an out-of-range offset silently; say so instead.
		starts, err := adm.ListStartOffsets(ctx, f.topic)
		if err == nil {
			err = starts.Error()
		}
		ends, err2 := adm.ListEndOffsets(ctx, f.topic)
		if err2 == nil {
			err2 = ends.Error()
		}
		if err := errors.Join(err, err2); err != nil {
			return f.conn.explain(err, f.topic)
		}
		lo, _ := starts.Lookup(f.topic, f.partition)
		hi, _ := ends.Lookup(f.topic, f.partition)
		if exact < lo.Offset || exact > hi.Offset {
			return fmt.Errorf("--from %d is outside partition %d's offsets %d to %d", exact, f.partition, lo.Offset, hi.Offset)
		}
	}

	secOpts, err := f.conn.securityOpts(ctx)
	if err != nil {
		return err
	}
	opts := append([]kgo.Opt{kgo.SeedBrokers(f.conn.brokers...), kgo.DialTimeout(min(f.conn.timeout, 10*time.Second))}, secOpts...)
	if f.partition >= 0 {
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{f.topic: {f.partition: start}}))
	} else {
		opts = append(opts, kgo.ConsumeTopics(f.topic), kgo.ConsumeResetOffset(start))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	printed := 0
	for f.count == 0 || printed < f.count {
		fetches := cl.PollRecords(ctx, 10000)
		if ctx.Err() != nil {
			break
		}
		if err := fetches.Err0(); err != nil {
			return f.conn.explain(err, f.topic)
		}
		for it := fetches.RecordIter(); !it.Done() && (f.count == 0 || printed < f.count); printed++ {
			r := it.Next()
			if f.format == "json" {
				err = enc.Encode(toJSONRecord(r))
			} else {
				_, err = fmt.Fprintf(w, "%s\n", r.Value)
			}
			if err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	if f.count > 0 && printed < f.count {
		return fmt.Errorf("interrupted after %d of %d records", printed, f.count)
	}
	return nil
}

// parseFrom returns the start offset, and the exact offset asked for or -1.
func parseFrom(from string, partition int32) (kgo.Offset, int64, error) {
	switch from {
	case "earliest":
		return kgo.NewOffset().AtStart(), -1, nil
	case "latest":
		return kgo.NewOffset().AtEnd(), -1, nil
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return kgo.Offset{}, -1, fmt.Errorf("--from %q is not earliest, latest or an offset of 0 or more", from)
	}
	if partition < 0 {
		return kgo.Offset{}, -1, fmt.Errorf("--from %d needs --partition: offsets are per partition", n)
	}
	return kgo.NewOffset().At(n), n, nil
}

type jsonRecord struct {
	Topic     string       `json:"topic"`
	Partition int32        `json:"partition"`
	Offset    int64        `json:"offset"`
	Timestamp string       `json:"timestamp"`
	Key       *bytesText   `json:"key"` // null when the record has no key
	Headers   []jsonHeader `json:"headers"`
	Value     bytesText    `json:"value"`
}

type jsonHeader struct {
	Key   string    `json:"key"`
	Value bytesText `json:"value"`
}

// bytesText is a string in JSON when it is UTF-8, else {"base64": "..."}.
type bytesText []byte

func (b bytesText) MarshalJSON() ([]byte, error) {
	if utf8.Valid(b) {
		return json.Marshal(string(b))
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(b)})
}

func toJSONRecord(r *kgo.Record) jsonRecord {
	j := jsonRecord{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		Headers:   make([]jsonHeader, len(r.Headers)),
		Value:     r.Value,
	}
	if r.Key != nil {
		k := bytesText(r.Key)
		j.Key = &k
	}
	for i, h := range r.Headers {
		j.Headers[i] = jsonHeader{h.Key, h.Value}
	}
	return j
}
