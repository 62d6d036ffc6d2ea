package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce: v0-13
//
// Behavior:
// * Exactly one record batch (magic 2) per partition. Length, CRC32C,
//   attributes and max.message.bytes are checked, then every record, as
//   Kafka's LogValidator does (validate.go): the records are counted
//   against NumRecords, their offset deltas must run 0..NumRecords-1 and
//   end at LastOffsetDelta, and each must parse exactly (lengths, varints,
//   headers, no trailing bytes); otherwise INVALID_RECORD. Compressed
//   records are inflated into a scratch copy to be checked, at most 32
//   times max.message.bytes (internal/inflate): a batch past that gets
//   MESSAGE_TOO_LARGE, one that does not decode CORRUPT_MESSAGE. Batches
//   are stored as sent, never recompressed.
// * CreateTime timestamps (KIP-937): a record more than
//   message.timestamp.before.max.ms behind the broker's clock or
//   message.timestamp.after.max.ms ahead of it (default: no bound, one
//   hour) fails the batch with INVALID_TIMESTAMP; a record without a
//   timestamp (-1) is not checked. A header max timestamp that is not the
//   largest record timestamp is corrected in place (CRC recomputed), as
//   Kafka does. A failed batch leaves the partition untouched.
// * Idempotent producers: a duplicate of one of a producer's last 5 batches
//   is answered with its original offset (after that batch is durable); a
//   sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch gets
//   INVALID_PRODUCER_EPOCH.
// * acks=1 and acks=all answer after the batch is fsynced (standalone: the
//   leader is the whole ISR). acks=0 gets no response.
// * When the WAL queue is full the request waits (the connection stops being
//   read) and ThrottleMillis reports the wait; only a request that cannot be
//   enqueued within its timeout gets REQUEST_TIMED_OUT.
// * A full disk gets KAFKA_STORAGE_ERROR (retriable). The failed batches
//   leave no trace, their offsets are given again, and produces succeed
//   once there is space (partition.resumeAppendsLocked); any other write or
//   fsync error gets KAFKA_STORAGE_ERROR until a restart.
// * Produce to __consumer_offsets or __transaction_state gets
//   INVALID_TOPIC_EXCEPTION, as Kafka.
// * Transactional batches open their producer's transaction on the
//   partition; the transaction coordinator's marker closes it
//   (txnindex.go). The first batch of a transaction on a partition is
//   verified with the coordinator first (KIP-890 part 1; over the
//   inter-broker listener when another broker coordinates): a partition
//   not added to the producer's ongoing transaction gets
//   INVALID_TXN_STATE, so a late batch of an ended transaction cannot
//   open one that nothing would close; a fenced producer gets
//   INVALID_PRODUCER_EPOCH, and a coordinator that cannot answer
//   NOT_ENOUGH_REPLICAS (retriable), as Kafka maps them. A producer's batch at an epoch older than the
//   partition's (raised by its batches or by a marker written after a
//   fence or a timeout) gets INVALID_PRODUCER_EPOCH. With an authorizer,
//   a request with transactional batches needs WRITE on its
//   transactional ID, else every partition gets
//   TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
// * In a cluster, a partition this broker does not lead, or any partition
//   while its controller lease has lapsed, gets NOT_LEADER_OR_FOLLOWER
//   (cluster.go); the client refreshes metadata and goes to the leader.
// * acks=all in a cluster: NOT_ENOUGH_REPLICAS when the ISR is smaller
//   than min.insync.replicas before the append; the answer waits until
//   the high watermark (the minimum fsynced end over the ISR) covers the
//   batch, and gets NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrinks
//   below min.insync.replicas meanwhile, NOT_LEADER_OR_FOLLOWER if
//   leadership moves. acks=1 answers after the leader's fsync.
// * Unknown topics get UNKNOWN_TOPIC_OR_PARTITION: topics are auto-created
//   by Metadata requests, as in Kafka.
// * ACLs: WRITE on each topic, checked before the topic is looked up (so
//   a denied client cannot tell which topics exist); a denied topic's
//   partitions get TOPIC_AUTHORIZATION_FAILED. An idempotent producer needs
//   nothing more here (Kafka 2.8+, KIP-679): InitProducerID checks it.
//
// Deviations:
// * v0-2 are advertised only because librdkafka (up to at least 2.0, the
//   one in Debian's kcat) compresses with gzip, snappy or lz4 only when the
//   broker lists Produce v0, and uses message format v2 only when it lists
//   Produce v2 and Fetch v2. Kafka 4.0, which dropped these versions, sends
//   those clients uncompressed. Every partition of a v0-2 request gets
//   UNSUPPORTED_FOR_MESSAGE_FORMAT: message formats v0/v1 are not stored.
// * A producer batch flagged LogAppendTime gets INVALID_TIMESTAMP. Kafka
//   accepts it (and rewrites the flag) on a CreateTime topic when the batch
//   carries a max timestamp; no client sends it.
// * Records inflating past 32 times max.message.bytes get
//   MESSAGE_TOO_LARGE; Kafka sets no bound.
// * Records without a key are accepted in compacted topics (compaction
//   keeps them); Kafka answers INVALID_RECORD.
// * v13 topics are resolved by ID.

