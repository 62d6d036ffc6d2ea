package broker

import (
	"bytes"
	"encoding/binary"
	"math"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/security"
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
	now := time.Now().UnixMilli()
	gz := craftBatch(compressWith(f, 1, encodeRecords(valueRecords(3, []byte("v"))...)), 1, 3, 2, now, now+2)
	seed(produceReq("fuzz", 0, gz, 1))
	seed(produceReq("fuzz", 0, craftBatch(encodeRecords(valueRecords(1, []byte("v"))...), 0, 1<<31-1, 1<<31-2, now, now), 1))
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
	c := newConn(b, p1, &listener{Listener: security.Listener{Name: defaultListener, Protocol: security.Plaintext}}, remoteIP(p1))
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

// FuzzValidateRecords holds arbitrary batch bytes to the producer's and the
// follower's rules. Nothing may panic, and a batch the producer's rules
// accept must decode (with franz-go's record reader) to exactly NumRecords
// records numbered 0..NumRecords-1 whose largest timestamp is the header's
// max timestamp. Seeds: a valid batch of each codec, empty input, huge
// declared lengths and counts, and valid-then-garbage.
func FuzzValidateRecords(f *testing.F) {
	now := time.Now().UnixMilli()
	recs := encodeRecords(valueRecords(5, []byte("fuzz value"))...)
	plain := craftBatch(recs, 0, 5, 4, now, now+4)
	f.Add(plain)
	f.Add([]byte{})
	f.Add(plain[:batchHeaderLen])
	f.Add(append(bytes.Clone(plain), 0xff, 0xff, 0xff))
	f.Add(craftBatch(recs, 0, 1<<31-1, 1<<31-2, now, now+4))
	f.Add(craftBatch(append(binary.AppendVarint(nil, 1<<30), 0, 0), 0, 1, 0, now, now))
	for _, codec := range []int{1, 3, 4} {
		f.Add(craftBatch(compressWith(f, codec, recs), int16(codec), 5, 4, now, now+4))
	}
	snappy, err := kgo.DefaultCompressor(kgo.SnappyCompression())
	if err != nil {
		f.Fatal(err)
	}
	sn, _ := snappy.Compress(new(bytes.Buffer), recs)
	f.Add(craftBatch(bytes.Clone(sn), 2, 5, 4, now, now+4))
	f.Add(craftBatch(append(binary.AppendUvarint(nil, 1<<31-1), 0, 0), 2, 5, 4, now, now+4))
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < batchHeaderLen {
			return
		}
		b = bytes.Clone(b)
		h := readBatchHeader(b)
		follower := batchRules{inflateLimit: limit}
		_ = validateRecords(b, &h, &follower)

		producer := batchRules{inflateLimit: limit, client: true, now: now, beforeMax: math.MaxInt64, afterMax: math.MaxInt64}
		h = readBatchHeader(b)
		if validateRecords(b, &h, &producer) != nil {
			return
		}
		n, maxTs := int32(0), int64(math.MinInt64)
		err := eachStoredRecord(b, limit, func(r *kmsg.Record, off, ts int64) bool {
			if int64(r.OffsetDelta) != int64(n) {
				t.Fatalf("accepted batch: record %d has offset delta %d", n, r.OffsetDelta)
			}
			n++
			maxTs = max(maxTs, ts)
			return true
		})
		if err != nil {
			t.Fatalf("accepted batch does not decode: %v", err)
		}
		if h := readBatchHeader(b); n != h.NumRecords || maxTs != h.MaxTimestamp {
			t.Fatalf("accepted batch decodes to %d records (max timestamp %d); its header says %d (%d)", n, maxTs, h.NumRecords, h.MaxTimestamp)
		}
	})
}
