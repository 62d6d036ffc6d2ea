package broker

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/tier2"
	"github.com/chronik-go/chronik/tier3"
)

// Fetch: v0-17
//
// Behavior:
// * Long poll: the response waits up to MaxWaitMillis until MinBytes are
//   available, woken as soon as a partition's high watermark moves.
// * Only durable (fsynced) batches are served: the high watermark is the
//   offset after the last fsynced record.
// * MaxBytes (capped by the broker's FetchMaxBytes, Kafka's
//   fetch.max.bytes) and PartitionMaxBytes bound the response; the first batch of
//   the response is returned whole even when larger (KIP-74).
// * A fetch offset below the log start or above the high watermark gets
//   OFFSET_OUT_OF_RANGE. v13+ resolves topics by ID (UNKNOWN_TOPIC_ID).
// * Sealed ranges are served from Tier 2 segment files without decoding:
//   the sparse offset index finds the batch, and one pread copies the
//   byte range straight into the response's record bytes (a fetch that
//   crosses a segment boundary reads each segment in turn). Active ranges
//   are read batch by batch from the WAL, whose frames are re-verified.
//   sendfile(2) is not used: on loopback a 1 MiB sendfile measured slower
//   than pread + write (tier2's BenchmarkSealedFetch).
// * Offsets below the local log start (archived to Tier 3 and deleted
//   locally by local.retention.*) are read from the object store: ranged
//   GETs of CRC-checked chunks kept in memory, then on disk, with
//   read-ahead for consumers reading in order (tier3.go). The response
//   holds views of the verified chunks (fetchSlot.views) instead of
//   copies. A check that fails gets KAFKA_STORAGE_ERROR, never the bytes.
// * A damaged sealed segment (scrub.go) serves the batches before its
//   damage; a fetch at or past it gets KAFKA_STORAGE_ERROR until the
//   segment is repaired from another copy.
// * Large record bytes (local or archived) are not copied into the encoded
//   response: it is written with one vectored write (fetch_write.go).
// * In a cluster, the partition's leader serves it (as Produce), and from
//   v11 a follower replica serves consumers up to the high watermark it
//   last heard from the leader (KIP-392);
//   CurrentLeaderEpoch older than the leader's gets FENCED_LEADER_EPOCH,
//   newer UNKNOWN_LEADER_EPOCH. Consumers read below the high watermark
//   (the minimum durable end over the ISR); a follower's fetch (ReplicaID,
//   or ReplicaState in v15+) reads everything fsynced and reports, by its
//   fetch offset, what the follower has fsynced (replica.go). A fetch is a
//   follower's only when it carries the broker epoch of that broker's
//   registered incarnation (ReplicaState, KIP-903; brokers of releases
//   before it, which register without a storage ID, are taken at their
//   word): any other fetch naming a broker gets STALE_BROKER_EPOCH (the
//   follower whose registration has not reached this broker yet retries)
//   and moves no high watermark. A follower
//   fetching below the leader's local log start, with Tier 3, gets
//   OFFSET_MOVED_TO_TIERED_STORAGE and starts its log at the leader's
//   local log start (KIP-405): the archive holds what lies below.
// * ACLs: a consumer needs READ on each topic (TOPIC_AUTHORIZATION_FAILED
//   for its partitions otherwise, checked before the topic is looked up;
//   v13+ IDs are resolved first, so an unknown ID is UNKNOWN_TOPIC_ID). A
//   fetch naming a replica needs CLUSTER_ACTION on the cluster, checked
//   before its broker epoch: without it every partition gets
//   TOPIC_AUTHORIZATION_FAILED, as Kafka answers, so a client principal
//   cannot fetch as a follower.
// * read_committed (IsolationLevel 1) reads below the last stable offset
//   (the first offset of the oldest open transaction, or the high
//   watermark) and lists the aborted transactions overlapping what it
//   reads, so the client drops their records (txnindex.go).
//   LastStableOffset is reported at either isolation level.
//
// Deviations:
// * v0-3 are advertised only for old librdkafka's feature probes (see
//   00_produce.go); they would need records down-converted to message
//   format v1, so every partition of such a request gets UNSUPPORTED_VERSION.
// * No incremental fetch sessions (KIP-227): SessionID 0 is always
//   returned, so clients send full fetch requests; a request naming a
//   session gets FETCH_SESSION_ID_NOT_FOUND.
// * Batches are returned starting with the one holding the fetch offset;
//   clients skip the records before it, as with Kafka.

// maxFetchWait bounds a long poll whatever the client asks.
const maxFetchWait = 30 * time.Second

func handleFetch(c *conn, req *request) reply {
	r := req.Request.(*kmsg.FetchRequest)
	auth := c.fetchAuth(r)
	done := make(chan kmsg.Response, 1)
	go func() { done <- c.b.fetch(c, r, auth) }()
	return func() kmsg.Response { return <-done }
}

// fetchACL is what a fetch may read, decided on the connection's reader
// goroutine before the fetch runs. The zero value allows everything.
type fetchACL struct {
	all    bool   // a replica's fetch without CLUSTER_ACTION: every topic is denied
	denied []bool // by request topic: no READ
}

