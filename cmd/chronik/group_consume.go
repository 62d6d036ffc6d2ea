package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupConsumeFlags are the flags of `chronik consume --group`.
type groupConsumeFlags struct {
	name           string
	protocol       string
	balancer       string
	instanceID     string
	commitInterval time.Duration
	sessionTimeout time.Duration
	reportCommits  bool
}

func (f *groupConsumeFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.name, "group", "g", "", "consume as a member of this consumer group, committing what is printed")
	fs.StringVar(&f.protocol, "group-protocol", "classic", "with --group: classic (the client assigns partitions) or consumer (KIP-848: the broker assigns them; --balancer range or sticky)")
	fs.StringVar(&f.balancer, "balancer", "cooperative-sticky", "with --group: partition assignor, one of cooperative-sticky, sticky, range, roundrobin")
	fs.StringVar(&f.instanceID, "instance-id", "", "with --group: static member ID (group.instance.id), kept across restarts")
	fs.DurationVar(&f.commitInterval, "commit-interval", 5*time.Second, "with --group: commit printed records this often (auto.commit.interval.ms)")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", 45*time.Second, "with --group: the group drops this member after this long without a heartbeat")
	fs.BoolVar(&f.reportCommits, "report-commits", false, `with --group: report each successful commit (json: {"committed":{topic,partition,offset}} lines on stdout; text: stderr)`)
}

func (f *groupConsumeFlags) validate(partition int32, from string) error {
	if partition >= 0 {
		return errors.New("--partition cannot be used with --group: the group assigns partitions")
	}
	if from != "earliest" && from != "latest" {
		return fmt.Errorf("--from %q cannot be used with --group: give earliest or latest (where to start partitions the group has not committed), or reset the group with `chronik group reset-offsets`", from)
	}
	if _, err := groupBalancer(f.balancer); err != nil {
		return err
	}
	switch f.protocol {
	case "classic":
	case "consumer":
		if f.balancer == "roundrobin" {
			return errors.New("--balancer roundrobin is not served by --group-protocol consumer: use range, sticky or cooperative-sticky (the broker's uniform assignor)")
		}
	default:
		return fmt.Errorf("--group-protocol %q is not one of classic, consumer", f.protocol)
	}
	if f.commitInterval < 100*time.Millisecond {
		return fmt.Errorf("--commit-interval %v is below franz-go's minimum of 100ms", f.commitInterval)
	}
	if f.sessionTimeout < time.Second {
		return fmt.Errorf("--session-timeout %v is below 1s", f.sessionTimeout)
	}
	return nil
}

func groupBalancer(name string) (kgo.GroupBalancer, error) {
	switch name {
	case "cooperative-sticky":
		return kgo.CooperativeStickyBalancer(), nil
	case "sticky":
		return kgo.StickyBalancer(), nil
	case "range":
		return kgo.RangeBalancer(), nil
	case "roundrobin":
		return kgo.RoundRobinBalancer(), nil
	}
	return nil, fmt.Errorf("--balancer %q is not one of cooperative-sticky, sticky, range, roundrobin", name)
}

type jsonCommit struct {
	Committed jsonCommitOffset `json:"committed"`
}

type jsonCommitOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// groupOutput is the consumer's output. Commit reports come from kgo's
// commit goroutine; they are queued and written by the printing loop
// between chunks, because a commit callback that waited for a slow reader
// of stdout would hold up kgo's next commits.
type groupOutput struct {
	w       *bufio.Writer
	enc     *json.Encoder
	stderr  io.Writer
	json    bool
	reports bool
	err     error // first write error, sticky

	mu      sync.Mutex // guards pending
	pending []jsonCommitOffset
}

