package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// encodeRecords encodes real kmsg records back to back, numbered from 0.
func encodeRecords(recs ...kmsg.Record) []byte {
	var out []byte
	for i := range recs {
		r := recs[i]
		r.Length = 0
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		out = r.AppendTo(out)
	}
	return out
}

func valueRecords(n int, value []byte) []kmsg.Record {
	recs := make([]kmsg.Record, n)
	for i := range recs {
		recs[i] = kmsg.Record{OffsetDelta: int32(i), TimestampDelta64: int64(i), TimestampDelta: int32(i), Key: []byte("k"), Value: value}
	}
	return recs
}

// craftBatch frames a records section (compressed with codec if it is not
// 0) as a v2 batch whose header claims numRecords and lastDelta, with a
// valid CRC: whatever is wrong in it, the frame checks cannot see.
func craftBatch(records []byte, codec int16, numRecords, lastDelta int32, firstTs, maxTs int64) []byte {
	rb := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           codec,
		LastOffsetDelta:      lastDelta,
		FirstTimestamp:       firstTs,
		MaxTimestamp:         maxTs,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           numRecords,
		Records:              records,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

func endOffset(t *testing.T, b *Broker, topic string) int64 {
	t.Helper()
	p := b.partitionOf(b.lookupTopic(topic), 0)
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.nextOffset
}

func createTopicWith(t *testing.T, b *Broker, name string, configs map[string]string) {
	t.Helper()
	createTopic(t, b, name, func(rt *kmsg.CreateTopicsRequestTopic) {
		for k, v := range configs {
			rt.Configs = append(rt.Configs, kmsg.CreateTopicsRequestTopicConfig{Name: k, Value: &v})
		}
	})
}

// The reproduction: batches of one record whose header claims
// 2^31-1 records (valid CRC) were accepted, and each moved the end offset
// by 2^31-1. They are refused with INVALID_RECORD and consume no offsets.
func TestProduceRecordCountMustMatchHeader(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "counted", nil)
	c := dialRaw(t, b)
	now := time.Now().UnixMilli()
	one := encodeRecords(valueRecords(1, []byte("v"))...)
	liar := craftBatch(one, 0, 1<<31-1, 1<<31-2, now, now)
	if len(liar) > 80 {
		t.Fatalf("the lying batch is %d bytes; the issue's were about 70", len(liar))
	}
	for i := range 4 {
		sp := produceRaw(t, c, "counted", bytes.Clone(liar))
		if sp.ErrorCode != kerr.InvalidRecord.Code {
			t.Errorf("lying batch %d: %v (base offset %d), want INVALID_RECORD", i, kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
		}
	}
	if end := endOffset(t, b, "counted"); end != 0 {
		t.Fatalf("end offset %d after refused batches, want 0", end)
	}
	if sp := produceRaw(t, c, "counted", makeBatch(2, -1, -1, -1, now)); sp.ErrorCode != 0 || sp.BaseOffset != 0 {
		t.Fatalf("good batch after the refused ones: %v at %d, want offset 0", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
	stillServes(t, b)
}

// Records that disagree with their header, or do not parse, are refused
// with Kafka's error code and leave the partition untouched.
func TestProduceMalformedRecords(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "malformed", nil)
	c := dialRaw(t, b)
	now := time.Now().UnixMilli()
	three := valueRecords(3, []byte("value"))
	good := encodeRecords(three...)
	gapped := append([]kmsg.Record(nil), three...)
	gapped[2].OffsetDelta = 3
	swapped := append([]kmsg.Record(nil), three...)
	swapped[0].OffsetDelta, swapped[1].OffsetDelta = 1, 0
	// A record whose length covers one byte more than its fields.
	padded := encodeRecords(three[0])
	padded[0] += 2 // zigzag: the length grows by one
	padded = append(padded, 0)
	// A header count larger than the record's bytes can hold.
	hdrs := three[0]
	hdrs.Headers = []kmsg.Header{{Key: "h", Value: []byte("x")}}
	manyHeaders := encodeRecords(hdrs)
	manyHeaders[len(manyHeaders)-5] = 0x7e // the count's varint
	// A key length past the end of the record.
	longKey := encodeRecords(three[0])
	longKey[4] = 0x7e
	gz := compressWith(t, 1, good)

	for _, tc := range []struct {
		name  string
		batch []byte
		want  *kerr.Error
	}{
		{"fewer records than counted", craftBatch(good, 0, 4, 3, now, now+2), kerr.InvalidRecord},
		{"more records than counted", craftBatch(good, 0, 2, 1, now, now+2), kerr.InvalidRecord},
		{"compressed, fewer than counted", craftBatch(gz, 1, 4, 3, now, now+2), kerr.InvalidRecord},
		{"offset delta gap", craftBatch(encodeRecords(gapped...), 0, 3, 2, now, now+2), kerr.InvalidRecord},
		{"offset deltas out of order", craftBatch(encodeRecords(swapped...), 0, 3, 2, now, now+2), kerr.InvalidRecord},
		{"trailing garbage", craftBatch(append(bytes.Clone(good), 1, 2, 3), 0, 3, 2, now, now+2), kerr.InvalidRecord},
		{"record longer than its fields", craftBatch(padded, 0, 1, 0, now, now), kerr.InvalidRecord},
		{"header count past the end", craftBatch(manyHeaders, 0, 1, 0, now, now), kerr.InvalidRecord},
		{"key past the end", craftBatch(longKey, 0, 1, 0, now, now), kerr.InvalidRecord},
		{"gzip that does not decode", craftBatch(gz[:len(gz)/2], 1, 3, 2, now, now+2), kerr.CorruptMessage},
		{"producer claims LogAppendTime", func() []byte {
			bt := craftBatch(good, attrTimestampType, 3, 2, now, now+2)
			binary.BigEndian.PutUint32(bt[offCRC:], crc32.Checksum(bt[offAttributes:], crc32c))
			return bt
		}(), kerr.InvalidTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := produceRaw(t, c, "malformed", tc.batch)
			if sp.ErrorCode != tc.want.Code {
				t.Fatalf("error %v, want %v", kerr.ErrorForCode(sp.ErrorCode), tc.want)
			}
			if sp.ErrorMessage == nil || *sp.ErrorMessage == "" {
				t.Fatal("no error message names the problem")
			}
			if end := endOffset(t, b, "malformed"); end != 0 {
				t.Fatalf("end offset %d after a refused batch", end)
			}
		})
	}
	// Well-formed records pass, gzip-compressed too, and the connection
	// is still usable.
	if sp := produceRaw(t, c, "malformed", craftBatch(good, 0, 3, 2, now, now+2)); sp.ErrorCode != 0 || sp.BaseOffset != 0 {
		t.Fatalf("good batch: %v at %d", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
	if sp := produceRaw(t, c, "malformed", craftBatch(gz, 1, 3, 2, now, now+2)); sp.ErrorCode != 0 || sp.BaseOffset != 3 {
		t.Fatalf("good gzip batch: %v at %d", kerr.ErrorForCode(sp.ErrorCode), sp.BaseOffset)
	}
}

// A header max timestamp that is not the largest record timestamp is
// corrected, as Kafka does, so retention and the time index see the truth.
func TestProduceCorrectsMaxTimestamp(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "maxts", nil)
	c := dialRaw(t, b)
	now := time.Now().UnixMilli()
	good := encodeRecords(valueRecords(3, []byte("v"))...) // timestamps now, now+1, now+2
	for i, claimed := range []int64{now - 1000, now + 1000} {
		if sp := produceRaw(t, c, "maxts", craftBatch(good, 0, 3, 2, now, claimed)); sp.ErrorCode != 0 {
			t.Fatalf("batch claiming max timestamp %d: %v", claimed, kerr.ErrorForCode(sp.ErrorCode))
		}
		p := b.partitionOf(b.lookupTopic("maxts"), 0)
		p.mu.RLock()
		ref := p.batches[i]
		p.mu.RUnlock()
		stored, err := p.readBatch(b.wal, batchRef{meta: ref})
		if err != nil {
			t.Fatal(err)
		}
		if h := readBatchHeader(stored); h.MaxTimestamp != now+2 || ref.maxTs != now+2 {
			t.Fatalf("stored max timestamp %d (index %d), want %d", h.MaxTimestamp, ref.maxTs, now+2)
		}
		if _, err := parseReplicaBatch(stored); err != nil {
			t.Fatalf("corrected batch fails its CRC: %v", err)
		}
	}
}

func compressWith(t testing.TB, codec int, b []byte) []byte {
	t.Helper()
	switch codec {
	case 1:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	case 3:
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	case 4:
		enc, _ := zstd.NewWriter(nil)
		return enc.EncodeAll(b, nil)
	}
	t.Fatalf("codec %d", codec)
	return nil
}

// bombs returns, per codec, a batch of a few kilobytes whose records
// inflate (or claim to inflate) to far more than inflate bound of a topic
// whose max.message.bytes is 128 KiB.
func bombs(t testing.TB) map[string][]byte {
	now := time.Now().UnixMilli()
	huge := encodeRecords(valueRecords(4, make([]byte, 4<<20))...) // 16 MiB of records
	out := map[string][]byte{}
	for name, codec := range map[string]int{"gzip": 1, "lz4": 3, "zstd": 4} {
		out[name] = craftBatch(compressWith(t, codec, huge), int16(codec), 4, 3, now, now+3)
	}
	// Snappy cannot compress past about 21:1, so its bombs lie about
	// their size: a raw block claiming 2 GiB, and Java's framing with
	// blocks claiming 1 GiB each.
	claim := binary.AppendUvarint(nil, 1<<31-1)
	out["snappy"] = craftBatch(append(claim, 0, 0, 0, 0), 2, 4, 3, now, now+3)
	xerial := []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
	for range 3 {
		blk := binary.AppendUvarint(nil, 1<<30)
		xerial = binary.BigEndian.AppendUint32(xerial, uint32(len(blk)))
		xerial = append(xerial, blk...)
	}
	out["snappy-xerial"] = craftBatch(xerial, 2, 4, 3, now, now+3)
	for name, bt := range out {
		if len(bt) > 128<<10 {
			t.Fatalf("%s bomb is %d bytes", name, len(bt))
		}
	}
	return out
}

// A decompression bomb is refused at produce with MESSAGE_TOO_LARGE (the
// Java producer splits the batch on it) and never stored.
func TestProduceDecompressionBombs(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopicWith(t, b, "bombed", map[string]string{"max.message.bytes": "131072"})
	c := dialRaw(t, b)
	for name, bt := range bombs(t) {
		t.Run(name, func(t *testing.T) {
			sp := produceRaw(t, c, "bombed", bt)
			if sp.ErrorCode != kerr.MessageTooLarge.Code {
				t.Fatalf("%d-byte bomb: %v, want MESSAGE_TOO_LARGE", len(bt), kerr.ErrorForCode(sp.ErrorCode))
			}
			if end := endOffset(t, b, "bombed"); end != 0 {
				t.Fatalf("end offset %d after a refused bomb", end)
			}
		})
	}
	stillServes(t, b)
}

// A bomb already in a log (written before validation existed) is never
// inflated past the bound by ListOffsets by timestamp: the lookup fails
// instead of allocating what the bomb asks for.
func TestListOffsetsDoesNotInflateStoredBombs(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopicWith(t, b, "legacy-bomb", map[string]string{"max.message.bytes": "131072"})
	p := b.partitionOf(b.lookupTopic("legacy-bomb"), 0)
	bt := bombs(t)["gzip"]
	out, _ := p.append(testCtx(t), b.wal, bt, readBatchHeader(bt), false)
	if out.err != nil {
		t.Fatal(out.err)
	}
	<-out.wait.done
	c := dialRaw(t, b)
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(4)
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "legacy-bomb"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp, rp.CurrentLeaderEpoch = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.send(req)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	if err := c.recv(resp); err != nil {
		t.Fatal(err)
	}
	if sp := resp.Topics[0].Partitions[0]; sp.ErrorCode == 0 {
		t.Fatalf("ListOffsets by timestamp inflated a 16 MiB bomb in a 128 KiB topic: offset %d", sp.Offset)
	}
}

// KIP-937: a CreateTime record more than message.timestamp.after.max.ms
// ahead of the broker's clock (one hour by default), or more than
// message.timestamp.before.max.ms behind it, fails the batch with
// INVALID_TIMESTAMP.
func TestProduceTimestampBounds(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	createTopic(t, b, "default-bounds", nil)
	createTopicWith(t, b, "tight-bounds", map[string]string{
		"message.timestamp.before.max.ms": "60000",
		"message.timestamp.after.max.ms":  "60000",
	})
	createTopicWith(t, b, "appendtime", map[string]string{"message.timestamp.type": "LogAppendTime"})
	c := dialRaw(t, b)
	now := time.Now().UnixMilli()
	batchAt := func(ts int64) []byte {
		recs := valueRecords(3, []byte("v"))
		return craftBatch(encodeRecords(recs...), 0, 3, 2, ts, ts+2)
	}
	for _, tc := range []struct {
		topic string
		ts    int64
		want  *kerr.Error
	}{
		{"default-bounds", now, nil},
		{"default-bounds", now - 10*365*24*3600*1000, nil}, // no lower bound by default
		{"default-bounds", now + 30*60*1000, nil},
		{"default-bounds", now + 2*3600*1000, kerr.InvalidTimestamp},
		{"default-bounds", 1 << 62, kerr.InvalidTimestamp},
		{"tight-bounds", now - 30*1000, nil},
		{"tight-bounds", now - 5*60*1000, kerr.InvalidTimestamp},
		{"tight-bounds", now + 5*60*1000, kerr.InvalidTimestamp},
		{"tight-bounds", -1, nil},              // no timestamp at all is not checked, as in Kafka
		{"appendtime", now + 2*3600*1000, nil}, // the broker's clock replaces it
	} {
		name := tc.topic + "@" + strconv.FormatInt(tc.ts-now, 10)
		t.Run(name, func(t *testing.T) {
			before := endOffset(t, b, tc.topic)
			bt := batchAt(tc.ts)
			if tc.ts == -1 {
				bt = craftBatch(encodeRecords(kmsg.Record{Value: []byte("v")}), 0, 1, 0, -1, -1)
			}
			sp := produceRaw(t, c, tc.topic, bt)
			switch {
			case tc.want == nil && sp.ErrorCode != 0:
				t.Fatalf("%v, want success", kerr.ErrorForCode(sp.ErrorCode))
			case tc.want != nil && sp.ErrorCode != tc.want.Code:
				t.Fatalf("%v, want %v", kerr.ErrorForCode(sp.ErrorCode), tc.want)
			case tc.want != nil && endOffset(t, b, tc.topic) != before:
				t.Fatal("a refused batch moved the end offset")
			}
		})
	}
	// The same through a real client: franz-go surfaces the error.
	cl := testClient(t, b)
	err := cl.ProduceSync(testCtx(t), &kgo.Record{Topic: "tight-bounds", Value: []byte("x"), Timestamp: time.Now().Add(time.Hour)}).FirstErr()
	if !errors.Is(err, kerr.InvalidTimestamp) {
		t.Fatalf("franz-go produce an hour ahead: %v, want INVALID_TIMESTAMP", err)
	}
}

// A follower refuses, like a CRC failure, a batch from the leader whose
// records do not match its header or inflate past the bound: nothing is
// appended and no offsets are consumed.
func TestFollowerRefusesInvalidRecords(t *testing.T) {
	p, wal := replicaPartition(t)
	p.setLeadership(2, 1, 3, []int32{1, 2}, []int32{1, 2}, 1)
	ctx := context.Background()
	res, err := p.appendReplica(ctx, wal, replicaBatch(0, 2, 3, -1, -1), 3)
	if err != nil {
		t.Fatal(err)
	}
	waitDurable(t, res)
	now := time.Now().UnixMilli()
	one := encodeRecords(valueRecords(1, []byte("v"))...)
	liar := craftBatch(one, 0, 1<<31-1, 1<<31-2, now, now)
	// One record claiming a compacted span of 2^31 offsets.
	span := craftBatch(one, 0, 1, 1<<31-2, now, now)
	type tc struct {
		name  string
		batch []byte
	}
	cases := []tc{{"count", liar}, {"span", span}}
	p.topic.maxMessageBytes.Store(128 << 10)
	bs := bombs(t)
	for _, name := range []string{"gzip", "lz4", "snappy", "snappy-xerial", "zstd"} {
		cases = append(cases, tc{"bomb " + name, bs[name]})
	}
	for _, c := range cases {
		bt := c.batch
		t.Run(c.name, func(t *testing.T) {
			bt = bytes.Clone(bt)
			setBaseOffset(bt, 2)
			setLeaderEpoch(bt, 3)
			binary.BigEndian.PutUint32(bt[offCRC:], crc32.Checksum(bt[offAttributes:], crc32c))
			if _, err := p.appendReplica(ctx, wal, bt, 3); !errors.Is(err, errBadReplicaBatch) {
				t.Fatalf("appendReplica: %v (next offset now %d), want errBadReplicaBatch", err, p.nextOffset)
			}
			if p.nextOffset != 2 || p.hw != 2 {
				t.Fatalf("next offset %d, durable end %d after a refused batch; want 2", p.nextOffset, p.hw)
			}
		})
	}
	// A compacted batch (records 0 and 2 of 0..3 survive) is accepted.
	recs := valueRecords(4, []byte("v"))
	compacted := craftBatch(encodeRecords(recs[0], recs[2]), 0, 2, 3, now, now+2)
	setBaseOffset(compacted, 2)
	res, err = p.appendReplica(ctx, wal, compacted, 3)
	if err != nil {
		t.Fatalf("compacted batch: %v", err)
	}
	waitDurable(t, res)
	if p.nextOffset != 6 {
		t.Fatalf("next offset %d after a compacted batch of 4 offsets at 2; want 6", p.nextOffset)
	}
}

// varint must read exactly what binary.Varint reads.
func TestVarintMatchesBinary(t *testing.T) {
	var cases [][]byte
	for _, v := range []int64{0, 1, -1, 63, -64, 64, 100, -100, 1 << 20, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		cases = append(cases, binary.AppendVarint(nil, v))
	}
	cases = append(cases, nil, []byte{0x80}, []byte{0xff, 0xff}, bytes.Repeat([]byte{0xff}, 10), append(bytes.Repeat([]byte{0xff}, 9), 2),
		append(bytes.Repeat([]byte{0x80}, 9), 1), bytes.Repeat([]byte{0x80}, 11))
	for _, c := range cases {
		for _, pre := range []int{0, 3} {
			b := append(make([]byte, pre), c...)
			wv, wn := binary.Varint(b[pre:])
			gv, gn := varint(b, pre)
			if wv != gv || wn != gn {
				t.Errorf("% x: varint %d, %d; binary.Varint %d, %d", c, gv, gn, wv, wn)
			}
		}
	}
}
