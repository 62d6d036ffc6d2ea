package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "List, describe, delete consumer groups and reset their offsets",
	}
	cmd.AddCommand(newGroupListCmd(), newGroupDescribeCmd(), newGroupDeleteCmd(), newGroupResetCmd())
	return cmd
}

func newGroupListCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			gs, err := adm.ListGroups(ctx)
			if err != nil {
				return conn.explain(err, "")
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL TYPE")
			for _, g := range gs.Sorted() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
			}
			return tw.Flush()
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

func newGroupDescribeCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:     "describe GROUP...",
		Short:   "Show a group's state, members, committed offsets and lag",
		Example: `  chronik group describe orders-service`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			lags, err := adm.Lag(ctx, groups...)
			if err != nil {
				return conn.explain(err, "")
			}
			out := cmd.OutOrStdout()
			var errs []error
			for _, name := range groups {
				l, ok := lags[name]
				if !ok || l.DescribeErr != nil {
					errs = append(errs, fmt.Errorf("group %q: %w", name, orErr(l.DescribeErr, errors.New("no answer"))))
					continue
				}
				if l.FetchErr != nil {
					errs = append(errs, fmt.Errorf("group %q offsets: %w", name, l.FetchErr))
				}
				fmt.Fprintf(out, "group %s: state %s, protocol %s/%s, %d members\n", l.Group, l.State, l.ProtocolType, l.Protocol, len(l.Members))
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				if len(l.Members) > 0 {
					fmt.Fprintln(tw, "MEMBER\tINSTANCE\tCLIENT\tHOST\tASSIGNED")
					for _, m := range l.Members {
						inst := "-"
						if m.InstanceID != nil {
							inst = *m.InstanceID
						}
						var parts []string
						if ca, ok := m.Assigned.AsConsumer(); ok {
							for _, t := range ca.Topics {
								parts = append(parts, fmt.Sprintf("%s%v", t.Topic, t.Partitions))
							}
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.MemberID, inst, m.ClientID, m.ClientHost, strings.Join(parts, " "))
					}
				}
				fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
				for _, ml := range l.Lag.Sorted() {
					if ml.Err != nil {
						fmt.Fprintf(tw, "%s\t%d\t%d\t-\t%v\n", ml.Topic, ml.Partition, ml.Commit.At, ml.Err)
						continue
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", ml.Topic, ml.Partition, ml.Commit.At, ml.End.Offset, ml.Lag)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

func orErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

func newGroupDeleteCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete empty consumer groups and their committed offsets",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, groups []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			resps, err := adm.DeleteGroups(ctx, groups...)
			if err != nil {
				return conn.explain(err, "")
			}
			var errs []error
			for _, g := range groups {
				r, ok := resps[g]
				switch {
				case !ok:
					errs = append(errs, fmt.Errorf("group %q: no answer", g))
				case r.Err != nil:
					errs = append(errs, fmt.Errorf("delete group %q: %w", g, r.Err))
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted group %q\n", g)
				}
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

func newGroupResetCmd() *cobra.Command {
	var (
		conn       connFlags
		topics     []string
		toEarliest bool
		toLatest   bool
		toDatetime string
		toOffset   int64
		dryRun     bool
	)
	cmd := &cobra.Command{
		Use:   "reset-offsets GROUP --topic T... (--to-earliest | --to-latest | --to-datetime RFC3339 | --to-offset N)",
		Short: "Reset an empty group's committed offsets",
		Example: `  chronik group reset-offsets orders-service --topic orders --to-earliest
  chronik group reset-offsets orders-service --topic orders --to-datetime 2026-01-02T15:04:05Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			n := 0
			for _, set := range []bool{toEarliest, toLatest, toDatetime != "", cmd.Flags().Changed("to-offset")} {
				if set {
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset")
			}
			if len(topics) == 0 {
				return errors.New("give at least one --topic")
			}
			var at time.Time
			if toDatetime != "" {
				var err error
				if at, err = time.Parse(time.RFC3339Nano, toDatetime); err != nil {
					return fmt.Errorf("--to-datetime %q: want RFC3339, e.g. 2026-01-02T15:04:05Z", toDatetime)
				}
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			dgs, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return conn.explain(err, "")
			}
			if dg, ok := dgs[group]; ok && dg.Err == nil && dg.State != "Empty" && dg.State != "Dead" {
				return fmt.Errorf("group %q is %s with %d active members: stop its consumers before resetting offsets", group, dg.State, len(dg.Members))
			}
			for _, t := range topics {
				if _, err := conn.topicPartitions(ctx, adm, t); err != nil {
					return err
				}
			}
			var listed kadm.ListedOffsets
			switch {
			case toEarliest:
				listed, err = adm.ListStartOffsets(ctx, topics...)
			case toLatest:
				listed, err = adm.ListEndOffsets(ctx, topics...)
			case toDatetime != "":
				listed, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topics...)
			default:
				var starts kadm.ListedOffsets
				if starts, err = adm.ListStartOffsets(ctx, topics...); err == nil {
					var ends kadm.ListedOffsets
					if ends, err = adm.ListEndOffsets(ctx, topics...); err == nil {
						listed = starts
						for t, ps := range listed {
							for p, o := range ps {
								e, _ := ends.Lookup(t, p)
								o.Offset = min(max(toOffset, o.Offset), e.Offset)
								listed[t][p] = o
							}
						}
					}
				}
			}
			if err != nil {
				return conn.explain(err, "")
			}
			if err := listed.Error(); err != nil {
				return conn.explain(err, "")
			}
			offsets := listed.Offsets()
			if !dryRun {
				resp, err := adm.CommitOffsets(ctx, group, offsets)
				if err != nil {
					return conn.explain(err, "")
				}
				if err := resp.Error(); err != nil {
					return fmt.Errorf("commit offsets for group %q: %w", group, err)
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITION\tNEW OFFSET")
			var rows []kadm.Offset
			offsets.Each(func(o kadm.Offset) { rows = append(rows, o) })
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].Topic != rows[j].Topic {
					return rows[i].Topic < rows[j].Topic
				}
				return rows[i].Partition < rows[j].Partition
			})
			for _, o := range rows {
				fmt.Fprintf(tw, "%s\t%d\t%d\n", o.Topic, o.Partition, o.At)
			}
			if dryRun {
				fmt.Fprintln(tw, "(dry run: nothing committed)")
			}
			return tw.Flush()
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "topic whose offsets to reset (repeatable)")
	cmd.Flags().BoolVar(&toEarliest, "to-earliest", false, "reset to each partition's log start")
	cmd.Flags().BoolVar(&toLatest, "to-latest", false, "reset to each partition's end")
	cmd.Flags().StringVar(&toDatetime, "to-datetime", "", "reset to the first offset at or after this RFC3339 time")
	cmd.Flags().Int64Var(&toOffset, "to-offset", 0, "reset to this offset (clamped to each partition's start and end)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the new offsets without committing them")
	return cmd
}
