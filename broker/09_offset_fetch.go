package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v0-10
//
// Behavior:
// * Returns the committed offsets (durable: a commit is applied only after
//   its fsync). Partitions without a commit, and unknown groups, get offset
//   -1 and no error, as Kafka.
// * Null topics (v2+) return every committed partition of the group.
// * v8+ fetch several groups in one request; v10 names topics by ID
//   (committed partitions of deleted topics are left out).
//
// Deviations:
// * RequireStable (v7+) never waits: there are no transactional commits.
// * MemberID and MemberEpoch (v9+, KIP-848) are checked only against
//   consumer-protocol groups: UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH.

func handleOffsetFetch(c *conn, req *request) reply {
	return now(c.b.groups.OffsetFetch(req.Request.(*kmsg.OffsetFetchRequest)))
}
