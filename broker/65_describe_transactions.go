package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTransactions: v0
//
// Behavior:
// * Describes transactional IDs this broker coordinates: state, producer
//   ID and epoch, timeout, start time and partitions (package txn).
//   NOT_COORDINATOR for IDs another broker coordinates,
//   TRANSACTIONAL_ID_NOT_FOUND for unknown ones.
// * ACLs: DESCRIBE on each transactional ID, else
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED for it.

func handleDescribeTransactions(c *conn, req *request) reply {
	r := req.Request.(*kmsg.DescribeTransactionsRequest)
	may := func(id string) bool {
		return c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, id)
	}
	return now(c.b.txns.DescribeTransactions(r, may))
}
