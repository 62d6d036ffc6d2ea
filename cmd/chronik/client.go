package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// connFlags are the connection flags every client command shares.
type connFlags struct {
	brokers []string
	timeout time.Duration
}

func (f *connFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVarP(&f.brokers, "brokers", "b", []string{"127.0.0.1:9092"}, "bootstrap brokers, host:port, comma-separated")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "give up on a broker request (and on delivering a record) after this long")
}

func (f *connFlags) validate() error {
	if len(f.brokers) == 0 {
		return errors.New("--brokers is empty: give at least one host:port, e.g. --brokers 127.0.0.1:9092")
	}
	for _, b := range f.brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("--brokers %q is not host:port: write e.g. 127.0.0.1:9092", b)
		}
	}
	if f.timeout < time.Second {
		return fmt.Errorf("--timeout %v is below 1s: franz-go needs at least a second to deliver a record", f.timeout)
	}
	return nil
}

func (f *connFlags) where() string { return strings.Join(f.brokers, ",") }

// connect returns a client that has reached a broker: kgo dials lazily and
// retries forever, so without this check an unreachable broker shows up as a
// hang instead of an error.
func (f *connFlags) connect(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(f.brokers...),
		kgo.DialTimeout(min(f.timeout, 10*time.Second)),
		kgo.RetryTimeout(f.timeout),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, f.explain(err, "")
	}
	return cl, nil
}

// explain turns a client error into one that names the problem and the fix.
// topic, if set, is the topic the failed operation was about.
func (f *connFlags) explain(err error, topic string) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach broker at %s: is `chronik start` running? (%w)", f.where(), err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve broker host %q: check --brokers (%w)", dnsErr.Name, err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("cannot reach broker at %s: is `chronik start` running and the address reachable? (%w)", f.where(), err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from broker at %s within --timeout %v: is `chronik start` running? (%w)", f.where(), f.timeout, err)
	case errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID):
		if topic == "" {
			return err
		}
		return fmt.Errorf("topic %q does not exist: create it with `chronik topic create %s` (%w)", topic, topic, err)
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("a record batch is larger than the topic's max.message.bytes: send smaller records, or raise the limit with `chronik topic alter %s --config max.message.bytes=N` (%w)", topic, err)
	case errors.Is(err, kerr.NotEnoughReplicas), errors.Is(err, kerr.NotEnoughReplicasAfterAppend):
		return fmt.Errorf("fewer in-sync replicas than the topic's min.insync.replicas: bring brokers back or use a weaker --acks (%w)", err)
	case errors.Is(err, kgo.ErrRecordTimeout):
		return fmt.Errorf("records were not delivered within --timeout %v: the broker at %s is unreachable or overloaded (%w)", f.timeout, f.where(), err)
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return fmt.Errorf("broker refused: %s: %s", ke.Message, ke.Description)
	}
	return err
}

// admin returns an admin client on a connected client; closing the admin
// client closes cl.
func (f *connFlags) admin(ctx context.Context) (*kadm.Client, error) {
	cl, err := f.connect(ctx)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(f.timeout.Milliseconds()))
	return adm, nil
}

// topicPartitions returns the topic's partition count, or an error saying
// it does not exist.
func (f *connFlags) topicPartitions(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, f.explain(err, topic)
	}
	td, ok := tds[topic]
	if !ok {
		return 0, f.explain(kerr.UnknownTopicOrPartition, topic)
	}
	if td.Err != nil {
		return 0, f.explain(td.Err, topic)
	}
	return len(td.Partitions), nil
}

func parseAcks(s string) (kgo.Acks, error) {
	switch s {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1":
		return kgo.LeaderAck(), nil
	case "0":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks %q is not one of all, 1, 0", s)
}

func parseCompression(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("--compression %q is not one of none, gzip, snappy, lz4, zstd", s)
}

// parseKVs parses repeated k=v flags, keeping order.
func parseKVs(flag string, kvs []string) ([][2]string, error) {
	out := make([][2]string, 0, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q is not key=value", flag, kv)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func requireTopic(topic string) error {
	if topic == "" {
		return errors.New("--topic is required")
	}
	return nil
}
