// Package compat_test checks that unmodified Kafka clients produce to and
// consume from a real Chronik broker over TCP, with every compression codec,
// keys and headers, and read back exactly what they wrote.
//
// Every client writes records 0..n-1 to a fresh 3-partition topic, record i
// to partition i%3, so partition p must hold records p, p+3, p+6, … at offsets
// 0, 1, 2, …: the check needs no copy of what was written, catches a lost,
// duplicated or reordered record at the first offset it touches, and also
// checks the offsets the producers were acknowledged with.
//
//	go test ./tests/compat                            # against ./cmd/chronik
//	CHRONIK_TEST_TARGET=kfake go test ./tests/compat  # against franz-go's kfake
//	go test ./tests/compat -run 'TestCompat/sarama/zstd'
//	CHRONIK_COMPAT_RECORDS=5000 go test ./tests/compat  # fewer records per run
package compat_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const partitions = 3

// codec is a compression codec by its Kafka compression.type name and its
// record batch attribute bits.
type codec struct {
	name string
	id   int8
}

var codecs = []codec{{"none", 0}, {"gzip", 1}, {"snappy", 2}, {"lz4", 3}, {"zstd", 4}}

// run is one (client, codec) case: a topic of its own and n records.
type run struct {
	addr  string
	topic string
	codec codec
	n     int
}

// client adapts one Kafka client library to the suite.
type client struct {
	name string
	// produce writes records 0..n-1, record i to partition i%partitions with
	// key(i), value(i) and headers(r, i), and returns once all are
	// acknowledged. It checks each acknowledged offset with checkAck where
	// the client reports it.
	produce func(ctx context.Context, t *testing.T, r run) error
	// consume reads the topic from the beginning of every partition without
	// a consumer group, passing each record to c.add, until c.done() or an
	// error.
	consume func(ctx context.Context, t *testing.T, r run, c *checker) error
	// headers are the headers the client writes with record i; nil means
	// goHeaders.
	headers func(r run, i int) []header
}

// TestCompat runs every client with every codec, one topic per pair, against
// one broker.
func TestCompat(t *testing.T) {
	n := recordsPerRun(t)
	b := testharness.Start(t, testharness.Options{})
	adm, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()

	for _, cl := range []client{franzGo, sarama, kafkaGo, confluent, kcat} {
		t.Run(cl.name, func(t *testing.T) {
			if cl.name == "kcat" {
				requireKcat(t)
			}
			for _, cd := range codecs {
				t.Run(cd.name, func(t *testing.T) {
					r := run{addr: b.Addr(), topic: "compat-" + cl.name + "-" + cd.name, codec: cd, n: n}
					testClient(t, adm, cl, r)
				})
			}
		})
	}
}

func testClient(t *testing.T, adm *kgo.Client, cl client, r run) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	createTopic(ctx, t, adm, r.topic)

	start := time.Now()
	if err := cl.produce(ctx, t, r); err != nil {
		t.Fatalf("produce: %v", err)
	}
	produced := time.Since(start)
	checkOffsets(ctx, t, adm, r)
	checkStoredCodec(ctx, t, adm, cl, r)

	start = time.Now()
	headers := cl.headers
	if headers == nil {
		headers = goHeaders
	}
	c := &checker{r: r, headers: headers}
	if err := cl.consume(ctx, t, r, c); err != nil {
		t.Fatalf("consume: %v (after %d good records)", err, c.total)
	}
	if !c.done() {
		t.Fatalf("consume returned after %d of %d records", c.total, r.n)
	}
	t.Logf("%d records: produced in %v, consumed in %v", r.n, produced.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// recordsPerRun is 100,000, 10,000 with -short, or CHRONIK_COMPAT_RECORDS.
func recordsPerRun(t *testing.T) int {
	if s := os.Getenv("CHRONIK_COMPAT_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < partitions {
			t.Fatalf("CHRONIK_COMPAT_RECORDS=%q: want an integer ≥ %d", s, partitions)
		}
		return n
	}
	if testing.Short() {
		return 10_000
	}
	return 100_000
}

// Records. Values are deterministic and mildly compressible (words drawn by
// a hash of the index), contain neither ':' nor tabs nor newlines (kcat's
// delimiters), and are about 80 bytes.

var words = [...]string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"}

func key(i int) []byte { return fmt.Appendf(nil, "key-%07d", i) }

func value(i int) []byte {
	v := fmt.Appendf(nil, "value-%07d", i)
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	for range 10 {
		v = append(v, ' ')
		v = append(v, words[x>>60]...)
		x = x*6364136223846793005 + 1442695040888963407
	}
	return v
}

func partitionOf(i int) int32 { return int32(i % partitions) }

// offsetOf is record i's offset: the number of earlier records in its
// partition.
func offsetOf(i int) int64 { return int64(i / partitions) }

// countIn is the number of records partition p holds after a run of n.
func countIn(p int32, n int) int64 { return int64((n - int(p) + partitions - 1) / partitions) }

type header struct{ Key, Value string }

