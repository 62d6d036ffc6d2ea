package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster",
	}
	cmd.AddCommand(newClusterStatusCmd(), newClusterElectLeadersCmd())
	return cmd
}

// clusterStatus is what `chronik cluster status` reports (also its --output
// json document).
type clusterStatus struct {
	ClusterID  string          `json:"cluster_id"`
	Controller int32           `json:"controller"` // -1: no controller leader
	Brokers    []brokerStatus  `json:"brokers"`
	Partitions int             `json:"partitions"`
	Under      []partitionInfo `json:"under_replicated"`
	Offline    []partitionInfo `json:"offline"`
}

type brokerStatus struct {
	ID       int32  `json:"id"`
	Address  string `json:"address"`
	State    string `json:"state"` // live or fenced
	Leads    int    `json:"leads"`
	Replicas int    `json:"replicas"`
}

type partitionInfo struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
}

func newClusterStatusCmd() *cobra.Command {
	var (
		conn   connFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Brokers, the controller, and partitions that are under-replicated or offline",
		Long: `Show every registered broker (live or fenced), the controller leader, how
many partitions each broker leads and holds, and the partitions whose in-sync
replicas are fewer than their replicas (under-replicated) or that have no
leader (offline).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q is not one of table, json", output)
			}
			ctx := cmd.Context()
			cl, err := conn.connect(ctx)
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := readClusterStatus(ctx, cl)
			if err != nil {
				return conn.explain(err, "")
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return writeClusterStatus(cmd.OutOrStdout(), st)
		},
	}
	conn.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func readClusterStatus(ctx context.Context, cl *kgo.Client) (*clusterStatus, error) {
	dreq := kmsg.NewPtrDescribeClusterRequest()
	dreq.IncludeFencedBrokers = true
	dresp, err := dreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(dresp.ErrorCode); err != nil {
		return nil, err
	}
	mreq := kmsg.NewPtrMetadataRequest()
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	st := &clusterStatus{ClusterID: dresp.ClusterID, Controller: dresp.ControllerID}
	byID := map[int32]*brokerStatus{}
	for _, b := range dresp.Brokers {
		state := "live"
		if b.IsFenced {
			state = "fenced"
		}
		st.Brokers = append(st.Brokers, brokerStatus{ID: b.NodeID, Address: net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), State: state})
	}
	sort.Slice(st.Brokers, func(i, j int) bool { return st.Brokers[i].ID < st.Brokers[j].ID })
	for i := range st.Brokers {
		byID[st.Brokers[i].ID] = &st.Brokers[i]
	}
	sort.Slice(mresp.Topics, func(i, j int) bool { return *mresp.Topics[i].Topic < *mresp.Topics[j].Topic })
	for _, t := range mresp.Topics {
		for _, p := range t.Partitions {
			st.Partitions++
			if b := byID[p.Leader]; b != nil && p.Leader >= 0 {
				b.Leads++
			}
			for _, r := range p.Replicas {
				if b := byID[r]; b != nil {
					b.Replicas++
				}
			}
			pi := partitionInfo{Topic: *t.Topic, Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR}
			switch {
			case p.Leader < 0:
				st.Offline = append(st.Offline, pi)
			case len(p.ISR) < len(p.Replicas):
				st.Under = append(st.Under, pi)
			}
		}
	}
	return st, nil
}

func writeClusterStatus(out io.Writer, st *clusterStatus) error {
	controller := "none (no quorum)"
	if st.Controller >= 0 {
		controller = fmt.Sprintf("broker %d", st.Controller)
	}
	fmt.Fprintf(out, "Cluster: %s  Controller: %s\n\n", st.ClusterID, controller)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BROKER\tADDRESS\tSTATE\tLEADS\tREPLICAS")
	for _, b := range st.Brokers {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\n", b.ID, b.Address, b.State, b.Leads, b.Replicas)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nPartitions: %d, under-replicated: %d, offline: %d\n", st.Partitions, len(st.Under), len(st.Offline))
	for _, sec := range []struct {
		title string
		ps    []partitionInfo
	}{{"Under-replicated", st.Under}, {"Offline", st.Offline}} {
		if len(sec.ps) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n%s:\n", sec.title)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tISR")
		for _, p := range sec.ps {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%v\t%v\n", p.Topic, p.Partition, p.Leader, ints(p.Replicas), ints(p.ISR))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func ints(v []int32) string {
	s := slices.Clone(v)
	b := []byte{'['}
	for i, x := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(x), 10)
	}
	return string(append(b, ']'))
}
