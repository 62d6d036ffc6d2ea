package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
)

// DescribeCluster: v0-2
//
// Behavior:
// * Standalone: this broker is the only broker and the controller.
// * In a cluster: the registered brokers from the controller's state (v2
//   with IncludeFencedBrokers also lists fenced ones, marked IsFenced) and
//   the Raft leader as the controller.
// * ACLs: none needed, as in Kafka (Metadata lists the brokers to anyone
//   too). ClusterAuthorizedOperations is filled when asked: 0 without
//   DESCRIBE on the cluster, every operation when no authorizer is set.

func handleDescribeCluster(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeClusterRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = r.EndpointType
	resp.ClusterID = b.clusterID()
	if r.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = 0
		if c.allowedCluster(kmsg.ACLOperationDescribe) {
			resp.ClusterAuthorizedOperations = c.authorizedOperations(kmsg.ACLResourceTypeCluster, security.ClusterResourceName)
		}
	}
	if b.ctl == nil {
		resp.ControllerID = b.cfg.NodeID
		host, port := c.ln.host, c.ln.port
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
		br.NodeID, br.IsFenced = bi.ID, bi.Fenced
		br.Host, br.Port = endpoint(bi, c.ln.Name)
		resp.Brokers = append(resp.Brokers, br)
	}
	return now(resp)
}
