package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkOffsetCommit measures fsynced OffsetCommits per second from many
// concurrent committers over TCP (8 connections, 32 committers per CPU),
// each committing one partition of its own group per request.
func BenchmarkOffsetCommit(b *testing.B) {
	br := groupBroker(b, b.TempDir())
	const conns = 8
	var clients [conns]*kgo.Client
	for i := range clients {
		clients[i] = testClient(b, br)
	}
	groupCreateTopic(b, kadm.NewClient(clients[0]), "bench", 16)
	topicID := br.lookupTopic("bench").id
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		cl := clients[n%conns]
		group := fmt.Sprintf("bench-%d", n)
		ctx := context.Background()
		var off int64
		for pb.Next() {
			off++
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Group, req.Generation = group, -1
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic, rt.TopicID = "bench", topicID
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset = int32(n%16), off
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl)
			if err != nil {
				b.Error(err)
				return
			}
			if err := kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
}