// committed queues a report of the successful partitions of one commit.
func (o *groupOutput) committed(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err != nil || !o.reports {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, t := range resp.Topics {
		for j, p := range t.Partitions {
			if p.ErrorCode != 0 || i >= len(req.Topics) || j >= len(req.Topics[i].Partitions) {
				continue
			}
			o.pending = append(o.pending, jsonCommitOffset{Topic: t.Topic, Partition: p.Partition, Offset: req.Topics[i].Partitions[j].Offset})
		}
	}
}

// writeReports writes the queued commit reports.
func (o *groupOutput) writeReports() {
	o.mu.Lock()
	pending := o.pending
	o.pending = nil
	o.mu.Unlock()
	for _, c := range pending {
		if o.json {
			o.setErr(o.enc.Encode(jsonCommit{c}))
		} else {
			fmt.Fprintf(o.stderr, "committed %s/%d at offset %d\n", c.Topic, c.Partition, c.Offset)
		}
	}
}

func (o *groupOutput) setErr(err error) {
	if err != nil && o.err == nil {
		o.err = fmt.Errorf("write output: %w", err)
	}
}

// runGroupConsume consumes f.topic as a member of f.group.name. Records are
// marked for commit only after they are flushed to stdout, and rebalances
// are held off while a polled batch is being printed (BlockRebalanceOnPoll),
// so a revoke always commits everything printed and a successor never
// re-reads what this member printed, unless it dies before committing.
func runGroupConsume(ctx context.Context, f *consumeFlags, start kgo.Offset, stdout, stderr io.Writer) error {
	g := &f.group
	bal, _ := groupBalancer(g.balancer)
	out := &groupOutput{w: bufio.NewWriter(stdout), stderr: stderr, json: f.format == "json", reports: g.reportCommits}
	out.enc = json.NewEncoder(out.w)
	opts := []kgo.Opt{
		kgo.ConsumerGroup(g.name),
		kgo.ConsumeTopics(f.topic),
		kgo.ConsumeResetOffset(start),
		kgo.Balancers(bal),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(g.commitInterval),
		kgo.AutoCommitCallback(out.committed),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(g.sessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, g.sessionTimeout/3)),
	}
	if g.instanceID != "" {
		opts = append(opts, kgo.InstanceID(g.instanceID))
	}
	if g.protocol == "consumer" {
		opts = append(opts, kgo.ServerSideBalancer())
	}
	cl, err := f.conn.connect(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	printed := 0
	var lastErr string
	for f.count == 0 || printed < f.count {
		// A member holds off rebalances while it prints a poll
		// (BlockRebalanceOnPoll), and a rebalance blocks every
		// member's commits: keep polls small so slow output does not
		// stall the group.
		// With --report-commits, wake up now and then to report the
		// commits made while no records arrived.
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if g.reportCommits {
			pollCtx, cancel = context.WithTimeout(ctx, time.Second)
		}
		fetches := cl.PollRecords(pollCtx, 1000)
		cancel()
		if ctx.Err() != nil {
			cl.AllowRebalance()
			break
		}
		var fatal error
		fetches.EachError(func(_ string, _ int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded) && pollCtx != ctx:
				// The report wake-up above.
			case errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled):
				fatal = err
			case errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.InvalidGroupID):
				fatal = f.conn.explain(err, f.topic)
			default:
				// Transient (a broker restart, a moved
				// coordinator): kgo retries; say so once.
				if msg := err.Error(); msg != lastErr {
					lastErr = msg
					fmt.Fprintf(stderr, "consume: %v (retrying)\n", f.conn.explain(err, f.topic))
				}
			}
		})
		if fatal != nil {
			cl.AllowRebalance()
			return fatal
		}
		// Print in chunks, marking each for commit once it is flushed,
		// so the uncommitted window stays small even when the output
		// is slow to drain.
		const chunk = 256
		chunkRecs := make([]*kgo.Record, 0, chunk)
		for it := fetches.RecordIter(); !it.Done() && (f.count == 0 || printed < f.count); {
			chunkRecs = chunkRecs[:0]
			out.writeReports()
			for ; !it.Done() && len(chunkRecs) < chunk && (f.count == 0 || printed < f.count); printed++ {
				r := it.Next()
				if out.json {
					out.setErr(out.enc.Encode(toJSONRecord(r)))
				} else {
					_, err := fmt.Fprintf(out.w, "%s\n", r.Value)
					out.setErr(err)
				}
				chunkRecs = append(chunkRecs, r)
			}
			out.setErr(out.w.Flush())
			if out.err != nil {
				cl.AllowRebalance()
				return out.err
			}
			cl.MarkCommitRecords(chunkRecs...)
		}
		out.writeReports()
		out.setErr(out.w.Flush())
		cl.AllowRebalance()
	}

	// Commit what was printed before leaving the group: Close's revoke
	// commits too, but its errors are only logged.
	cctx, cancel := context.WithTimeout(context.Background(), f.conn.timeout)
	defer cancel()
	var commitErr error
	cl.CommitOffsetsSync(cctx, cl.MarkedOffsets(), func(c *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		out.committed(c, req, resp, err)
		if err == nil {
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil && commitErr == nil {
						commitErr = e
					}
				}
			}
		} else {
			commitErr = err
		}
	})
	cl.Close()
	out.writeReports()
	out.setErr(out.w.Flush())
	if out.err != nil {
		return out.err
	}
	if commitErr != nil {
		return fmt.Errorf("final commit of group %q: %w", g.name, f.conn.explain(commitErr, f.topic))
	}
	if f.count > 0 && printed < f.count {
		return fmt.Errorf("interrupted after %d of %d records", printed, f.count)
	}
	return nil
}