// goHeaders are what the Go clients write: one header varying per record and
// one naming the codec.
func goHeaders(r run, i int) []header {
	return []header{{"idx", strconv.Itoa(i)}, {"codec", r.codec.name}}
}

// checkAck checks the partition and offset a producer was acknowledged with
// for record i.
func checkAck(i int, partition int32, offset int64) error {
	if partition != partitionOf(i) || offset != offsetOf(i) {
		return fmt.Errorf("record %d acknowledged at partition %d offset %d, want partition %d offset %d",
			i, partition, offset, partitionOf(i), offsetOf(i))
	}
	return nil
}

// record is a consumed record in a form cmp.Diff prints readably.
type record struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Headers   []header
}

func (a *record) equal(b *record) bool {
	if a.Partition != b.Partition || a.Offset != b.Offset || a.Key != b.Key || a.Value != b.Value || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i] != b.Headers[i] {
			return false
		}
	}
	return true
}

// checker verifies consumed records one at a time in constant memory: the
// next record of partition p must be the one at offset next[p].
type checker struct {
	r       run
	headers func(r run, i int) []header
	next    [partitions]int64
	total   int
}

func (c *checker) add(got record) error {
	p := got.Partition
	if p < 0 || p >= partitions {
		return fmt.Errorf("record from partition %d of a %d-partition topic", p, partitions)
	}
	o := c.next[p]
	if o >= countIn(p, c.r.n) {
		return fmt.Errorf("partition %d: extra record at offset %d beyond the %d written: %+v", p, got.Offset, countIn(p, c.r.n), got)
	}
	i := int(o)*partitions + int(p)
	want := record{Partition: p, Offset: o, Key: string(key(i)), Value: string(value(i)), Headers: c.headers(c.r, i)}
	if !want.equal(&got) {
		return fmt.Errorf("partition %d: record %d (-want +got):\n%s", p, i, cmp.Diff(want, got))
	}
	c.next[p]++
	c.total++
	return nil
}

func (c *checker) done() bool { return c.total == c.r.n }

// partitionDone reports whether every record of partition p has been seen.
func (c *checker) partitionDone(p int32) bool { return c.next[p] == countIn(p, c.r.n) }

func createTopic(ctx context.Context, t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	if resp.Err != nil {
		t.Fatalf("creating topic %s: %v %s", topic, resp.Err, resp.ErrMessage)
	}
}

// checkOffsets checks, after producing, that each partition holds exactly the
// records written to it from offset 0: nothing lost, nothing duplicated.
func checkOffsets(ctx context.Context, t *testing.T, cl *kgo.Client, r run) {
	t.Helper()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, r.topic)
	if err != nil {
		t.Fatalf("ListStartOffsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, r.topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	type span struct{ Start, End int64 }
	got, want := map[int32]span{}, map[int32]span{}
	for p := int32(0); p < partitions; p++ {
		want[p] = span{0, countIn(p, r.n)}
		s, _ := starts.Lookup(r.topic, p)
		e, _ := ends.Lookup(r.topic, p)
		if s.Err != nil || e.Err != nil {
			t.Fatalf("partition %d: list offsets: start %v, end %v", p, s.Err, e.Err)
		}
		got[p] = span{s.Offset, e.Offset}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("log start/end offsets per partition after producing (-want +got):\n%s", diff)
	}
}

// checkStoredCodec fetches the head of each partition and checks the broker
// stored the batches as the client sent them: with the run's codec, or
// uncompressed where a client chose not to compress a batch that would not
// shrink. Every client must compress with every codec: the broker advertises
// what even old librdkafka releases probe for before they compress.
func checkStoredCodec(ctx context.Context, t *testing.T, cl *kgo.Client, c client, r run) {
	t.Helper()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, r.topic)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	td := topics[r.topic]
	if td.Err != nil {
		t.Fatalf("metadata for %s: %v", r.topic, td.Err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxBytes = 16 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = r.topic, td.ID
	for p := int32(0); p < partitions; p++ {
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p
		rp.PartitionMaxBytes = 4 << 20 // above any client's batch size
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	seen := map[int32]map[int8]int{} // partition → codec id → batches
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("fetch partition %d: %v", rp.Partition, err)
			}
			seen[rp.Partition] = map[int8]int{}
			for data := rp.RecordBatches; len(data) >= 12; {
				n := 12 + int(int32(binary.BigEndian.Uint32(data[8:])))
				if n > len(data) {
					break // a partial batch ends a fetch response
				}
				var batch kmsg.RecordBatch
				if err := batch.ReadFrom(data[:n]); err != nil {
					t.Fatalf("partition %d: decoding batch: %v", rp.Partition, err)
				}
				seen[rp.Partition][int8(batch.Attributes&0x07)]++
				data = data[n:]
			}
		}
	}
	for p := int32(0); p < partitions; p++ {
		batches := seen[p]
		if batches[r.codec.id] == 0 || len(batches) > 2 || (len(batches) == 2 && batches[0] == 0) {
			t.Fatalf("partition %d: batch codecs (attribute id → batches) %v, want %d (%s), possibly with some 0 (none)",
				p, batches, r.codec.id, r.codec.name)
		}
	}
}
