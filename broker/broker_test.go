package broker

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func produceN(t *testing.T, cl *kgo.Client, topic string, n int, codec kgo.CompressionCodec) {
	t.Helper()
	ctx := testCtx(t)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:   topic,
			Key:     []byte("key-" + strconv.Itoa(i%17)),
			Value:   []byte(fmt.Sprintf("value-%06d", i)),
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}},
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads every record of topic from the start until n are seen.
func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestProduceConsumeEveryCodec(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	for name, codec := range codecs {
		topic := "codec-" + name
		t.Run(topic, func(t *testing.T) {
			cl := testClient(t, b, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
			produceN(t, cl, topic, 5000, codec)
			recs := consumeAll(t, b.Addr().String(), topic, 5000)
			if len(recs) != 5000 {
				t.Fatalf("got %d records, want 5000", len(recs))
			}
			for i, r := range recs {
				if want := fmt.Sprintf("value-%06d", i); string(r.Value) != want || r.Offset != int64(i) {
					t.Fatalf("record %d: offset %d value %q, want offset %d value %q", i, r.Offset, r.Value, i, want)
				}
				if len(r.Headers) != 1 || string(r.Headers[0].Value) != strconv.Itoa(i) {
					t.Fatalf("record %d headers %v", i, r.Headers)
				}
			}
		})
	}
}

func TestRestartServesEverything(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, func(c *Config) { c.DefaultPartitions = 4 })
	cl := testClient(t, b, kgo.DefaultProduceTopic("durable"))
	produceN(t, cl, "durable", 20000, kgo.NoCompression())
	cl.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, nil)
	recs := consumeAll(t, b2.Addr().String(), "durable", 20000)
	seen := make(map[string]bool)
	for _, r := range recs {
		if seen[string(r.Value)] {
			t.Fatalf("duplicate %s", r.Value)
		}
		seen[string(r.Value)] = true
	}
	if len(seen) != 20000 {
		t.Fatalf("got %d distinct records after restart, want 20000", len(seen))
	}
	// Appends continue after the recovered end of every partition.
	cl2 := testClient(t, b2, kgo.DefaultProduceTopic("durable"))
	r := cl2.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("after"), Partition: 0})
	if err := r.FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl2)
	ends, err := adm.ListEndOffsets(testCtx(t), "durable")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != 20001 {
		t.Fatalf("end offsets sum to %d after restart and one produce, want 20001", total)
	}
}

func TestTopicAdmin(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, func(c *Config) { c.AutoCreateTopics = false })
	adm := kadm.NewClient(testClient(t, b))
	ctx := testCtx(t)

	if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("1000")}, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, "orders"); !errorsIs(err, kerr.TopicAlreadyExists) {
		t.Fatalf("duplicate create: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, "rf3"); !errorsIs(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("rf=3 on one broker: %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "bad/name"); !errorsIs(err, kerr.InvalidTopicException) {
		t.Fatalf("bad name: %v, want INVALID_TOPIC_EXCEPTION", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, "badcfg"); !errorsIs(err, kerr.InvalidConfig) {
		t.Fatalf("bad config: %v, want INVALID_CONFIG", err)
	}

	rcs, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if v := configValue(t, rcs, "retention.ms"); v != "1000" {
		t.Fatalf("retention.ms = %q, want 1000", v)
	}
	if v := configValue(t, rcs, "cleanup.policy"); v != "delete" {
		t.Fatalf("cleanup.policy = %q, want default delete", v)
	}

	alter := []kadm.AlterConfig{{Name: "cleanup.policy", Op: kadm.AppendConfig, Value: kadm.StringPtr("compact")}, {Name: "retention.ms", Op: kadm.DeleteConfig}}
	if res, err := adm.AlterTopicConfigs(ctx, alter, "orders"); err != nil || res[0].Err != nil {
		t.Fatalf("incremental alter: %v %v", err, res)
	}
	if res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "no.such.config", Value: kadm.StringPtr("1")}}, "orders"); err != nil || !errorsIs(res[0].Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %v %v, want INVALID_CONFIG", err, res)
	}
	if _, err := adm.CreatePartitions(ctx, 2, "orders"); err != nil {
		t.Fatal(err)
	}
	if res, _ := adm.UpdatePartitions(ctx, 2, "orders"); !errorsIs(res["orders"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrink: %v, want INVALID_PARTITIONS", res["orders"].Err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "gone"); err != nil {
		t.Fatal(err)
	}
	if res, err := adm.DeleteTopics(ctx, "gone"); err != nil || res["gone"].Err != nil {
		t.Fatalf("delete: %v %v", err, res)
	}

	// Everything above is durable.
	b.Close()
	b2 := testBroker(t, dir, func(c *Config) { c.AutoCreateTopics = false })
	adm2 := kadm.NewClient(testClient(t, b2))
	tds, err := adm2.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := tds.Names(); len(got) != 1 || got[0] != "orders" {
		t.Fatalf("topics after restart %v, want [orders]", got)
	}
	if n := len(tds["orders"].Partitions); n != 5 {
		t.Fatalf("orders has %d partitions after restart, want 5", n)
	}
	rcs, err = adm2.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if v := configValue(t, rcs, "cleanup.policy"); v != "delete,compact" {
		t.Fatalf("cleanup.policy after restart = %q, want delete,compact", v)
	}
	if v := configValue(t, rcs, "retention.ms"); v != "604800000" {
		t.Fatalf("retention.ms after delete = %q, want the default", v)
	}
}

