package hostile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

// Attacks on the record batch: headers that lie about their records,
// timestamps from the future, decompression bombs, and the fuzzers' seeds
// replayed over the wire. broker/validate.go documents the answers.

// repeatFor calls fn until d has passed (at least once) and returns how
// many times it ran.
func repeatFor(d time.Duration, fn func() bool) int {
	n := 0
	for end := time.Now().Add(d); n == 0 || time.Now().Before(end); {
		n++
		if !fn() {
			break
		}
	}
	return n
}

// oneShotWindow is how long an attack that is over in milliseconds is
// repeated, so its traffic window measures something.
func (su *suite) oneShotWindow() time.Duration { return min(su.s.window, 4*time.Second) }

// leaderConn dials the leader of topic/partition.
func leaderConn(t *testing.T, su *suite, topic string, partition int32) (*rawConn, partitionInfo) {
	t.Helper()
	pi := describe(t, su, topic, partition)
	c, err := dialRaw(su.broker(pi.leader).Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, pi
}

// expectRefused produces batch raw and fails t unless the answer is one of
// want.
func expectRefused(t *testing.T, c *rawConn, topic string, batch []byte, what string, want ...*kerr.Error) bool {
	t.Helper()
	a, err := produceRaw(c, topic, 0, batch, -1)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return false
	}
	for _, w := range want {
		if errors.Is(a.err, w) {
			return true
		}
	}
	t.Errorf("%s: answered %v (%q, base offset %d), want one of %v", what, a.err, a.msg, a.baseOffset, want)
	return false
}

