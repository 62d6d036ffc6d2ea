package main

import (
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newClusterElectLeadersCmd() *cobra.Command {
	var (
		conn       connFlags
		kind       string
		topics     []string
		partitions []int32
		all        bool
	)
	cmd := &cobra.Command{
		Use:   "elect-leaders (--all | --topic T [--partition N]...) [--type preferred|unclean]",
		Short: "Move partitions to their preferred leaders, or elect a leader where none is live",
		Long: `Run a leader election (Kafka's ElectLeaders, as kafka-leader-election does).

preferred (the default) moves each partition to its preferred replica, the
first of its replicas, when that replica is live and in sync. The controller
does this on its own every CHRONIK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS
unless CHRONIK_AUTO_LEADER_REBALANCE_ENABLE is false; this command does it
now, for instance after a broker restarted.

unclean gives a leader to a partition that has no live one, taking a live
replica outside the ISR when no in-sync replica is live: records it lacks
are lost. Use it only when the in-sync replicas are gone for good.

Partitions whose leader needs no change are reported as such (with --all
they are left out). The command fails when an election could not be done.`,
		Example: `  chronik cluster elect-leaders --all
  chronik cluster elect-leaders --topic orders --partition 0 --partition 3
  chronik cluster elect-leaders --type unclean --topic orders --partition 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var how kadm.ElectLeadersHow
			switch kind {
			case "preferred":
				how = kadm.ElectPreferredReplica
			case "unclean":
				how = kadm.ElectLiveReplica
			default:
				return fmt.Errorf("--type %q is not one of preferred, unclean", kind)
			}
			if all == (len(topics) > 0) {
				return errors.New("give --all, or --topic (with --partition to name some of its partitions): which partitions to elect leaders for")
			}
			if len(partitions) > 0 && len(topics) != 1 {
				return errors.New("--partition names partitions of one topic: give exactly one --topic with it")
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			var set kadm.TopicsSet
			if !all {
				set = kadm.TopicsSet{}
				if len(partitions) == 0 {
					meta, err := adm.Metadata(ctx, topics...)
					if err != nil {
						return conn.explain(err, "")
					}
					for _, t := range topics {
						td, ok := meta.Topics[t]
						if !ok || td.Err != nil {
							return explainTopicErr(t, kerr.UnknownTopicOrPartition, "", "elect leaders for")
						}
						set.Add(t, td.Partitions.Numbers()...)
					}
				} else {
					set.Add(topics[0], partitions...)
				}
			}
			res, err := adm.ElectLeaders(ctx, how, set)
			if err != nil {
				return conn.explain(err, "")
			}
			type row struct {
				topic     string
				partition int32
				result    string
				failed    bool
			}
			var rows []row
			for t, ps := range res {
				for p, r := range ps {
					rw := row{topic: t, partition: p, result: "elected"}
					switch {
					case r.Err == nil:
					case errors.Is(r.Err, kerr.ElectionNotNeeded):
						rw.result = "not needed"
						if r.ErrMessage != "" {
							rw.result += ": " + r.ErrMessage
						}
					default:
						rw.result, rw.failed = r.Err.Error(), true
						if r.ErrMessage != "" {
							rw.result += ": " + r.ErrMessage
						}
					}
					rows = append(rows, rw)
				}
			}
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].topic != rows[j].topic {
					return rows[i].topic < rows[j].topic
				}
				return rows[i].partition < rows[j].partition
			})
			out := cmd.OutOrStdout()
			if len(rows) == 0 {
				fmt.Fprintf(out, "every partition is led by its %s leader already: nothing to elect\n", map[string]string{"preferred": "preferred", "unclean": "live"}[kind])
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tRESULT")
			failed := 0
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", r.topic, r.partition, r.result)
				if r.failed {
					failed++
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d elections could not be done (see RESULT above)", failed, len(rows))
			}
			return nil
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringVar(&kind, "type", "preferred", "preferred or unclean")
	cmd.Flags().StringSliceVar(&topics, "topic", nil, "a topic whose partitions to elect leaders for (repeatable)")
	cmd.Flags().Int32SliceVar(&partitions, "partition", nil, "a partition of the --topic (repeatable; default: all of them)")
	cmd.Flags().BoolVar(&all, "all", false, "every partition of every topic")
	return cmd
}