func configValue(t *testing.T, rcs kadm.ResourceConfigs, name string) string {
	t.Helper()
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == name && c.Value != nil {
				return *c.Value
			}
		}
	}
	t.Fatalf("config %s not described", name)
	return ""
}

func errorsIs(err error, target error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestListOffsetsByTimestamp(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	cl := testClient(t, b, kgo.DefaultProduceTopic("times"), kgo.ProducerLinger(0))
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := 0; i < 100; i++ {
		recs = append(recs, &kgo.Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * 10 * time.Millisecond)})
	}
	if err := cl.ProduceSync(testCtx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	for _, tc := range []struct {
		ms   int64
		want int64
	}{
		{base.UnixMilli() - 1, 0},
		{base.UnixMilli(), 0},
		{base.UnixMilli() + 1, 1},
		{base.UnixMilli() + 425, 43},
		{base.UnixMilli() + 990, 99},
		{base.UnixMilli() + 991, -1},
	} {
		lo, err := adm.ListOffsetsAfterMilli(testCtx(t), tc.ms, "times")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := lo.Lookup("times", 0)
		if o.Err != nil || o.Offset != tc.want {
			// kadm maps "no such offset" to the end offset.
			if !(tc.want == -1 && o.Offset == 100) {
				t.Errorf("ListOffsets(%d): offset %d err %v, want %d", tc.ms, o.Offset, o.Err, tc.want)
			}
		}
	}
}

func TestFetchLongPollWakesOnProduce(t *testing.T) {
	b := testBroker(t, t.TempDir(), nil)
	prod := testClient(t, b, kgo.DefaultProduceTopic("poll"))
	adm := kadm.NewClient(prod)
	if _, err := adm.CreateTopic(testCtx(t), 1, 1, nil, "poll"); err != nil {
		t.Fatal(err)
	}
	cons := testClient(t, b, kgo.ConsumeTopics("poll"), kgo.FetchMaxWait(20*time.Second))
	got := make(chan []byte, 1)
	go func() {
		fs := cons.PollFetches(testCtx(t))
		if recs := fs.Records(); len(recs) > 0 {
			got <- recs[0].Value
		}
		close(got)
	}()
	// Give the consumer a moment to start its long poll, then produce.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := prod.ProduceSync(testCtx(t), &kgo.Record{Value: []byte("wake")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-got:
			if !bytes.Equal(v, []byte("wake")) {
				t.Fatalf("got %q", v)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatal("long-polling fetch did not return the produced record")
}

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	b := testBroker(t, dir, nil)
	cfg := b.cfg
	cfg.KafkaAddr = "127.0.0.1:0"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in use by another Chronik process") {
		t.Fatalf("second broker on the same data dir: %v, want an in-use error", err)
	}
	b.Close()
	b2, err := New(cfg)
	if err != nil {
		t.Fatalf("after the first broker closed: %v", err)
	}
	b2.Close()
}
