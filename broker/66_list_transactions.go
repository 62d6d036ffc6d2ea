package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListTransactions: v0-1
//
// Behavior:
// * Lists the transactional IDs this broker coordinates, filtered by
//   state, producer ID and (v1, KIP-994) duration; clients ask every
//   broker. Unknown state filters are echoed in UnknownStateFilters.
// * ACLs: only transactional IDs with DESCRIBE are listed.

func handleListTransactions(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ListTransactionsRequest)
	may := func(id string) bool {
		return c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTransactionalId, id)
	}
	return now(c.b.txns.ListTransactions(r, may))
}