func attackLyingBatch(t *testing.T, su *suite) string {
	c, pi := leaderConn(t, su, rawTopic, 0)
	before := endOffset(t, su, rawTopic, 0)
	now := time.Now().UnixMilli()
	one := seqRecords(1, []byte("one"))
	lie := func(n, lod int32) []byte {
		s := plainSpec(n, now)
		s.lastOffsetDelta = lod
		return s.craft(one)
	}
	cases := []struct {
		name  string
		batch []byte
	}{
		{"one record, NumRecords 2^31-1, LastOffsetDelta 2^31-2", lie(1<<31-1, 1<<31-2)},
		{"one record, NumRecords 2^31-1, LastOffsetDelta 0", lie(1<<31-1, 0)},
		{"one record, LastOffsetDelta 2^31-1", lie(1, 1<<31-1)},
		{"one record, NumRecords 0", lie(0, 0)},
		{"offset deltas 1, 0", plainSpec(2, now).craft(encodeRecords(rec{offDelta: 1, value: []byte("a")}, rec{offDelta: 0, value: []byte("b")}))},
		{"offset deltas 0, 0", plainSpec(2, now).craft(encodeRecords(rec{offDelta: 0, value: []byte("a")}, rec{offDelta: 0, value: []byte("b")}))},
		{"offset deltas 0, 2 under LastOffsetDelta 1", plainSpec(2, now).craft(encodeRecords(rec{offDelta: 0, value: []byte("a")}, rec{offDelta: 2, value: []byte("b")}))},
		{"two records, NumRecords 1", func() []byte {
			s := plainSpec(1, now)
			s.lastOffsetDelta = 1
			return s.craft(seqRecords(2, []byte("x")))
		}()},
	}
	sent := 0
	repeatFor(su.oneShotWindow(), func() bool {
		for _, cs := range cases {
			sent++
			if !expectRefused(t, c, rawTopic, cs.batch, cs.name, kerr.InvalidRecord, kerr.CorruptMessage) {
				return false
			}
		}
		return true
	})
	if after := endOffset(t, su, rawTopic, 0); after != before {
		t.Fatalf("end offset moved from %d to %d: a lying batch was stored", before, after)
	}

	// A max timestamp that is not the largest record's is corrected, as
	// Kafka does for CreateTime, not refused: the stored header must say the
	// record's timestamp.
	s := plainSpec(1, now)
	s.maxTs = now - 3_600_000
	a, err := produceRaw(c, rawTopic, 0, s.craft(seqRecords(1, []byte("ts"))), -1)
	if err != nil || a.err != nil {
		t.Fatalf("a batch whose max timestamp is below its record's: %v %v (%q); want it stored with the header corrected", err, a.err, a.msg)
	}
	resp, err := c.roundTrip(fetchReq(11, rawTopic, pi.topicID, 0, a.baseOffset, 1<<20, -1, -1), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fr := resp.(*kmsg.FetchResponse)
	var rb kmsg.RecordBatch
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || rb.ReadFrom(fr.Topics[0].Partitions[0].RecordBatches) != nil {
		t.Fatalf("reading back the corrected batch at offset %d: %+v", a.baseOffset, fr)
	}
	if rb.MaxTimestamp != now {
		t.Fatalf("stored max timestamp %d; the record's is %d", rb.MaxTimestamp, now)
	}
	return fmt.Sprintf("%d lying batches refused, end offset %d kept; lying max timestamp corrected", sent, before)
}

func attackFutureTimestamp(t *testing.T, su *suite) string {
	c, _ := leaderConn(t, su, rawTopic, 0)
	before := endOffset(t, su, rawTopic, 0)
	sent := 0
	repeatFor(su.oneShotWindow(), func() bool {
		sent++
		ahead := time.Now().Add(24 * time.Hour).UnixMilli()
		return expectRefused(t, c, rawTopic, plainSpec(1, ahead).craft(seqRecords(1, []byte("tomorrow"))),
			"CreateTime a day ahead", kerr.InvalidTimestamp)
	})
	if after := endOffset(t, su, rawTopic, 0); after != before {
		t.Fatalf("end offset moved from %d to %d: a future record was stored", before, after)
	}
	return fmt.Sprintf("%d batches a day ahead: INVALID_TIMESTAMP", sent)
}

// bombs are batches of a few kilobytes whose records inflate (or claim to
// inflate) far past the bomb topic's bound: 16 MiB of records against 32 ×
// 128 KiB = 4 MiB.
func bombs(t *testing.T) map[string][]byte {
	now := time.Now().UnixMilli()
	huge := seqRecords(4, make([]byte, 4<<20))
	spec := func(codec int16) batchSpec { s := plainSpec(4, now+3); s.firstTs = now; s.codec = codec; return s }
	out := map[string][]byte{}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(huge)
	w.Close()
	out["gzip"] = spec(1).craft(gz.Bytes())
	var l4 bytes.Buffer
	lw := lz4.NewWriter(&l4)
	lw.Write(huge)
	lw.Close()
	out["lz4"] = spec(3).craft(l4.Bytes())
	enc, _ := zstd.NewWriter(nil)
	out["zstd"] = spec(4).craft(enc.EncodeAll(huge, nil))
	// Snappy cannot compress past about 21:1, so its bombs lie about their
	// size: a raw block claiming 2 GiB, and Java's xerial framing with
	// blocks claiming 1 GiB each.
	out["snappy-claim"] = spec(2).craft(append(binary.AppendUvarint(nil, 1<<31-1), 0, 0, 0, 0))
	xerial := []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
	for range 3 {
		blk := binary.AppendUvarint(nil, 1<<30)
		xerial = binary.BigEndian.AppendUint32(xerial, uint32(len(blk)))
		xerial = append(xerial, blk...)
	}
	out["snappy-xerial"] = spec(2).craft(xerial)
	for name, b := range out {
		if len(b) > 128<<10 {
			t.Fatalf("the %s bomb is %d bytes; a bomb is small", name, len(b))
		}
	}
	return out
}

func attackBombs(t *testing.T, su *suite) string {
	c, _ := leaderConn(t, su, bombTopic, 0)
	before := endOffset(t, su, bombTopic, 0)
	bs := bombs(t)
	names := make([]string, 0, len(bs))
	for name := range bs {
		names = append(names, name)
	}
	slices.Sort(names)
	sent := 0
	repeatFor(su.s.window, func() bool {
		for _, name := range names {
			sent++
			if !expectRefused(t, c, bombTopic, bs[name], name+" bomb", kerr.MessageTooLarge) {
				return false
			}
		}
		return true
	})
	if after := endOffset(t, su, bombTopic, 0); after != before {
		t.Fatalf("end offset moved from %d to %d: a bomb was stored", before, after)
	}
	return fmt.Sprintf("%d bombs (%v): MESSAGE_TOO_LARGE", sent, names)
}

// fuzzFrames are the seeds of broker/fuzz_test.go (FuzzRequest's request
// bodies, FuzzValidateRecords' batches inside a produce) and a few frames
// no fuzzer needs to find, each a whole frame with its size prefix.
func fuzzFrames(t *testing.T) map[string][]byte {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	out := map[string][]byte{}
	req := func(name string, r kmsg.Request) { out[name] = f.AppendRequest(nil, r, 7) }
	body := func(name string, b []byte) {
		out[name] = append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}

	req("api-versions", kmsg.NewPtrApiVersionsRequest())
	md := kmsg.NewPtrMetadataRequest()
	name := fuzzTopic
	md.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	req("metadata", md)
	now := time.Now().UnixMilli()
	req("produce-plain", produceReq(fuzzTopic, 0, plainSpec(3, now).craft(seqRecords(3, []byte("v"))), 1))
	idem := plainSpec(2, now)
	idem.producerID, idem.producerEpoch, idem.firstSeq = 9, 0, 0
	req("produce-idempotent-acks0", produceReq(fuzzTopic, 0, idem.craft(seqRecords(2, []byte("v"))), -1))
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(seqRecords(3, []byte("v")))
	w.Close()
	gzs := plainSpec(3, now)
	gzs.codec = 1
	req("produce-gzip", produceReq(fuzzTopic, 0, gzs.craft(gz.Bytes()), 1))
	lie := plainSpec(1<<31-1, now)
	lie.lastOffsetDelta = 1<<31 - 2
	req("produce-count-lie", produceReq(fuzzTopic, 0, lie.craft(seqRecords(1, []byte("v"))), 1))
	req("fetch", fetchReq(11, fuzzTopic, [16]byte{}, 0, 0, 1<<20, -1, -1))
	ct := kmsg.NewPtrCreateTopicsRequest()
	ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "fuzz2", NumPartitions: 2, ReplicationFactor: 1}}
	req("create-topics", ct)
	req("describe-configs", kmsg.NewPtrDescribeConfigsRequest())
	req("init-producer-id", kmsg.NewPtrInitProducerIDRequest())
	body("empty", nil)
	body("api-versions-v99", []byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	body("produce-huge-client-id", []byte{0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff})

	// FuzzValidateRecords' seeds, each the records of one produce.
	plain := plainSpec(5, now).craft(seqRecords(5, []byte("fuzz value")))
	batches := map[string][]byte{
		"batch-plain":          plain,
		"batch-empty":          {},
		"batch-header-only":    plain[:61],
		"batch-trailing-bytes": append(bytes.Clone(plain), 0xff, 0xff, 0xff),
		"batch-count-lie": func() []byte {
			s := plainSpec(1<<31-1, now)
			s.lastOffsetDelta = 1<<31 - 2
			return s.craft(seqRecords(5, []byte("x")))
		}(),
		"batch-record-2^30": plainSpec(1, now).craft(append(binary.AppendVarint(nil, 1<<30), 0, 0)),
		"batch-snappy-claim": func() []byte {
			s := plainSpec(5, now)
			s.codec = 2
			return s.craft(append(binary.AppendUvarint(nil, 1<<31-1), 0, 0))
		}(),
	}
	for name, b := range batches {
		req(name, produceReq(fuzzTopic, 0, b, 1))
	}

	// Frames: a negative size, sizes below a request header, the largest
	// size with nothing after it.
	out["size-negative"] = []byte{0xff, 0xff, 0xff, 0xff}
	out["size-zero"] = []byte{0, 0, 0, 0}
	out["size-seven"] = []byte{0, 0, 0, 7, 0, 18, 0, 3, 0, 0, 0}
	out["size-max"] = []byte{0x7f, 0xff, 0xff, 0xff}
	return out
}

