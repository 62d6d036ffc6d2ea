package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// coordinated wraps a group API's handler: in a cluster, a request for a
// group this broker does not coordinate is answered NOT_COORDINATOR (or
// COORDINATOR_NOT_AVAILABLE while the coordinator is fenced or this broker
// is cut off) without touching local state; clients look the coordinator up
// again. A request naming several groups is run only when this broker
// coordinates all of them; otherwise each group gets the error of the first
// group it does not coordinate, and clients, which send one request per
// coordinator, retry after FindCoordinator.
func coordinated(h handler) handler {
	return func(c *conn, req *request) reply {
		b := c.b
		if b.ctl == nil {
			return h(c, req)
		}
		var groups []string
		switch r := req.Request.(type) {
		case *kmsg.OffsetCommitRequest:
			groups = []string{r.Group}
		case *kmsg.OffsetFetchRequest:
			if r.Version >= 8 {
				for _, g := range r.Groups {
					groups = append(groups, g.Group)
				}
			} else {
				groups = []string{r.Group}
			}
		case *kmsg.JoinGroupRequest:
			groups = []string{r.Group}
		case *kmsg.HeartbeatRequest:
			groups = []string{r.Group}
		case *kmsg.LeaveGroupRequest:
			groups = []string{r.Group}
		case *kmsg.SyncGroupRequest:
			groups = []string{r.Group}
		case *kmsg.DescribeGroupsRequest:
			groups = r.Groups
		case *kmsg.DeleteGroupsRequest:
			groups = r.Groups
		case *kmsg.OffsetDeleteRequest:
			groups = []string{r.Group}
		case *kmsg.ConsumerGroupHeartbeatRequest:
			groups = []string{r.Group}
		case *kmsg.ConsumerGroupDescribeRequest:
			groups = r.Groups
		}
		var code *kerr.Error
		for _, g := range groups {
			if code = b.coordinates(g); code != nil {
				break
			}
		}
		if code == nil {
			return h(c, req)
		}
		return now(notCoordinatorResponse(req.Request, code))
	}
}

// notCoordinatorResponse answers every group and partition of r with code.
func notCoordinatorResponse(r kmsg.Request, code *kerr.Error) kmsg.Response {
	resp := r.ResponseKind()
	switch r := r.(type) {
	case *kmsg.OffsetCommitRequest:
		out := resp.(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code.Code
				st.Partitions = append(st.Partitions, sp)
			}
			out.Topics = append(out.Topics, st)
		}
	case *kmsg.OffsetFetchRequest:
		out := resp.(*kmsg.OffsetFetchResponse)
		out.ErrorCode = code.Code
		for _, g := range r.Groups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.JoinGroupRequest:
		resp.(*kmsg.JoinGroupResponse).ErrorCode = code.Code
	case *kmsg.HeartbeatRequest:
		resp.(*kmsg.HeartbeatResponse).ErrorCode = code.Code
	case *kmsg.LeaveGroupRequest:
		resp.(*kmsg.LeaveGroupResponse).ErrorCode = code.Code
	case *kmsg.SyncGroupRequest:
		resp.(*kmsg.SyncGroupResponse).ErrorCode = code.Code
	case *kmsg.DescribeGroupsRequest:
		out := resp.(*kmsg.DescribeGroupsResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.DeleteGroupsRequest:
		out := resp.(*kmsg.DeleteGroupsResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	case *kmsg.OffsetDeleteRequest:
		resp.(*kmsg.OffsetDeleteResponse).ErrorCode = code.Code
	case *kmsg.ConsumerGroupHeartbeatRequest:
		resp.(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode = code.Code
	case *kmsg.ConsumerGroupDescribeRequest:
		out := resp.(*kmsg.ConsumerGroupDescribeResponse)
		for _, g := range r.Groups {
			rg := kmsg.NewConsumerGroupDescribeResponseGroup()
			rg.Group, rg.ErrorCode = g, code.Code
			out.Groups = append(out.Groups, rg)
		}
	}
	resp.SetVersion(r.GetVersion())
	return resp
}
