package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-6
//
// Behavior:
// * Standalone, this broker coordinates every group and transactional ID.
//   In a cluster a group's coordinator is the leader of its partition of
//   __consumer_offsets, abs(javaStringHash(group)) % partitions
//   (cluster_groups.go), and a transactional ID's (type 1) the leader of
//   its partition of __transaction_state; each topic is created on the
//   first lookup, which (like a lookup while the partition has no leader)
//   answers COORDINATOR_NOT_AVAILABLE.
// * v4+ answer every key of the batch (KIP-699).
// * ACLs: DESCRIBE on a group key's group, checked first, else
//   GROUP_AUTHORIZATION_FAILED for that key; DESCRIBE on a transactional
//   ID, else TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//
// Deviations:
// * Share groups are not supported: type 2 and unknown types get
//   INVALID_REQUEST.

func handleFindCoordinator(c *conn, req *request) reply {
	r := req.Request.(*kmsg.FindCoordinatorRequest)
	resp := r.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := c.ln.host, c.ln.port
	answer := func(key string) (node int32, h string, p int32, code int16, msg *string) {
		switch r.CoordinatorType {
		case 0:
			if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeGroup, key) {
				return -1, "", -1, kerr.GroupAuthorizationFailed.Code, nil
			}
			if key == "" && r.Version < 4 {
				m := "group id is empty"
				return -1, "", -1, kerr.InvalidGroupID.Code, &m
			}
			if c.b.ctl != nil {
				bi, err := c.b.groupCoordinator(key)
				if err != nil {
					m := "the group's coordinator is not available"
					return -1, "", -1, err.Code, &m
				}
				h, p := endpoint(bi, c.ln.Name)
				return bi.ID, h, p, 0, nil
			}
			return c.b.cfg.NodeID, host, port, 0, nil
		case 1:
			if !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, key) {
				return -1, "", -1, kerr.TransactionalIDAuthorizationFailed.Code, nil
			}
			if c.b.ctl != nil {
				bi, err := c.b.internalCoordinator(c.b.txnStateInternal(), key)
				if err != nil {
					m := "the transaction coordinator is not available"
					return -1, "", -1, err.Code, &m
				}
				h, p := endpoint(bi, c.ln.Name)
				return bi.ID, h, p, 0, nil
			}
			return c.b.cfg.NodeID, host, port, 0, nil
		default:
			m := "unsupported coordinator type"
			return -1, "", -1, kerr.InvalidRequest.Code, &m
		}
	}
	if r.Version < 4 {
		resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(r.CoordinatorKey)
		return now(resp)
	}
	for _, key := range r.CoordinatorKeys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key = key
		rc.NodeID, rc.Host, rc.Port, rc.ErrorCode, rc.ErrorMessage = answer(key)
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	return now(resp)
}