func attackFuzzSeeds(t *testing.T, su *suite) string {
	pi := describe(t, su, fuzzTopic, 0)
	b := su.broker(pi.leader)
	frames := fuzzFrames(t)
	names := make([]string, 0, len(frames))
	for name := range frames {
		names = append(names, name)
	}
	slices.Sort(names)
	answered, closed, rounds := 0, 0, 0
	repeatFor(su.oneShotWindow(), func() bool {
		rounds++
		return replayFrames(t, b, pi.leader, names, frames, &answered, &closed)
	})
	return fmt.Sprintf("%d frames × %d: %d answered, %d closed; broker %d serving", len(names), rounds, answered, closed, pi.leader)
}

// replayFrames sends each frame on a connection of its own and waits for
// an answer or the close; it returns false once the broker stops serving.
func replayFrames(t *testing.T, b *testharness.Broker, id int32, names []string, frames map[string][]byte, answered, closed *int) bool {
	for _, name := range names {
		c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
		if err != nil {
			t.Errorf("%s: dialling broker %d: %v", name, id, err)
			return false
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(frames[name]); err != nil {
			*closed++ // refused before it was all written
			c.Close()
			continue
		}
		_, err = readFrame(c, 64<<20)
		var ne net.Error
		switch {
		case err == nil:
			*answered++
		case errors.As(err, &ne) && ne.Timeout():
			t.Errorf("%s: neither answered nor closed within 10s", name)
		default:
			*closed++
		}
		c.Close()
		if err := testharness.ProbeAPIVersions(b.Addr(), 5*time.Second); err != nil {
			t.Errorf("broker %d after %s: %v", id, name, err)
			return false
		}
	}
	return true
}
