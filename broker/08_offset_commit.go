package broker

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	r := req.Request.(*kmsg.OffsetCommitRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)

	var slots []*kmsg.OffsetCommitResponseTopicPartition
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			st.Partitions[j] = kmsg.NewOffsetCommitResponseTopicPartition()
			st.Partitions[j].Partition = rt.Partitions[j].Partition
		}
	}
	failAll := func(code *kerr.Error) reply {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code.Code
			}
		}
		return now(resp)
	}
	generation := r.Generation
	if r.Version == 0 {
		generation = -1
	}
	nowMs := time.Now().UnixMilli()
	entries := make([]offsetEntry, 0, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		var t *topic
		name := rt.Topic
		if r.Version >= 10 {
			t = b.lookupTopicID(rt.TopicID)
			if t != nil {
				name = t.name
			}
		} else {
			t = b.lookupTopic(rt.Topic)
		}
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &resp.Topics[i].Partitions[j]
			switch {
			case t == nil && r.Version >= 10:
				sp.ErrorCode = kerr.UnknownTopicID.Code
				continue
			case b.partitionOf(t, rp.Partition) == nil:
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			case rp.Metadata != nil && len(*rp.Metadata) > maxOffsetMetadata:
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			v := committedOffset{offset: rp.Offset, leaderEpoch: -1, commitTime: nowMs}
			if r.Version >= 6 {
				v.leaderEpoch = rp.LeaderEpoch
			}
			if rp.Metadata != nil {
				v.metadata = *rp.Metadata
			}
			entries = append(entries, offsetEntry{tp: topicPart{name, rp.Partition}, value: v})
			slots = append(slots, sp)
		}
	}

	ctx, cancel := context.WithTimeout(c.ctx, offsetWriteTimeout)
	defer cancel()
	var refused *kerr.Error
	w, _, err := b.groups.appendOffsets(ctx, r.Group, func() (*group, []offsetEntry, error) {
		g, gerr := b.groups.commitCheck(r.Group, r.MemberID, r.InstanceID, generation, entries)
		if gerr != nil {
			refused = gerr
			return nil, nil, gerr
		}
		return g, entries, nil
	})
	if err != nil {
		if refused != nil {
			return failAll(refused)
		}
		for _, sp := range slots {
			sp.ErrorCode = commitWriteErr(err).Code
		}
		return now(resp)
	}
	// The entries are applied once durable, whether or not this reply
	// ever runs (the connection may be gone); the reply waits for that.
	return func() kmsg.Response {
		ctx, cancel := b.ctxUntilClose(context.Background())
		defer cancel()
		ctx, cancelTimeout := context.WithTimeout(ctx, offsetWriteTimeout)
		defer cancelTimeout()
		if err := w.wait(ctx); err != nil {
			code := commitWriteErr(err)
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				code = kerr.CoordinatorNotAvailable // the broker is closing
			}
			for _, sp := range slots {
				sp.ErrorCode = code.Code
			}
		}
		return resp
	}
}

// commitWriteErr maps an append failure to a retriable commit error, as
// Kafka does.
func commitWriteErr(err error) *kerr.Error {
	switch code := kafkaErr(err); code {
	case kerr.RequestTimedOut, kerr.NotCoordinator:
		return code
	case kerr.NotLeaderForPartition:
		return kerr.NotCoordinator
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return kerr.InvalidCommitOffsetSize
	default:
		return kerr.CoordinatorNotAvailable
	}
}

// commitCheck validates an OffsetCommit's group fields and returns the
// group (created for a generation -1 commit), with entries registered in
// flight on it (end them with finishOffsets). The caller holds the group's
// append lock.
func (c *coordinator) commitCheck(name, memberID string, instanceID *string, generation int32, entries []offsetEntry) (*group, *kerr.Error) {
	if name == "" {
		return nil, kerr.InvalidGroupID
	}
	g := c.lockGroup(name, generation < 0)
	if g == nil {
		if code := c.unavailable(name); code != nil {
			return nil, code
		}
		return nil, kerr.IllegalGeneration
	}
	defer g.mu.Unlock()
	if g.cg != nil && len(g.cg.members) > 0 {
		// A consumer-protocol group: Generation is the member epoch.
		if err := g.validateConsumerMemberLocked(memberID, generation); err != nil {
			return nil, err
		}
		g.beginInflightLocked(entries)
		return g, nil
	}
	if generation < 0 && len(g.members) == 0 {
		g.beginInflightLocked(entries)
		return g, nil
	}
	if err := g.validateMemberLocked(memberID, instanceID, generation); err != nil {
		return nil, err
	}
	if g.state == groupCompletingRebalance {
		return nil, kerr.RebalanceInProgress
	}
	g.resetSessionLocked(g.members[memberID])
	g.beginInflightLocked(entries)
	return g, nil
}