const defaultProduceTimeout = 30 * time.Second

func handleProduce(c *conn, req *request) reply {
	r := req.Request.(*kmsg.ProduceRequest)
	b := c.b
	resp := r.ResponseKind().(*kmsg.ProduceResponse)

	code := produceRequestError(r)
	if code == nil && !c.mayProduceTransactional(r) {
		code = kerr.TransactionalIDAuthorizationFailed
	}
	if code != nil {
		for _, rt := range r.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			tcode, name := code, rt.Topic
			if r.Version >= 13 {
				if t := b.lookupTopicID(rt.TopicID); t != nil {
					name = t.name
				}
			}
			if !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, name) {
				tcode = kerr.TopicAuthorizationFailed
			}
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, tcode.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return now(resp)
	}

	timeout := defaultProduceTimeout
	if r.TimeoutMillis > 0 {
		timeout = time.Duration(r.TimeoutMillis) * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	nowMillis := time.Now().UnixMilli() // the clock timestamps are checked against
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()

	type pending struct {
		sp   *kmsg.ProduceResponseTopicPartition
		wait *appendResult
		// acks=all in a cluster: the high watermark must reach end under
		// this leader epoch.
		p     *partition
		end   int64
		epoch int32
	}
	var waits []pending
	var waitedFrom time.Time
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(r.Topics))
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *topic
		denied := false
		if r.Version >= 13 {
			t = b.lookupTopicID(rt.TopicID)
			denied = t != nil && !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, t.name)
		} else {
			denied = !c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTopic, rt.Topic)
			if !denied {
				t = b.lookupTopic(rt.Topic)
			}
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			if denied {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			}
			p := b.partitionOf(t, rp.Partition)
			if t != nil && isInternalTopic(t.name) {
				// Only the coordinators write their internal topics.
				sp.ErrorCode = kerr.InvalidTopicException.Code
				continue
			}
			if p == nil {
				sp.ErrorCode = b.missingPartitionCode(rt.Topic, rt.TopicID, rp.Partition, r.Version >= 13 && t == nil).Code
				continue
			}
			ctlEpoch, lerr := b.leaderCheck(t, rp.Partition, -1)
			if lerr != nil {
				sp.ErrorCode = lerr.Code
				continue
			}
			h, err := parseProduceBatch(rp.Records, t.maxMessageBytes.Load())
			if err == nil {
				rules := t.produceRules(nowMillis)
				err = validateRecords(rp.Records, &h, &rules)
			}
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = kafkaErr(err).Code, errMessage(err)
				continue
			}
			epoch, isr, minISR, replicated, leads := p.leadershipForProduce()
			if replicated && (!leads || epoch != ctlEpoch) {
				// The controller made this broker leader a moment ago and
				// the partition has not taken it up yet (or the reverse).
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				continue
			}
			replicated = replicated && r.Acks == -1
			if replicated && isr < minISR {
				sp.ErrorCode = kerr.NotEnoughReplicas.Code
				msg := fmt.Sprintf("%d in-sync replicas, min.insync.replicas is %d", isr, minISR)
				sp.ErrorMessage = &msg
				continue
			}
			if h.Attributes&attrTransactional != 0 {
				if code := b.verifyTxnPartition(ctx, r.TransactionID, t.name, rp.Partition, h, p); code != nil {
					sp.ErrorCode = code.Code
					continue
				}
			}
			start := time.Now()
			out, waited := p.append(ctx, b.wal, rp.Records, h, t.logAppendTime.Load())
			if waited && waitedFrom.IsZero() {
				waitedFrom = start
			}
			if out.err != nil {
				sp.ErrorCode, sp.ErrorMessage = kafkaErr(out.err).Code, errMessage(out.err)
				if out.wait == nil {
					continue
				}
			}
			if out.err == nil {
				b.metrics.produceRecords.Add(float64(h.NumRecords))
			}
			sp.BaseOffset, sp.LogAppendTime = out.baseOffset, out.logAppendTime
			sp.LogStartOffset, _ = p.offsets()
			w := pending{sp: sp, wait: out.wait}
			if replicated && out.err == nil {
				w.p, w.end, w.epoch = p, out.baseOffset+int64(h.LastOffsetDelta)+1, epoch
			}
			waits = append(waits, w)
		}
	}
	if !waitedFrom.IsZero() {
		resp.ThrottleMillis = int32(time.Since(waitedFrom).Milliseconds())
	}
	if r.Acks == 0 {
		return func() kmsg.Response { return nil }
	}
	return func() kmsg.Response {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		ctx, cancel := context.WithDeadline(c.ctx, deadline) // the handler's ended with it
		defer cancel()
		// settle gives a batch whose append is durable its answer: for
		// acks=all in a cluster, success only once the high watermark
		// covers it (with an ended ctx it only checks).
		settle := func(ctx context.Context, w pending) {
			switch {
			case w.wait.err != nil:
				w.sp.ErrorCode, w.sp.ErrorMessage = kerr.KafkaStorageError.Code, errMessage(w.wait.err)
				w.sp.BaseOffset = -1
			case w.p != nil:
				if err := w.p.replicationWait(ctx, w.end, w.epoch); err != nil {
					w.sp.ErrorCode, w.sp.ErrorMessage = kafkaErr(err).Code, errMessage(err)
					w.sp.BaseOffset = -1
				}
			}
		}
		for i, w := range waits {
			select {
			case <-w.wait.done:
				settle(ctx, w)
			case <-timer.C:
				// Past the deadline: every batch not yet settled is settled
				// now without waiting, or times out. The client retries;
				// idempotence answers a retried batch with its original
				// offset.
				ended, cancel := context.WithCancel(ctx)
				cancel()
				for _, w := range waits[i:] {
					select {
					case <-w.wait.done:
						settle(ended, w)
					default:
						w.sp.ErrorCode, w.sp.BaseOffset = kerr.RequestTimedOut.Code, -1
					}
				}
				return resp
			case <-c.ctx.Done():
				return resp
			}
		}
		return resp
	}
}

// mayProduceTransactional is whether the principal may write r's
// transactional batches, if it holds any: WRITE on its transactional ID.
func (c *conn) mayProduceTransactional(r *kmsg.ProduceRequest) bool {
	if c.b.cfg.Authorizer == nil {
		return true
	}
	txnal := false
	for _, rt := range r.Topics {
		for _, rp := range rt.Partitions {
			if len(rp.Records) >= batchHeaderLen && readBatchHeader(rp.Records).Attributes&attrTransactional != 0 {
				txnal = true
			}
		}
	}
	return !txnal || r.TransactionID != nil && c.allowed(kmsg.ACLOperationWrite, kmsg.ACLResourceTypeTransactionalId, *r.TransactionID)
}

// produceRequestError is the error every partition of r gets, or nil.
func produceRequestError(r *kmsg.ProduceRequest) *kerr.Error {
	switch {
	case r.Version < 3:
		return kerr.UnsupportedForMessageFormat
	case r.Acks != 0 && r.Acks != 1 && r.Acks != -1:
		return kerr.InvalidRequiredAcks
	}
	return nil
}