func (a *fetchACL) deniedTopic(i int) bool {
	return a.all || a.denied != nil && a.denied[i]
}

// fetchReplica is the broker a fetch claims to come from (-1: a consumer)
// and that broker's epoch (-1: not sent).
func fetchReplica(r *kmsg.FetchRequest) (int32, int64) {
	if r.Version >= 15 {
		return r.ReplicaState.ID, r.ReplicaState.Epoch
	}
	return r.ReplicaID, -1
}

// fetchAuth checks r against the ACLs, each topic once: READ on the topic
// for a consumer, CLUSTER_ACTION on the cluster for a replica.
func (c *conn) fetchAuth(r *kmsg.FetchRequest) fetchACL {
	if c.b.cfg.Authorizer == nil {
		return fetchACL{}
	}
	if replica, _ := fetchReplica(r); replica >= 0 {
		return fetchACL{all: !c.allowedCluster(kmsg.ACLOperationClusterAction)}
	}
	a := fetchACL{denied: make([]bool, len(r.Topics))}
	for i := range r.Topics {
		name := r.Topics[i].Topic
		if r.Version >= 13 {
			t := c.b.lookupTopicID(r.Topics[i].TopicID)
			if t == nil {
				continue // UNKNOWN_TOPIC_ID
			}
			name = t.name
		}
		a.denied[i] = !c.allowed(kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, name)
	}
	return a
}

type fetchSlot struct {
	p       *partition
	offset  int64
	max     int
	sp      *kmsg.FetchResponseTopicPartition
	views   [][]byte   // archived record bytes, written after sp's encoding (fetchReply)
	hold    tier3.Hold // keeps the views' chunks until the response is written
	replica bool       // a follower's fetch: reads up to the durable end
}

func (b *Broker) fetch(c *conn, r *kmsg.FetchRequest, auth fetchACL) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.FetchResponse)
	if r.Version >= 7 && (r.SessionID != 0 || r.SessionEpoch > 0) {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}

	replica, replicaEpoch := fetchReplica(r)
	if auth.all {
		replica = -1 // denied outright: never taken for a follower
	}
	isFollower := replica >= 0 && b.ctl != nil && b.authenticReplica(c, replica, replicaEpoch)
	if replica >= 0 && b.ctl != nil && !isFollower {
		// Consumers send no broker ID. Serving this fetch as a consumer's
		// would hand a real follower whose new registration this broker
		// has not applied yet the whole archive from offset 0; it retries
		// once its registration is here, and starts where a follower does.
		resp.ErrorCode = kerr.StaleBrokerEpoch.Code
		return resp
	}
	now := time.Now()
	var slots []fetchSlot
	resp.Topics = make([]kmsg.FetchResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		if r.Version >= 13 {
			t = b.lookupTopicID(rt.TopicID)
			if t != nil {
				st.Topic = t.name
			}
		} else {
			t = b.lookupTopic(rt.Topic)
		}
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			// Never null, errors included: librdkafka fails to parse null
			// records, and a null aborted list under read_committed.
			sp.RecordBatches = []byte{}
			if r.IsolationLevel == 1 {
				sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
			}
			p := b.partitionOf(t, rp.Partition)
			switch {
			case r.Version < 4:
				sp.ErrorCode = kerr.UnsupportedVersion.Code
				continue
			case auth.deniedTopic(i):
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			case p == nil:
				sp.ErrorCode = b.missingPartitionCode(rt.Topic, rt.TopicID, rp.Partition, r.Version >= 13 && t == nil).Code
				continue
			}
			if _, lerr := b.leaderCheck(t, rp.Partition, rp.CurrentLeaderEpoch); lerr != nil {
				// KIP-392: a consumer (v11+) may read committed data from a
				// follower replica, up to the high watermark it knows.
				if !(lerr == kerr.NotLeaderForPartition && !isFollower && r.Version >= 11 && b.isReplica(t, rp.Partition)) {
					sp.ErrorCode = lerr.Code
					continue
				}
			}
			max := int(rp.PartitionMaxBytes)
			if max <= 0 {
				max = 1 << 20
			}
			// The fetch offset is what the follower has fsynced.
			fromReplica := isFollower && p.followerFetched(replica, rp.FetchOffset, now)
			if isFollower && !fromReplica {
				// A broker fetching as a replica this leader does not know
				// of yet (its view of a new partition or a reassignment is
				// behind the follower's): served as a consumer's, the fetch
				// would wait out its long poll without ever recording the
				// follower's progress. It asks again shortly.
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				continue
			}
			slots = append(slots, fetchSlot{p: p, offset: rp.FetchOffset, max: max, sp: sp, replica: fromReplica})
		}
	}

	wait := min(time.Duration(max(r.MaxWaitMillis, 0))*time.Millisecond, maxFetchWait)
	if len(slots) < countPartitions(r) {
		// A partition answered with an error (not led here, unknown) is
		// answered at once, as Kafka does: a follower that learned of a
		// partition before its leader did asks again soon, rather than
		// after the other partitions' long poll.
		wait = 0
	}
	deadline := time.Now().Add(wait)
	var notify chan struct{}
	defer func() {
		if notify != nil {
			for _, s := range slots {
				s.p.unwatch(notify)
			}
		}
	}()
	for {
		if notify == nil && wait > 0 {
			// Watch before reading so no HW move between the read and the
			// wait is missed.
			notify = make(chan struct{}, 1)
			for _, s := range slots {
				s.p.watch(notify)
			}
		}
		total, stop := b.fillFetch(slots, r)
		if stop || total >= int(r.MinBytes) || wait <= 0 {
			return fetchReply(resp, slots)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fetchReply(resp, slots)
		}
		timer := time.NewTimer(left)
		select {
		case <-notify:
			timer.Stop()
		case <-timer.C:
			b.fillFetch(slots, r)
			return fetchReply(resp, slots)
		case <-c.ctx.Done():
			timer.Stop()
			return fetchReply(resp, slots)
		}
	}
}

