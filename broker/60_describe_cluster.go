package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeCluster: v0-2
//
// Behavior:
// * Standalone: this broker is the only broker and the controller.
// * In a cluster: the registered brokers from the controller's state (v2
//   with IncludeFencedBrokers also lists fenced ones, marked IsFenced) and
//   the Raft leader as the controller.
// * Authorized operations are not computed (no ACLs).

func handleDescribeCluster(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeClusterRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = r.EndpointType
	resp.ClusterID = b.clusterID()
	if b.ctl == nil {
		resp.ControllerID = b.cfg.NodeID
		host, port := b.advertised()
		br := kmsg.NewDescribeClusterResponseBroker()
		br.NodeID, br.Host, br.Port = b.cfg.NodeID, host, port
		resp.Brokers = []kmsg.DescribeClusterResponseBroker{br}
		return now(resp)
	}
	st := b.ctl.State()
	resp.ControllerID = b.ctl.LeaderID()
	for _, id := range st.BrokerIDs() {
		bi := st.Brokers[id]
		if bi.Fenced && !r.IncludeFencedBrokers {
			continue
		}
		br := kmsg.NewDescribeClusterResponseBroker()
		br.NodeID, br.Host, br.Port, br.IsFenced = bi.ID, bi.Host, bi.Port, bi.Fenced
		resp.Brokers = append(resp.Brokers, br)
	}
	return now(resp)
}
