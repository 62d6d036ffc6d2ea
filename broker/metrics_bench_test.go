package broker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/vfs"
)

// BenchmarkRequestMetrics measures what the instrumentation adds to one
// produce request (two clock reads, request count, bytes in and out,
// duration and the error scan of the response) and to one WAL group, beside
// decoding the same request and serving it whole (pipelined on one
// connection to a broker on an in-memory filesystem, so the disk does not
// dominate). The hooks must not allocate.
func BenchmarkRequestMetrics(b *testing.B) {
	m := newMetrics(nil)
	if err := m.register(prometheus.NewRegistry()); err != nil {
		b.Fatal(err)
	}
	req := produceReq("t", 0, makeBatch(10, -1, -1, -1, time.Now().UnixMilli()), 1)
	body := req.AppendTo(nil)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	rt := kmsg.NewProduceResponseTopic()
	rt.Partitions = []kmsg.ProduceResponseTopicPartition{kmsg.NewProduceResponseTopicPartition()}
	resp.Topics = []kmsg.ProduceResponseTopic{rt}
	key := int16(kmsg.Produce)

	b.Run("hooks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.bytesIn.Add(float64(4 + len(body)))
			start := time.Now()
			m.api[key].requests.Inc()
			m.bytesOut.Add(64)
			m.requestDone(key, start, resp)
		}
	})
	b.Run("wal-group-hook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.observeGroup(100, 100<<10, 200*time.Microsecond)
		}
	})
	b.Run("produce-request", func(b *testing.B) {
		br := testBroker(b, "/data", func(c *Config) { c.FS = vfs.NewMemFS() })
		cl := testClient(b, br)
		if err := cl.ProduceSync(testCtx(b), &kgo.Record{Topic: "t"}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		raw := dialRaw(b, br)
		const window = 32
		sent, recvd := 0, 0
		recv := func() {
			var r kmsg.ProduceResponse
			r.Version = req.Version
			if err := raw.recv(&r); err != nil {
				b.Fatal(err)
			}
			if code := r.Topics[0].Partitions[0].ErrorCode; code != 0 {
				b.Fatalf("produce error %d", code)
			}
			recvd++
		}
		b.ReportAllocs()
		for b.Loop() {
			raw.send(produceReq("t", 0, makeBatch(10, -1, -1, -1, 0), 1))
			sent++
			if sent-recvd == window {
				recv()
			}
		}
		for recvd < sent {
			recv()
		}
	})
	b.Run("decode-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := kmsg.NewPtrProduceRequest()
			r.SetVersion(req.Version)
			if err := r.ReadFrom(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