// fillFetch reads data for every slot; stop reports an error partition,
// which makes Kafka answer at once.
func (b *Broker) fillFetch(slots []fetchSlot, r *kmsg.FetchRequest) (total int, stop bool) {
	budget := int(r.MaxBytes)
	if r.Version < 3 || budget <= 0 {
		budget = 50 << 20
	}
	budget = min(budget, int(b.cfg.FetchMaxBytes))
	for i := range slots {
		s := &slots[i]
		sp := s.sp
		sp.RecordBatches = sp.RecordBatches[:0]
		s.views = s.views[:0]
		s.hold.Release()
		sp.ErrorCode = 0
		s.p.mu.RLock()
		logStart, hw, durable := s.p.logStart, s.p.visibleEndLocked(), s.p.hw
		lso := s.p.lsoLocked(hw)
		deleted, failed := s.p.deleted, s.p.failed
		s.p.mu.RUnlock()
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = hw, lso, logStart
		end := hw // consumers read below the high watermark
		committed := r.IsolationLevel == 1 && !s.replica
		switch {
		case s.replica:
			end = durable // followers read everything fsynced
		case committed:
			end = lso // read_committed: below the last stable offset
		}
		switch {
		case deleted:
			sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			stop = true
			continue
		case failed != nil:
			sp.ErrorCode = kerr.KafkaStorageError.Code
			stop = true
			continue
		case s.offset < logStart || s.offset > durable:
			// Out of range only past what this broker holds: a consumer
			// between the high watermark and the log end (the watermark
			// of a leader that just took over lags) waits, as in Kafka.
			sp.ErrorCode = kerr.OffsetOutOfRange.Code
			stop = true
			continue
		case s.replica && b.tier.arch != nil && s.offset < s.p.localStart():
			// A follower asks for what this leader holds only in the
			// archive: it starts its own log at this leader's local log
			// start instead (KIP-405), the archive serving the rest.
			sp.ErrorCode = kerr.OffsetMovedToTieredStorage.Code
			stop = true
			continue
		case s.offset >= end:
			continue
		}
		limit := min(s.max, budget)
		if limit <= 0 && total > 0 {
			continue
		}
		if s.views == nil {
			s.views = make([][]byte, 0, 4)
		}
		data, views, err := b.readPartitionVec(s.p, s.offset, max(limit, 1), sp.RecordBatches, s.views, &s.hold)
		if err != nil {
			if errors.Is(err, tier2.ErrCorrupt) {
				b.kickScrub() // the segment that failed a check is verified at once
			}
			b.log.Error("fetch read failed", "topic", s.p.topic.name, "partition", s.p.index, "offset", s.offset, "err", err)
			sp.ErrorCode = kerr.KafkaStorageError.Code
			sp.RecordBatches = sp.RecordBatches[:0]
			s.views = s.views[:0]
			s.hold.Release()
			stop = true
			continue
		}
		if committed && end < hw && len(views) > 0 {
			// A transaction open since before the local log start: the
			// archived views may reach past the last stable offset.
			for _, v := range views {
				data = append(data, v...)
			}
			views = views[:0]
		}
		if !s.replica {
			data = cutAt(data, end) // archived views are all below the high watermark
		}
		if committed {
			sp.AbortedTransactions = s.p.abortedIn(s.offset, end)
		}
		sp.RecordBatches, s.views = data, views
		n := len(data) + viewsLen(views)
		total += n
		budget -= n
	}
	return total, stop
}

// cutAt drops the batches of data at or above offset end (the high
// watermark, always a batch boundary).
func cutAt(data []byte, end int64) []byte {
	for i := 0; i+batchHeaderLen <= len(data); {
		if batchBaseOffset(data[i:]) >= end {
			return data[:i]
		}
		i += int(binary.BigEndian.Uint32(data[i+offBatchLength:])) + 12
	}
	return data
}

// countPartitions is the number of partitions r asks for.
func countPartitions(r *kmsg.FetchRequest) int {
	n := 0
	for i := range r.Topics {
		n += len(r.Topics[i].Partitions)
	}
	return n
}
