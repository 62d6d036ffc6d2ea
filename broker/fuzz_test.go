package broker

import (
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequest feeds arbitrary request frames through the decode and handler
// path. Nothing may panic, and whatever is answered must encode.
func FuzzRequest(f *testing.F) {
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	seed := func(req kmsg.Request) {
		body := formatter.AppendRequest(nil, req, 7)
		f.Add(body[4:])
	}
	seed(kmsg.NewPtrApiVersionsRequest())
	md := kmsg.NewPtrMetadataRequest()
	name := "fuzz"
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	seed(md)
	seed(produceReq("fuzz", 0, makeBatch(3, -1, -1, -1, 1), 1))
	seed(produceReq("fuzz", 0, makeBatch(2, 9, 0, 0, 1), -1))
	fr := kmsg.NewPtrFetchRequest()
	fr.SetVersion(11)
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "fuzz"
	ft.Partitions = []kmsg.FetchRequestTopicPartition{{Partition: 0, FetchOffset: 0, PartitionMaxBytes: 1 << 20}}
	fr.Topics = append(fr.Topics, ft)
	seed(fr)
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "fuzz2", NumPartitions: 2, ReplicationFactor: 1}}
	seed(ct)
	seed(kmsg.NewPtrDescribeConfigsRequest())
	seed(kmsg.NewPtrInitProducerIDRequest())
	f.Add([]byte{})
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff})

	b := testBroker(f, f.TempDir(), nil)
	p1, p2 := net.Pipe()
	f.Cleanup(func() { p1.Close(); p2.Close() })
	c := newConn(b, p1)
	c.cancel() // replies resolve at once instead of long-polling

	f.Fuzz(func(t *testing.T, body []byte) {
		inf, err := c.handle(append([]byte(nil), body...))
		if err != nil {
			return // the connection would be closed
		}
		resp := inf.reply()
		if resp == nil {
			return
		}
		_ = resp.AppendTo(nil)
	})
}
