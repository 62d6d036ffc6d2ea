package main

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newTopicReassignCmd() *cobra.Command {
	var (
		conn connFlags
		rf   int
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "reassign TOPIC... --replication-factor N [--wait]",
		Short: "Change the replication factor of topics (a partition reassignment)",
		Long: `Move each partition of the topics to N replicas: existing replicas are kept
(the first N of them, the leader first, when shrinking) and new ones are
taken among the live brokers holding the fewest replicas of the topic. The
new replicas copy the partition from its leader and join its ISR; then the
reassignment completes. This is Kafka's partition reassignment
(AlterPartitionAssignments), so kafka-reassign-partitions works too.

With --wait, follow the reassignment until every partition has completed.
Raise min.insync.replicas with "chronik topic alter" afterwards if acks=all
writes should need more replicas.`,
		Example: `  chronik topic reassign orders --replication-factor 3 --wait
  chronik topic alter orders --config min.insync.replicas=2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, topics []string) error {
			if rf < 1 {
				return fmt.Errorf("--replication-factor %d: give the number of replicas each partition should have, 1 or more", rf)
			}
			ctx := cmd.Context()
			adm, err := conn.admin(ctx)
			if err != nil {
				return err
			}
			defer adm.Close()
			meta, err := adm.Metadata(ctx, topics...)
			if err != nil {
				return conn.explain(err, "")
			}
			var live []int32
			for _, b := range meta.Brokers {
				live = append(live, b.NodeID)
			}
			slices.Sort(live)
			if rf > len(live) {
				return fmt.Errorf("--replication-factor %d: the cluster has %d live brokers (%v)", rf, len(live), live)
			}
			var req kadm.AlterPartitionAssignmentsReq
			var errs []error
			for _, t := range topics {
				td, ok := meta.Topics[t]
				if !ok || td.Err != nil {
					errs = append(errs, explainTopicErr(t, kerr.UnknownTopicOrPartition, "", "reassign"))
					continue
				}
				count := map[int32]int{}
				for _, p := range td.Partitions {
					for _, r := range p.Replicas {
						count[r]++
					}
				}
				for _, p := range td.Partitions.Sorted() {
					target := reassignTarget(p.Leader, p.Replicas, live, rf, count)
					if !slices.Equal(target, p.Replicas) {
						req.Assign(t, p.Partition, target)
					}
				}
			}
			out := cmd.OutOrStdout()
			if len(req) > 0 {
				resps, err := adm.AlterPartitionAssignments(ctx, req)
				if err != nil {
					return conn.explain(err, "")
				}
				for _, r := range resps.Sorted() {
					if r.Err != nil {
						errs = append(errs, fmt.Errorf("reassign %s/%d: %v %s", r.Topic, r.Partition, r.Err, r.ErrMessage))
						continue
					}
					fmt.Fprintf(out, "partition %s/%d: moving to replicas %v\n", r.Topic, r.Partition, req[r.Topic][r.Partition])
				}
			} else {
				fmt.Fprintf(out, "every partition already has %d replicas\n", rf)
			}
			if err := errors.Join(errs...); err != nil || !wait {
				return err
			}
			return waitReassigned(cmd, adm, topics)
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().IntVar(&rf, "replication-factor", 0, "replicas each partition should have")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every partition's reassignment has completed")
	return cmd
}

// reassignTarget is the replica list of n replicas a partition moves to:
// its replicas kept in their order (the leader and the first others when
// some must go), new ones taken among the live brokers with the fewest
// replicas of the topic (count, kept up to date), in ID order on ties.
func reassignTarget(leader int32, replicas, live []int32, n int, count map[int32]int) []int32 {
	target := slices.Clone(replicas)
	if len(target) > n {
		target = target[:0:0]
		if slices.Contains(replicas, leader) {
			target = append(target, leader)
		}
		for _, r := range replicas {
			if len(target) < n && r != leader {
				target = append(target, r)
			}
		}
		for _, r := range replicas {
			if !slices.Contains(target, r) {
				count[r]--
			}
		}
	}
	for len(target) < n {
		cand := slices.DeleteFunc(slices.Clone(live), func(b int32) bool { return slices.Contains(target, b) })
		sort.SliceStable(cand, func(i, j int) bool { return count[cand[i]] < count[cand[j]] })
		target = append(target, cand[0])
		count[cand[0]]++
	}
	return target
}

// waitReassigned polls until no partition of the topics is being
// reassigned, printing what is still moving.
func waitReassigned(cmd *cobra.Command, adm *kadm.Client, topics []string) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	set := kadm.TopicsSet{}
	for _, t := range topics {
		set.Add(t)
	}
	last := ""
	for {
		rs, err := adm.ListPartitionReassignments(ctx, set)
		if err != nil {
			return err
		}
		sorted := rs.Sorted()
		if len(sorted) == 0 {
			fmt.Fprintln(out, "every reassignment has completed")
			return nil
		}
		r := sorted[0]
		msg := fmt.Sprintf("%d partitions still moving (e.g. %s/%d adding %v)", len(sorted), r.Topic, r.Partition, r.AddingReplicas)
		if msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
