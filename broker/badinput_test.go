package broker

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stillServes proves the broker answers a fresh client after bad input.
func stillServes(t *testing.T, b *Broker) {
	t.Helper()
	cl := testClient(t, b)
	if err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "healthy", Value: []byte("ok")}).FirstErr(); err != nil {
		t.Fatalf("broker stopped serving after bad input: %v", err)
	}
}

func createTopic(t *testing.T, b *Broker, name string, mod func(*kmsg.CreateTopicsRequestTopic)) {
	t.Helper()
	c := dialRaw(t, b)
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
	if mod != nil {
		mod(&rt)
	}
	req.Topics = append(req.Topics, rt)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func produceRaw(t *testing.T, c *rawConn, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := produceReq(topic, 0, batch, -1)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	if err := c.recv(resp); err != nil {
		t.Fatalf("produce response: %v", err)
	}
	return resp.Topics[0].Partitions[0]
}

func TestBadBatches(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "bad", func(rt *kmsg.CreateTopicsRequestTopic) {
		v := "2048"
		rt.Configs = append(rt.Configs, kmsg.CreateTopicsRequestTopicConfig{Name: "max.message.bytes", Value: &v})
	})
	c := dialRaw(t, b)

	good := makeBatch(3, -1, -1, -1, 1000)
	badCRC := append([]byte(nil), good...)
	badCRC[len(badCRC)-1] ^= 0xff
	twoBatches := append(append([]byte(nil), good...), good...)
	truncated := good[:len(good)-5]
	oldMagic := append([]byte(nil), good...)
	oldMagic[offMagic] = 1

	for _, tc := range []struct {
		name  string
		batch []byte
		want  *kerr.Error
	}{
		{"bad crc", badCRC, kerr.CorruptMessage},
		{"oversize", makeBatch(200, -1, -1, -1, 1000), kerr.MessageTooLarge},
		{"two batches", twoBatches, kerr.InvalidRecord},
		{"truncated", truncated, kerr.CorruptMessage},
		{"magic 1", oldMagic, kerr.UnsupportedForMessageFormat},
		{"empty", nil, kerr.CorruptMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := produceRaw(t, c, "bad", tc.batch)
			if sp.ErrorCode != tc.want.Code {
				t.Fatalf("error %v, want %v", kerr.ErrorForCode(sp.ErrorCode), tc.want)
			}
		})
	}
	// Nothing was stored, and the same connection still works.
	if sp := produceRaw(t, c, "bad", good); sp.ErrorCode != 0 || sp.BaseOffset != 0 {
		t.Fatalf("good batch after bad ones: err %v offset %d, want offset 0", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
	stillServes(t, b)
}

func TestUnknownTopicWithAutoCreateOff(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.AutoCreateTopics = false })
	c := dialRaw(t, b)
	if sp := produceRaw(t, c, "missing", makeBatch(1, -1, -1, -1, 1)); sp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to unknown topic: %v", kerr.ErrorForCode(sp.ErrorCode))
	}
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(9)
	name := "missing"
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	req.AllowAutoTopicCreation = true
	c.send(req)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("metadata for unknown topic with auto-create off: %v", kerr.ErrorForCode(resp.Topics[0].ErrorCode))
	}
}

