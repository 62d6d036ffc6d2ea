package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newTopicCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter, delete, restore and reassign topics",
	}
	cmd.AddCommand(newTopicCreateCmd(), newTopicListCmd(), newTopicDescribeCmd(), newTopicAlterCmd(), newTopicDeleteCmd(),
		newTopicRestoreCmd(), newTopicReassignCmd())
	return cmd
}

func newTopicCreateCmd() *cobra.Command {
	var (
		conn       connFlags
		partitions int32
		rf         int16
		configs    []string
	)
	cmd := &cobra.Command{
		Use:   "create TOPIC... [--partitions N] [--replication-factor N] [--config k=v ...]",
		Short: "Create topics",
		Example: `  chronik topic create orders --partitions 6 --config retention.ms=86400000
  chronik topic create a b c --partitions 1`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if partitions == 0 || partitions < -1 {
				return fmt.Errorf("--partitions %d: give 1 or more, or -1 for the broker's default", partitions)
			}
			if rf == 0 || rf < -1 {
				return fmt.Errorf("--replication-factor %d: give 1 or more, or -1 for the broker's default", rf)
			}
			kvs, err := parseKVs("config", configs)
			if err != nil {
				return err
			}
			cfg := make(map[string]*string, len(kvs))
			for _, kv := range kvs {
				cfg[kv[0]] = kadm.StringPtr(kv[1])
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			resps, err := adm.CreateTopics(ctx, partitions, rf, cfg, topics...)
			if err != nil {
				return conn.explain(err, "")
			}
			var errs []error
			for _, r := range resps.Sorted() {
				if r.Err != nil {
					errs = append(errs, explainTopicErr(r.Topic, r.Err, r.ErrMessage, "create"))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created topic %q with %d partitions, replication factor %d\n", r.Topic, r.NumPartitions, r.ReplicationFactor)
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().Int32Var(&partitions, "partitions", -1, "number of partitions (-1: the broker's default)")
	cmd.Flags().Int16Var(&rf, "replication-factor", -1, "replicas per partition (-1: the broker's default)")
	cmd.Flags().StringArrayVar(&configs, "config", nil, "topic config key=value, Kafka names (repeatable), e.g. retention.ms=86400000")
	return cmd
}

func newTopicListCmd() *cobra.Command {
	var (
		conn     connFlags
		internal bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics with their partition count and replication factor",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			tds, err := adm.ListTopicsWithInternal(ctx)
			if err != nil {
				return conn.explain(err, "")
			}
			if !internal {
				tds.FilterInternal()
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICATION")
			for _, name := range tds.Names() {
				td := tds[name]
				fmt.Fprintf(tw, "%s\t%d\t%d\n", name, len(td.Partitions), td.Partitions.NumReplicas())
			}
			return tw.Flush()
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics")
	return cmd
}

func newTopicDescribeCmd() *cobra.Command {
	var (
		conn       connFlags
		allConfigs bool
	)
	cmd := &cobra.Command{
		Use:   "describe TOPIC...",
		Short: "Show partitions, leaders, offsets and configs of topics",
		Long: `Show each partition's leader, replicas, in-sync replicas and start and end
offsets, and the topic's configs set on the topic (--all-configs adds the
defaults).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			return describeTopics(ctx, &conn, adm, topics, allConfigs, cmd.OutOrStdout())
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().BoolVar(&allConfigs, "all-configs", false, "also list configs left at their defaults")
	return cmd
}

func describeTopics(ctx context.Context, conn *connFlags, adm *kadm.Client, topics []string, allConfigs bool, out io.Writer) error {
	tds, err := adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return conn.explain(err, "")
	}
	var errs []error
	var found []string
	for _, t := range topics {
		td, ok := tds[t]
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %q does not exist: see `chronik topic list`", t))
		case td.Err != nil:
			errs = append(errs, explainTopicErr(t, td.Err, "", "describe"))
		default:
			found = append(found, t)
		}
	}
	if len(found) == 0 {
		return errors.Join(errs...)
	}
	starts, err := adm.ListStartOffsets(ctx, found...)
	if err != nil {
		return conn.explain(err, "")
	}
	ends, err := adm.ListEndOffsets(ctx, found...)
	if err != nil {
		return conn.explain(err, "")
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, found...)
	if err != nil {
		return conn.explain(err, "")
	}

	for i, t := range found {
		if i > 0 {
			fmt.Fprintln(out)
		}
		rc, err := rcs.On(t, nil)
		if err == nil {
			err = rc.Err
		}
		if err := writeTopic(out, tds[t], starts, ends, rc.Configs, err, allConfigs); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

func writeTopic(out io.Writer, td kadm.TopicDetail, starts, ends kadm.ListedOffsets, configs []kadm.Config, configErr error, allConfigs bool) error {
	t := td.Topic
	fmt.Fprintf(out, "Topic: %s  ID: %s  Partitions: %d  Replication: %d\n", t, td.ID, len(td.Partitions), td.Partitions.NumReplicas())
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND\tERROR")
	for _, pd := range td.Partitions.Sorted() {
		perr := ""
		if pd.Err != nil {
			perr = pd.Err.Error()
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", pd.Partition, pd.Leader, ids(pd.Replicas), ids(pd.ISR),
			offsetText(starts, t, pd.Partition), offsetText(ends, t, pd.Partition), perr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if configErr != nil {
		_, err := fmt.Fprintf(out, "Configs: unavailable (%v)\n", configErr)
		return err
	}
	cfgs := slices.Clone(configs)
	sort.Slice(cfgs, func(i, j int) bool { return cfgs[i].Key < cfgs[j].Key })
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	shown := 0
	for _, c := range cfgs {
		if !allConfigs && c.Source != kmsg.ConfigSourceDynamicTopicConfig {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(tw, "Configs:")
		}
		shown++
		v := c.MaybeValue()
		if c.Sensitive {
			v = "(sensitive)"
		}
		fmt.Fprintf(tw, "  %s=%s\t(%s)\n", c.Key, v, configSource(c.Source))
	}
	if shown == 0 {
		fmt.Fprintln(tw, "Configs: all defaults (see --all-configs)")
	}
	return tw.Flush()
}

func offsetText(l kadm.ListedOffsets, t string, p int32) string {
	o, ok := l.Lookup(t, p)
	if !ok || o.Err != nil {
		return "?"
	}
	return fmt.Sprint(o.Offset)
}

func ids(s []int32) string {
	parts := make([]string, len(s))
	for i, id := range s {
		parts[i] = fmt.Sprint(id)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func configSource(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "set on topic"
	case kmsg.ConfigSourceDefaultConfig:
		return "default"
	case kmsg.ConfigSourceStaticBrokerConfig, kmsg.ConfigSourceDynamicDefaultBrokerConfig, kmsg.ConfigSourceDynamicBrokerConfig:
		return "broker"
	}
	return strings.ToLower(s.String())
}

func newTopicAlterCmd() *cobra.Command {
	var (
		conn       connFlags
		configs    []string
		deletes    []string
		partitions int
	)
	cmd := &cobra.Command{
		Use:   "alter TOPIC... [--config k=v ...] [--delete-config k ...] [--partitions N]",
		Short: "Change topic configs and add partitions",
		Long: `Change topic configs (only the keys given; others are kept) and raise the
partition count to --partitions. Partitions can be added, never removed.`,
		Example: `  chronik topic alter orders --config retention.ms=3600000 --partitions 12
  chronik topic alter orders --delete-config retention.ms`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			kvs, err := parseKVs("config", configs)
			if err != nil {
				return err
			}
			changePartitions := cmd.Flags().Changed("partitions")
			if len(kvs) == 0 && len(deletes) == 0 && !changePartitions {
				return errors.New("nothing to alter: give --config k=v, --delete-config k or --partitions N")
			}
			if changePartitions && partitions < 1 {
				return fmt.Errorf("--partitions %d: give the new total number of partitions, 1 or more", partitions)
			}
			alters := make([]kadm.AlterConfig, 0, len(kvs)+len(deletes))
			for _, kv := range kvs {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv[0], Value: kadm.StringPtr(kv[1])})
			}
			for _, k := range deletes {
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}

			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			out := cmd.OutOrStdout()
			var errs []error
			if changePartitions {
				tds, err := adm.ListTopics(ctx, topics...)
				if err != nil {
					return conn.explain(err, "")
				}
				var grow []string
				for _, t := range topics {
					td, ok := tds[t]
					switch {
					case !ok || td.Err != nil:
						errs = append(errs, explainTopicErr(t, kerr.UnknownTopicOrPartition, "", "alter"))
					case len(td.Partitions) > partitions:
						errs = append(errs, fmt.Errorf("topic %q has %d partitions: partitions can be added but not removed", t, len(td.Partitions)))
					case len(td.Partitions) == partitions:
						fmt.Fprintf(out, "topic %q already has %d partitions\n", t, partitions)
					default:
						grow = append(grow, t)
					}
				}
				if len(grow) > 0 {
					resps, err := adm.UpdatePartitions(ctx, partitions, grow...)
					if err != nil {
						return conn.explain(err, "")
					}
					for _, r := range resps.Sorted() {
						if r.Err != nil {
							errs = append(errs, explainTopicErr(r.Topic, r.Err, r.ErrMessage, "alter"))
							continue
						}
						fmt.Fprintf(out, "topic %q now has %d partitions\n", r.Topic, partitions)
					}
				}
			}
			if len(alters) > 0 {
				resps, err := adm.AlterTopicConfigs(ctx, alters, topics...)
				if err != nil {
					return conn.explain(err, "")
				}
				for _, r := range resps {
					if r.Err != nil {
						errs = append(errs, explainTopicErr(r.Name, r.Err, r.ErrMessage, "alter"))
						continue
					}
					fmt.Fprintf(out, "altered configs of topic %q\n", r.Name)
				}
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringArrayVar(&configs, "config", nil, "set topic config key=value (repeatable)")
	cmd.Flags().StringArrayVar(&deletes, "delete-config", nil, "return a topic config to its default (repeatable)")
	cmd.Flags().IntVar(&partitions, "partitions", 0, "new total number of partitions")
	return cmd
}

func newTopicDeleteCmd() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "delete TOPIC...",
		Short: "Delete topics and all their records",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			resps, err := adm.DeleteTopics(ctx, topics...)
			if err != nil {
				return conn.explain(err, "")
			}
			var errs []error
			for _, r := range resps.Sorted() {
				if r.Err != nil {
					errs = append(errs, explainTopicErr(r.Topic, r.Err, r.ErrMessage, "delete"))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %q\n", r.Topic)
			}
			return errors.Join(errs...)
		},
	}
	conn.register(cmd.Flags())
	return cmd
}

// explainTopicErr names the topic, what went wrong and what to do about it.
func explainTopicErr(topic string, err error, msg, op string) error {
	detail := ""
	if msg != "" {
		detail = ": " + msg
	}
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		return fmt.Errorf("topic %q already exists: change it with `chronik topic alter %s`", topic, topic)
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		if op == "create" {
			break
		}
		return fmt.Errorf("topic %q does not exist: see `chronik topic list`", topic)
	case errors.Is(err, kerr.InvalidPartitions):
		return fmt.Errorf("topic %q: invalid --partitions%s", topic, detail)
	case errors.Is(err, kerr.InvalidReplicationFactor):
		return fmt.Errorf("topic %q: invalid --replication-factor%s: it cannot exceed the number of brokers", topic, detail)
	case errors.Is(err, kerr.InvalidReplicaAssignment):
		return fmt.Errorf("topic %q: invalid replica assignment%s", topic, detail)
	case errors.Is(err, kerr.InvalidConfig), errors.Is(err, kerr.InvalidRequest):
		return fmt.Errorf("topic %q: invalid --config%s: names and values follow Kafka's topic configs, e.g. retention.ms=86400000", topic, detail)
	case errors.Is(err, kerr.InvalidTopicException):
		return fmt.Errorf("topic %q: invalid name%s: use letters, digits, '.', '_' and '-', at most 249 characters", topic, detail)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("topic %q: not authorized to %s it%s: an admin can allow it with `chronik acl add --allow-principal User:NAME %s`",
			topic, op, detail, aclGrantFor(op, topic))
	}
	return fmt.Errorf("%s topic %q: %w%s", op, topic, err, detail)
}

// aclGrantFor is the chronik acl add arguments that allow a topic
// command.
func aclGrantFor(op, topic string) string {
	switch op {
	case "create", "delete", "alter", "describe":
		return "--operation " + op + " --topic " + topic
	case "reassign":
		return "--operation alter --cluster"
	}
	return "--operation describe --topic " + topic
}
