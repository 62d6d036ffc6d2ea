package broker

import "github.com/twmb/franz-go/pkg/kmsg"

// DescribeCluster: v0-1
//
// Behavior:
// * Returns this broker as the only broker and the controller.
// * Authorized operations are not computed (no ACLs).

func handleDescribeCluster(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeClusterRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = r.EndpointType
	resp.ClusterID = b.clusterID()
	resp.ControllerID = b.cfg.NodeID
	host, port := b.advertised()
	br := kmsg.NewDescribeClusterResponseBroker()
	br.NodeID, br.Host, br.Port = b.cfg.NodeID, host, port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{br}
	return now(resp)
}
