package broker

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-10
//
// Behavior:
// * Answered only after the commit is durable: the partitions' offsets are
//   one record batch appended to the group's partition of
//   __consumer_offsets through the produce path (concurrent commits share
//   WAL group commits), fsynced, and in a cluster covered by the
//   partition's high watermark (min.insync.replicas). NOT_COORDINATOR when
//   leadership of the partition moves meanwhile; COORDINATOR_NOT_AVAILABLE
//   when the partition has too few in-sync replicas.
// * Generation -1 (and v0) commits into a group with no members, creating
//   it if needed (admin and standalone consumers). Otherwise the member and
//   generation must match: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//   FENCED_INSTANCE_ID (v7+), REBALANCE_IN_PROGRESS while the group is
//   CompletingRebalance. Commits are accepted during PreparingRebalance, as
//   Kafka does, so cooperative consumers can commit what they revoke.
// * Groups of the KIP-848 consumer protocol: Generation is the member
//   epoch. UNKNOWN_MEMBER_ID for a member not in the group (including
//   generation -1 commits while it has members), FENCED_MEMBER_EPOCH for an
//   epoch ahead of the member's, STALE_MEMBER_EPOCH for one older than its
//   previous epoch (the previous one is accepted: a member commits what it
//   revokes before moving to the new epoch, as Kafka 4.3 allows).
// * Unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION (v10:
//   UNKNOWN_TOPIC_ID); metadata over 4096 bytes gets
//   OFFSET_METADATA_TOO_LARGE.
//
// Deviations:
// * RetentionTimeMillis (v2-4) and the v1 per-partition timestamp are
//   ignored: offsets.retention.minutes applies to every commit.

func handleOffsetCommit(c *conn, req *request) reply {
	resp, wait := c.b.groups.OffsetCommit(req.Request.(*kmsg.OffsetCommitRequest))
	return waitThen(resp, wait)
}
