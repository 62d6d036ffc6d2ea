package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func newTxnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "List and describe transactions, and abort hanging ones",
	}
	cmd.AddCommand(newTxnListCmd(), newTxnDescribeCmd(), newTxnAbortCmd())
	return cmd
}

func newTxnListCmd() *cobra.Command {
	var (
		conn   connFlags
		states []string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List transactional IDs, their producers and states",
		Example: `  chronik txn list --state Ongoing`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			ls, err := adm.ListTransactions(ctx, nil, states)
			if err != nil {
				return conn.explain(err, "")
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TRANSACTIONAL ID\tPRODUCER ID\tSTATE\tCOORDINATOR")
			for _, l := range ls.Sorted() {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", l.TxnID, l.ProducerID, l.State, l.Coordinator)
			}
			return tw.Flush()
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&states, "state", nil, "only transactions in these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort)")
	return cmd
}

func newTxnDescribeCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:     "describe TRANSACTIONAL-ID...",
		Short:   "Show a transaction's producer, state, age and partitions",
		Example: `  chronik txn describe orders-etl-0`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			ds, err := adm.DescribeTransactions(ctx, ids...)
			if err != nil && len(ds) == 0 {
				return conn.explain(err, "")
			}
			out := cmd.OutOrStdout()
			var errs []error
			for _, id := range ids {
				d, derr := ds.On(id, nil)
				if derr == nil {
					derr = d.Err
				}
				if derr != nil {
					errs = append(errs, fmt.Errorf("transactional ID %q: %w", id, derr))
					continue
				}
				fmt.Fprintf(out, "transactional ID %s: state %s, producer %d epoch %d, timeout %s, coordinator %d\n",
					d.TxnID, d.State, d.ProducerID, d.ProducerEpoch, time.Duration(d.TimeoutMillis)*time.Millisecond, d.Coordinator)
				if d.StartTimestamp > 0 {
					fmt.Fprintf(out, "  started %s (%s ago)\n", time.UnixMilli(d.StartTimestamp).UTC().Format(time.RFC3339),
						time.Since(time.UnixMilli(d.StartTimestamp)).Round(time.Second))
				}
				for _, tp := range d.Topics.Sorted() {
					fmt.Fprintf(out, "  partition %s%v\n", tp.Topic, tp.Partitions)
				}
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

func newTxnAbortCmd() *cobra.Command {
	var (
		conn       connFlags
		topic      string
		partition  int32
		producerID int64
	)
	cmd := &cobra.Command{
		Use:   "abort --topic T --partition N [--producer-id ID]",
		Short: "Abort a hanging transaction on a partition (one that holds back read_committed consumers)",
		Long: `Writes an abort marker to the partition for each producer whose transaction is open
on it (or only --producer-id), as Kafka's kafka-transactions.sh abort does. Use it for a
transaction whose coordinator will never end it; a live one is ended by its timeout.`,
		Example: `  chronik txn abort --topic orders --partition 3`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return errors.New("give --topic and --partition of the partition whose transaction hangs")
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			ds, err := adm.DescribeProducers(ctx, kadm.TopicsSet{topic: {partition: {}}})
			if err != nil {
				return conn.explain(err, topic)
			}
			var open []kadm.DescribedProducer
			for _, p := range ds.SortedProducers() {
				if p.Partition == partition && p.CurrentTxnStartOffset >= 0 && (producerID < 0 || p.ProducerID == producerID) {
					open = append(open, p)
				}
			}
			if len(open) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no open transaction on %s/%d\n", topic, partition)
				return nil
			}
			var markers []kadm.TxnMarkers
			for _, p := range open {
				markers = append(markers, kadm.TxnMarkers{ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch,
					Commit: false, CoordinatorEpoch: p.CoordinatorEpoch, Topics: kadm.TopicsSet{topic: {partition: {}}}})
			}
			rs, err := adm.WriteTxnMarkers(ctx, markers...)
			if err != nil {
				return conn.explain(err, topic)
			}
			var errs []error
			var done []string
			rs.EachPartition(func(r kadm.TxnMarkersPartitionResponse) {
				if r.Err != nil {
					errs = append(errs, fmt.Errorf("abort producer %d on %s/%d: %w", r.ProducerID, r.Topic, r.Partition, r.Err))
				} else {
					done = append(done, fmt.Sprint(r.ProducerID))
				}
			})
			slices.Sort(done)
			if len(done) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "aborted the open transactions of producers %s on %s/%d\n", strings.Join(done, ", "), topic, partition)
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringVar(&topic, "topic", "", "topic of the partition")
	cmd.Flags().Int32Var(&partition, "partition", 0, "partition whose transaction hangs")
	cmd.Flags().Int64Var(&producerID, "producer-id", -1, "abort only this producer's transaction")
	return cmd
}
