package broker

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// WriteTxnMarkers: v0-1
//
// Behavior:
// * Sent by a transaction coordinator to a partition's leader: appends
//   each marker (a control batch of the producer at its epoch) to each
//   partition and answers once they are durable (in a cluster, replicated
//   to min.insync.replicas). A marker on __consumer_offsets then commits
//   or drops the group's transactional offsets. A marker whose producer
//   already wrote at a newer epoch is answered as written: nothing of
//   that epoch is open there.
// * A partition this broker does not lead gets NOT_LEADER_OR_FOLLOWER,
//   an unknown one UNKNOWN_TOPIC_OR_PARTITION (the coordinator counts it
//   as marked).
// * ACLs: CLUSTER_ACTION on the cluster, else every partition gets
//   CLUSTER_AUTHORIZATION_FAILED.

// markerTimeout bounds the wait for a marker's durability; the
// coordinator sends it again.
const markerTimeout = 30 * time.Second

func handleWriteTxnMarkers(c *conn, req *request) reply {
	r := req.Request.(*kmsg.WriteTxnMarkersRequest)
	resp := r.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	allowed := c.allowedCluster(kmsg.ACLOperationClusterAction)
	type job struct {
		sp               *kmsg.WriteTxnMarkersResponseMarkerTopicPartition
		topic            string
		partition        int32
		producerID       int64
		epoch            int16
		commit           bool
		coordinatorEpoch int32
	}
	var jobs []job
	resp.Markers = make([]kmsg.WriteTxnMarkersResponseMarker, len(r.Markers))
	for i, rm := range r.Markers {
		sm := &resp.Markers[i]
		*sm = kmsg.NewWriteTxnMarkersResponseMarker()
		sm.ProducerID = rm.ProducerID
		sm.Topics = make([]kmsg.WriteTxnMarkersResponseMarkerTopic, len(rm.Topics))
		for j, rt := range rm.Topics {
			st := &sm.Topics[j]
			*st = kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			st.Topic = rt.Topic
			st.Partitions = make([]kmsg.WriteTxnMarkersResponseMarkerTopicPartition, len(rt.Partitions))
			for k, p := range rt.Partitions {
				sp := &st.Partitions[k]
				*sp = kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
				sp.Partition = p
				if !allowed {
					sp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
					continue
				}
				jobs = append(jobs, job{sp: sp, topic: rt.Topic, partition: p, producerID: rm.ProducerID,
					epoch: rm.ProducerEpoch, commit: rm.Committed, coordinatorEpoch: rm.CoordinatorEpoch})
			}
		}
	}
	return func() kmsg.Response {
		ctx, cancel := context.WithTimeout(c.ctx, markerTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Go(func() {
				if err := c.b.writeMarker(ctx, j.topic, j.partition, j.producerID, j.epoch, j.commit, j.coordinatorEpoch); err != nil {
					j.sp.ErrorCode = kafkaErr(err).Code
				}
			})
		}
		wg.Wait()
		return resp
	}
}
