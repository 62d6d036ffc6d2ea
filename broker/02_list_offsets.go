package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ListOffsets: v1-10
//
// Behavior:
// * -2 (earliest) returns the log start offset (archived data included);
//   -4 (earliest local) the first offset held locally; -1 (latest) the
//   high watermark; -3 (max timestamp, v7+) the offset and timestamp of
//   the record with the largest timestamp, archive included; -5 (latest
//   tiered, v9+) the last archived offset, or -1 when nothing is archived.
// * A timestamp returns the first offset at or after the log start whose
//   record timestamp is at or after it: the time indexes of the archived
//   segments below the local log start (fetched from Tier 3), then of the
//   sealed segments, then the active batches' max timestamps find the one
//   candidate batch, which is decoded to find the exact record; -1 if none.
// * read_committed (IsolationLevel 1): -1 (latest) is the last stable
//   offset, which no open transaction's records reach.
// * In a cluster, only the partition's leader answers (as Fetch, leader
//   epochs checked), and the response carries the current leader epoch.
// * ACLs: DESCRIBE on each topic, else TOPIC_AUTHORIZATION_FAILED for its
//   partitions (whatever ReplicaID says, as Kafka).

const (
	listLatest       = -1
	listEarliest     = -2
	listMaxTimestamp = -3
	listEarliestLoc  = -4
	listLatestTiered = -5
)

func handleListOffsets(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ListOffsetsRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		denied := !c.allowed(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, rt.Topic)
		var t *topic
		if !denied {
			t = b.lookupTopic(rt.Topic)
		}
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset = -1, -1
			p := b.partitionOf(t, rp.Partition)
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else if p == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			} else if epoch, lerr := b.leaderCheck(t, rp.Partition, rp.CurrentLeaderEpoch); lerr != nil {
				sp.ErrorCode = lerr.Code
			} else {
				sp.Offset, sp.Timestamp, sp.ErrorCode = b.listOffset(p, rp.Timestamp, r.IsolationLevel == 1)
				sp.LeaderEpoch = epoch
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return now(resp)
}

func (b *Broker) listOffset(p *partition, ts int64, committed bool) (offset, timestamp int64, code int16) {
	// A segment deleted by retention or replaced by compaction during the
	// lookup fails it with a storage error; look again.
	for attempt := 0; ; attempt++ {
		offset, timestamp, code = b.listOffsetOnce(p, ts, committed)
		if code != kerr.KafkaStorageError.Code || attempt == 2 {
			return offset, timestamp, code
		}
	}
}

func (b *Broker) listOffsetOnce(p *partition, ts int64, committed bool) (offset, timestamp int64, code int16) {
	logStart, hw := p.offsets()
	if committed {
		p.mu.RLock()
		hw = p.lsoLocked(hw)
		p.mu.RUnlock()
	}
	switch ts {
	case listEarliest:
		return logStart, -1, 0
	case listEarliestLoc:
		return p.localStart(), -1, 0
	case listLatest:
		return hw, -1, 0
	case listLatestTiered:
		return p.latestTiered(), -1, 0
	case listMaxTimestamp:
		r, maxTs, ok := p.maxTimestampBatch()
		if ar, ats, aok := b.archivedMaxTimestampBatch(p); aok && (!ok || ats >= maxTs) {
			r, maxTs, ok = ar, ats, true
		}
		if !ok {
			return -1, -1, 0
		}
		off, t, code, _ := b.findInBatch(p, r, func(off, t int64) bool { return t == maxTs })
		return off, t, code
	}
	if ts < 0 {
		return -1, -1, kerr.InvalidRequest.Code
	}
	// The first batch at or after the log start whose max timestamp is at
	// or after ts holds the answer, unless every such record in it lies
	// below the log start (DeleteRecords inside a batch): then look on.
	for from := logStart; ; {
		r, ok, err := b.archivedBatchForTimestamp(p, ts, from)
		if err == nil && !ok {
			r, ok, err = p.batchForTimestamp(ts, from)
		}
		if err != nil {
			b.log.Error("list offsets lookup failed", "topic", p.topic.name, "partition", p.index, "err", err)
			return -1, -1, kerr.KafkaStorageError.Code
		}
		if !ok {
			return -1, -1, 0
		}
		off, t, code, last := b.findInBatch(p, r, func(off, t int64) bool { return off >= from && t >= ts })
		if code != 0 || off >= 0 || last < from {
			return off, t, code
		}
		from = last + 1
	}
}

// findInBatch returns the first record of the batch r matching want, and
// the batch's last offset.
func (b *Broker) findInBatch(p *partition, r batchRef, want func(off, ts int64) bool) (int64, int64, int16, int64) {
	var buf []byte
	var err error
	if r.arch != nil {
		buf, err = b.readArchivedBatch(p, r)
	} else {
		buf, err = p.readBatch(b.wal, r)
	}
	if err != nil {
		b.log.Error("list offsets read failed", "topic", p.topic.name, "partition", p.index, "err", err)
		return -1, -1, kerr.KafkaStorageError.Code, -1
	}
	offset, timestamp := int64(-1), int64(-1)
	err = forEachRecord(buf, p.topic.inflateLimit(), func(off, t int64) bool {
		if want(off, t) {
			offset, timestamp = off, t
			return false
		}
		return true
	})
	if err != nil {
		b.log.Error("list offsets decode failed", "topic", p.topic.name, "partition", p.index, "err", err)
		return -1, -1, kerr.CorruptMessage.Code, -1
	}
	h := readBatchHeader(buf)
	return offset, timestamp, 0, batchBaseOffset(buf) + int64(h.LastOffsetDelta)
}