func TestIdempotentSequences(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "idem", nil)
	c := dialRaw(t, b)
	const pid = 4242
	first := produceRaw(t, c, "idem", makeBatch(5, pid, 0, 0, 1))
	if first.ErrorCode != 0 || first.BaseOffset != 0 {
		t.Fatalf("first batch: %v at %d", kerr.ErrorForCode(first.ErrorCode), first.BaseOffset)
	}
	second := produceRaw(t, c, "idem", makeBatch(5, pid, 0, 5, 1))
	if second.ErrorCode != 0 || second.BaseOffset != 5 {
		t.Fatalf("second batch: %v at %d", kerr.ErrorForCode(second.ErrorCode), second.BaseOffset)
	}
	dup := produceRaw(t, c, "idem", makeBatch(5, pid, 0, 0, 1))
	if dup.ErrorCode != 0 || dup.BaseOffset != 0 {
		t.Fatalf("duplicate of first batch: %v at %d, want its original offset 0", kerr.ErrorForCode(dup.ErrorCode), dup.BaseOffset)
	}
	gap := produceRaw(t, c, "idem", makeBatch(5, pid, 0, 20, 1))
	if gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(gap.ErrorCode))
	}
	bumped := produceRaw(t, c, "idem", makeBatch(1, pid, 1, 0, 1))
	if bumped.ErrorCode != 0 || bumped.BaseOffset != 10 {
		t.Fatalf("new epoch from sequence 0: %v at %d", kerr.ErrorForCode(bumped.ErrorCode), bumped.BaseOffset)
	}
	old := produceRaw(t, c, "idem", makeBatch(1, pid, 0, 10, 1))
	if old.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("older epoch: %v, want INVALID_PRODUCER_EPOCH", kerr.ErrorForCode(old.ErrorCode))
	}

	// Sequence state survives a restart: the duplicate is still recognised.
	dir := b.cfg.DataDir
	b.Close()
	b2 := testBroker(t, dir, nil)
	c2 := dialRaw(t, b2)
	if again := produceRaw(t, c2, "idem", makeBatch(1, pid, 1, 0, 1)); again.ErrorCode != 0 || again.BaseOffset != 10 {
		t.Fatalf("duplicate after restart: %v at %d, want offset 10", kerr.ErrorForCode(again.ErrorCode), again.BaseOffset)
	}
	if next := produceRaw(t, c2, "idem", makeBatch(1, pid, 1, 1, 1)); next.ErrorCode != 0 || next.BaseOffset != 11 {
		t.Fatalf("next batch after restart: %v at %d, want offset 11", kerr.ErrorForCode(next.ErrorCode), next.BaseOffset)
	}
}

func TestUnsupportedApiVersions(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)

	// ApiVersions at a version we do not know: v0 answer with the error.
	c := dialRaw(t, b)
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(apis[kmsg.ApiVersions].max + 1)
	c.send(req)
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(0)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != len(apis) {
		t.Fatalf("ApiVersions v%d: error %v with %d keys", req.Version, kerr.ErrorForCode(resp.ErrorCode), len(resp.ApiKeys))
	}

	// Any other API at an unsupported version closes the connection.
	c2 := dialRaw(t, b)
	lreq := kmsg.NewPtrListOffsetsRequest()
	lreq.SetVersion(0) // served from v1
	c2.send(lreq)
	c2.expectClosed()

	// An API we do not serve at all closes the connection too.
	c3 := dialRaw(t, b)
	c3.send(kmsg.NewPtrDescribeDelegationTokenRequest())
	c3.expectClosed()
	stillServes(t, b)
}

func TestMalformedFrames(t *testing.T) {
	b := testBroker(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 1 << 20 })

	t.Run("oversize frame", func(t *testing.T) {
		c := dialRaw(t, b)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 2<<20)
		c.write(hdr[:])
		c.expectClosed()
	})
	t.Run("negative size", func(t *testing.T) {
		c := dialRaw(t, b)
		c.write([]byte{0xff, 0xff, 0xff, 0xf0})
		c.expectClosed()
	})
	t.Run("garbage", func(t *testing.T) {
		c := dialRaw(t, b)
		c.write([]byte{0, 0, 0, 12, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 0x7f, 0xff, 1, 2})
		c.expectClosed()
	})
	t.Run("truncated body", func(t *testing.T) {
		c := dialRaw(t, b)
		req := produceReq("x", 0, makeBatch(1, -1, -1, -1, 1), 1)
		body := kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)
		// Claim the real size but cut the records array short.
		binary.BigEndian.PutUint32(body, uint32(len(body)-4-20))
		c.write(body[:len(body)-20])
		c.expectClosed()
	})
	stillServes(t, b)
}

