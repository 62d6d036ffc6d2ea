package broker

import (
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListPartitionReassignments: v0
//
// Behavior:
// * The reassignments in progress (AlterPartitionAssignments), of the
//   partitions named, or of every partition when Topics is null: the
//   replicas (target and leaving), and those joining and leaving.
// * ACLs: DESCRIBE on the cluster, else CLUSTER_AUTHORIZATION_FAILED.
//
// Deviations:
// * None beyond a standalone broker never having any.

func handleListPartitionReassignments(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ListPartitionReassignmentsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	if !c.allowedCluster(kmsg.ACLOperationDescribe) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return now(resp)
	}
	if b.ctl == nil {
		return now(resp)
	}
	st := b.ctl.State()
	want := map[string][]int32{}
	for _, rt := range r.Topics {
		want[rt.Topic] = rt.Partitions
	}
	var names []string
	for name := range st.Topics {
		if _, ok := want[name]; ok || r.Topics == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ti := st.Topics[name]
		rt := kmsg.NewListPartitionReassignmentsResponseTopic()
		rt.Topic = name
		for i, p := range ti.Partitions {
			if len(p.Adding) == 0 && len(p.Removing) == 0 {
				continue
			}
			if parts, ok := want[name]; ok && !slices.Contains(parts, int32(i)) {
				continue
			}
			rp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
			rp.Partition, rp.Replicas, rp.AddingReplicas, rp.RemovingReplicas = int32(i), p.Replicas, p.Adding, p.Removing
			if rp.AddingReplicas == nil {
				rp.AddingReplicas = []int32{}
			}
			if rp.RemovingReplicas == nil {
				rp.RemovingReplicas = []int32{}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		if len(rt.Partitions) > 0 {
			resp.Topics = append(resp.Topics, rt)
		}
	}
	return now(resp)
}