func TestInternalTopicIsProtected(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	c := dialRaw(t, b)
	if sp := produceRaw(t, c, offsetsTopic, makeBatch(1, -1, -1, -1, 1)); sp.ErrorCode != kerr.InvalidTopicException.Code {
		t.Fatalf("produce to %s: %v, want INVALID_TOPIC_EXCEPTION", offsetsTopic, kerr.ErrorForCode(sp.ErrorCode))
	}
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{offsetsTopic}
	c.send(req)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if resp.Topics[0].ErrorCode != kerr.InvalidTopicException.Code {
		t.Fatalf("delete %s: %v, want INVALID_TOPIC_EXCEPTION", offsetsTopic, kerr.ErrorForCode(resp.Topics[0].ErrorCode))
	}
}

// Produce v2 and Fetch v2-3 exist only for old clients' feature probes: they
// answer with errors instead of mis-encoded data.
func TestLegacyVersionsAnswerErrors(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "legacy", nil)
	c := dialRaw(t, b)
	preq := produceReq("legacy", 0, makeBatch(1, -1, -1, -1, 1), 1)
	preq.SetVersion(2)
	c.send(preq)
	presp := preq.ResponseKind().(*kmsg.ProduceResponse)
	if err := c.recv(presp); err != nil {
		t.Fatal(err)
	}
	if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnsupportedForMessageFormat.Code {
		t.Fatalf("produce v2: %v, want UNSUPPORTED_FOR_MESSAGE_FORMAT", kerr.ErrorForCode(code))
	}
	freq := kmsg.NewPtrFetchRequest()
	freq.SetVersion(3)
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "legacy"
	ft.Partitions = []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 1 << 20}}
	freq.Topics = append(freq.Topics, ft)
	c.send(freq)
	fresp := freq.ResponseKind().(*kmsg.FetchResponse)
	if err := c.recv(fresp); err != nil {
		t.Fatal(err)
	}
	if code := fresp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnsupportedVersion.Code {
		t.Fatalf("fetch v3: %v, want UNSUPPORTED_VERSION", kerr.ErrorForCode(code))
	}
	if _, hw := b.partitionOf(b.lookupTopic("legacy"), 0).offsets(); hw != 0 {
		t.Fatalf("produce v2 stored records: high watermark %d", hw)
	}
}

// An empty fetch carries a zero-length (not null) record set, and
// read_committed gets an empty aborted-transactions list: librdkafka fails to
// parse either as null.
func TestEmptyFetchEncoding(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "quiet", nil)
	c := dialRaw(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.IsolationLevel = 1
	req.MaxWaitMillis = 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "quiet"
	ft.Partitions = []kmsg.FetchRequestTopicPartition{{Partition: 0, PartitionMaxBytes: 1 << 20, CurrentLeaderEpoch: -1}}
	req.Topics = append(req.Topics, ft)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != 0 || sp.RecordBatches == nil || sp.AbortedTransactions == nil {
		t.Fatalf("empty fetch: error %v, records nil %v, aborted nil %v; want no error and non-null empty fields",
			kerr.ErrorForCode(sp.ErrorCode), sp.RecordBatches == nil, sp.AbortedTransactions == nil)
	}

	// An error partition too.
	req.Topics[0].Topic = "no-such-topic"
	c.send(req)
	resp = req.ResponseKind().(*kmsg.FetchResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	sp = resp.Topics[0].Partitions[0]
	if sp.ErrorCode != kerr.UnknownTopicOrPartition.Code || sp.RecordBatches == nil || sp.AbortedTransactions == nil {
		t.Fatalf("error fetch: error %v, records nil %v, aborted nil %v; want UNKNOWN_TOPIC_OR_PARTITION and non-null empty fields",
			kerr.ErrorForCode(sp.ErrorCode), sp.RecordBatches == nil, sp.AbortedTransactions == nil)
	}
}
