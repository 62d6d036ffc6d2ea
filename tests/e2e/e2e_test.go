//go:build e2e

// Package e2e drives the docker compose cluster (compose.yaml) from the
// host, as a user would: Kafka clients on the published ports, MinIO on
// its published port, `docker kill` for a crash. `make e2e` (scripts/e2e.sh)
// builds the images, starts the cluster, runs this test and tears the
// cluster down. Against a cluster started by hand:
//
//	docker compose up -d
//	go test -tags e2e -count=1 -v ./tests/e2e/
//
// The build tag keeps `go test ./tests/...` from running it: it needs a
// Docker engine and the cluster running.
//
// Settings (defaults match compose.yaml):
//
//	CHRONIK_E2E_BROKERS   Kafka addresses clients are given, comma-separated
//	CHRONIK_E2E_HTTP      the brokers' HTTP listeners (/readyz), same order
//	CHRONIK_E2E_BUCKET    the brokers' CHRONIK_TIER3_URL as seen from the host
//	CHRONIK_E2E_COMPOSE   the compose command line, project and file included
//	CHRONIK_E2E_KILL      the compose service the crash step kills; default
//	                      chronik-N, N the leader of the topic's partition 0
//	CHRONIK_TEST_BINARY   the chronik binary for `chronik search` (else built)
//	AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   MinIO's keys
package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
)

func TestMain(m *testing.M) { testharness.Main(m) }

type env struct {
	brokers   []string
	http      []string
	bucketURL string
	compose   []string
	kill      string
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func loadEnv() env {
	return env{
		brokers:   strings.Split(envOr("CHRONIK_E2E_BROKERS", "127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092"), ","),
		http:      strings.Split(envOr("CHRONIK_E2E_HTTP", "127.0.0.1:16092,127.0.0.1:26092,127.0.0.1:36092"), ","),
		bucketURL: envOr("CHRONIK_E2E_BUCKET", "minio://127.0.0.1:9000/chronik/archive"),
		compose:   strings.Fields(envOr("CHRONIK_E2E_COMPOSE", "docker compose")),
		kill:      os.Getenv("CHRONIK_E2E_KILL"),
	}
}

// awsEnv is how the host reaches MinIO: compose.yaml's default keys unless
// the environment gives others.
func awsEnv(k string) string {
	switch k {
	case "AWS_ACCESS_KEY_ID":
		return envOr(k, "chronik")
	case "AWS_SECRET_ACCESS_KEY":
		return envOr(k, "chronik-secret")
	}
	return os.Getenv(k)
}

// rec is one record a client was told is stored: acknowledged with its
// partition and offset.
type rec struct {
	Partition int32
	Offset    int64
	Key       string
	Value     string
}

type pos struct {
	p int32
	o int64
}

func TestCompose(t *testing.T) {
	e := loadEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	waitReady(t, e)
	adm := newAdmin(t, e)

	const partitions = 3
	rf := int16(min(3, len(e.brokers)))
	topic := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	// A short segment.ms seals every partition a few seconds after its
	// last write, so the archive step does not wait for a week-long roll;
	// local.retention.ms at 1 deletes local copies as soon as they are
	// archived, so older records are read back from the bucket.
	segMs, localMs := "2000", "1"
	resp, err := adm.CreateTopic(ctx, partitions, rf, map[string]*string{"segment.ms": &segMs, "local.retention.ms": &localMs}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s (%d partitions, RF %d): %v", topic, partitions, rf, err)
	}
	t.Logf("topic %s: %d partitions, replication factor %d, brokers %v", topic, partitions, rf, e.brokers)

	var acked ackLog
	t.Run("franz-go", func(t *testing.T) {
		// A bounded wait: a cluster that cannot satisfy acks=all fails
		// the step instead of hanging it.
		cl := newClient(t, e, kgo.RecordDeliveryTimeout(2*time.Minute))
		const n = 20000
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("franz-%d", i)), Value: jsonValue("franz", i)}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce %d records: %v", n, err)
		}
		for _, r := range recs {
			acked.add(r)
		}
		checkConsumed(t, ctx, e, topic, acked.snapshot())
	})

	t.Run("kcat", func(t *testing.T) {
		if _, err := exec.LookPath("kcat"); err != nil {
			t.Fatalf("kcat is not installed (apt-get install kcat; .ci/run installs it): %v", err)
		}
		const n = 500
		var in bytes.Buffer
		for i := range n {
			fmt.Fprintf(&in, "kcat-%d:%s\n", i, jsonValue("kcat", i))
		}
		cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", strings.Join(e.brokers, ","), "-t", topic, "-K", ":",
			"-X", "acks=all", "-X", "enable.idempotence=true")
		cmd.Stdin = &in
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat -P: %v\n%s", err, out)
		}
		// kcat reports nothing per record, so read everything back with it:
		// its own records and franz-go's.
		got := kcatConsume(t, ctx, e, topic)
		want := map[string]string{}
		for i := range n {
			want[fmt.Sprintf("kcat-%d", i)] = string(jsonValue("kcat", i))
		}
		for _, r := range acked.snapshot() {
			want[r.Key] = r.Value
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g.Value != v {
				t.Fatalf("kcat -C: key %s = %+v (found %v), want value %s; read %d records", k, g, ok, v, len(got))
			}
		}
		for k, r := range got {
			if strings.HasPrefix(k, "kcat-") {
				acked.addRec(r)
			}
		}
	})

	t.Run("archived to MinIO", func(t *testing.T) {
		waitArchived(t, ctx, e, adm, topic)
	})

	t.Run("consumed back from MinIO", func(t *testing.T) {
		// Once the brokers have deleted their local copies of the archived
		// segments, every record read comes from the bucket, through the
		// same Kafka fetches.
		waitLocalGone(t, ctx, e, adm, topic)
		checkConsumed(t, ctx, e, topic, acked.snapshot())
	})

	t.Run("chronik search --bucket", func(t *testing.T) {
		// Every record is archived (above), so the bucket alone answers
		// for all of them: the hits are exactly the records whose JSON
		// value has city paris.
		want := map[pos]bool{}
		for _, r := range acked.snapshot() {
			if strings.Contains(r.Value, `"city":"paris"`) {
				want[pos{r.Partition, r.Offset}] = true
			}
		}
		hits := search(t, ctx, e, topic, "city:paris", len(want)+100)
		got := map[pos]bool{}
		for _, h := range hits {
			got[pos{h.Partition, h.Offset}] = true
		}
		if len(got) != len(want) || len(hits) != len(want) {
			t.Fatalf("search city:paris: %d hits (%d distinct), want %d", len(hits), len(got), len(want))
		}
		for p := range want {
			if !got[p] {
				t.Fatalf("search city:paris lacks partition %d offset %d", p.p, p.o)
			}
		}
	})

	t.Run("docker kill loses no acknowledged record", func(t *testing.T) {
		killLosesNothing(t, ctx, e, topic, &acked)
	})
}

// waitReady polls every broker's /readyz, then the cluster metadata, until
// all brokers are up and known to each other.
func waitReady(t *testing.T, e env) {
	t.Helper()
	testharness.CheckFor(t, 3*time.Minute, 500*time.Millisecond, func() error {
		for _, a := range e.http {
			if err := ready(a); err != nil {
				return err
			}
		}
		return nil
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	testharness.CheckFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return err
		}
		if len(m.Brokers) != len(e.brokers) {
			return fmt.Errorf("metadata lists %d brokers (%v), want %d", len(m.Brokers), m.Brokers, len(e.brokers))
		}
		for _, b := range m.Brokers {
			if addr := fmt.Sprintf("%s:%d", b.Host, b.Port); !slices.Contains(e.brokers, addr) {
				return fmt.Errorf("broker %d advertises %s, which is not one of %v", b.NodeID, addr, e.brokers)
			}
		}
		return nil
	})
}

func ready(addr string) error {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %s: %s", addr, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func newClient(t *testing.T, e env, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newAdmin(t *testing.T, e env) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, e))
}

var cities = []string{"paris", "lyon", "berlin", "oslo", "lima"}

// jsonValue is record i of a producer: a JSON document the search step
// queries by its city field.
func jsonValue(producer string, i int) []byte {
	b, _ := json.Marshal(map[string]any{"producer": producer, "n": i, "city": cities[i%len(cities)]})
	return b
}

// ackLog collects the records whose produce was acknowledged.
type ackLog struct {
	mu   sync.Mutex
	recs []rec
}

func (l *ackLog) add(r *kgo.Record) {
	l.addRec(rec{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)})
}

func (l *ackLog) addRec(r rec) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *ackLog) snapshot() []rec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// consumeAll reads every partition of topic from the start up to the end
// offsets it finds first.
func consumeAll(t *testing.T, ctx context.Context, e env, topic string) map[pos]rec {
	t.Helper()
	adm := newAdmin(t, e)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of partition %d: %v", o.Partition, o.Err)
		}
		want[o.Partition] = o.Offset
	})
	start := map[string]map[int32]kgo.Offset{topic: {}}
	for p := range want {
		start[topic][p] = kgo.NewOffset().AtStart()
	}
	cl := newClient(t, e, kgo.ConsumePartitions(start), kgo.FetchMaxWait(500*time.Millisecond))
	got := map[pos]rec{}
	next := map[int32]int64{}
	done := func() bool {
		for p, end := range want {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for !done() {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("consume %s: stopped at %v, want end offsets %v: %v", topic, next, want, cctx.Err())
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Logf("fetch %s/%d: %v (retrying)", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			got[pos{r.Partition, r.Offset}] = rec{Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Value: string(r.Value)}
			next[r.Partition] = max(next[r.Partition], r.Offset+1)
		})
	}
	return got
}

// checkConsumed fails unless every acknowledged record reads back with its
// key and value at its partition and offset.
func checkConsumed(t *testing.T, ctx context.Context, e env, topic string, acked []rec) {
	t.Helper()
	got := consumeAll(t, ctx, e, topic)
	lost := 0
	for _, r := range acked {
		g, ok := got[pos{r.Partition, r.Offset}]
		if !ok || g.Key != r.Key || g.Value != r.Value {
			if lost < 10 {
				t.Errorf("acknowledged %s at partition %d offset %d: read %+v (present %v)", r.Key, r.Partition, r.Offset, g, ok)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records are missing or changed (%d records read)", lost, len(acked), len(got))
	}
	t.Logf("all %d acknowledged records read back (%d records in the topic)", len(acked), len(got))
}

// kcatConsume reads the whole topic with kcat, keyed by record key.
func kcatConsume(t *testing.T, ctx context.Context, e env, topic string) map[string]rec {
	t.Helper()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", strings.Join(e.brokers, ","), "-t", topic,
		"-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, stderr.Bytes())
	}
	got := map[string]rec{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) != 4 {
			t.Fatalf("kcat -C printed %q, not partition offset key value", sc.Text())
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("kcat -C printed %q", sc.Text())
		}
		got[f[2]] = rec{Partition: int32(p), Offset: o, Key: f[2], Value: f[3]}
	}
	return got
}

// waitArchived waits until every partition's manifest in the bucket covers
// the partition up to its high watermark.
func waitArchived(t *testing.T, ctx context.Context, e env, adm *kadm.Client, topic string) {
	t.Helper()
	store, err := tier3.OpenEnv(ctx, e.bucketURL, awsEnv)
	if err != nil {
		t.Fatalf("open %s: %v", e.bucketURL, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	testharness.CheckFor(t, 3*time.Minute, time.Second, func() error {
		_, id, err := tier3.FindTopic(ctx, store, topic)
		if err != nil {
			return fmt.Errorf("topic %s in %s: %w", topic, e.bucketURL, err)
		}
		var behind []string
		ends.Each(func(o kadm.ListedOffset) {
			m, err := tier3.LoadManifest(ctx, store, id, o.Partition)
			switch {
			case err != nil:
				behind = append(behind, fmt.Sprintf("partition %d: %v", o.Partition, err))
			case m.End() < o.Offset:
				behind = append(behind, fmt.Sprintf("partition %d archived to %d of %d", o.Partition, m.End(), o.Offset))
			}
		})
		if len(behind) > 0 {
			return errors.New(strings.Join(behind, "; "))
		}
		return nil
	})
	t.Logf("every partition of %s is archived in %s up to its end offset", topic, e.bucketURL)
}

// waitLocalGone waits until no partition of topic keeps a record on local
// disk: its earliest local offset (ListOffsets -4) is its end offset.
func waitLocalGone(t *testing.T, ctx context.Context, e env, adm *kadm.Client, topic string) {
	t.Helper()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, e)
	testharness.CheckFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		ends.Each(func(o kadm.ListedOffset) {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition = o.Partition
			rp.CurrentLeaderEpoch = -1
			rp.Timestamp = -4 // earliest local
			rt.Partitions = append(rt.Partitions, rp)
		})
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		var local []string
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				end, _ := ends.Lookup(topic, rp.Partition)
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return fmt.Errorf("earliest local offset of partition %d: %w", rp.Partition, err)
				}
				if rp.Offset < end.Offset {
					local = append(local, fmt.Sprintf("partition %d keeps %d..%d locally", rp.Partition, rp.Offset, end.Offset))
				}
			}
		}
		if len(local) > 0 {
			return errors.New(strings.Join(local, "; "))
		}
		return nil
	})
}

// hit is one line of `chronik search --output jsonl`.
type hit struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// search runs `chronik search --bucket` straight against MinIO, as a user
// with no broker to ask would.
func search(t *testing.T, ctx context.Context, e env, topic, query string, limit int) []hit {
	t.Helper()
	cmd := exec.CommandContext(ctx, testharness.Binary(t), "search", "--bucket", e.bucketURL, "--topic", topic,
		"--limit", strconv.Itoa(limit), "--output", "jsonl", query)
	cmd.Env = append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+awsEnv("AWS_ACCESS_KEY_ID"), "AWS_SECRET_ACCESS_KEY="+awsEnv("AWS_SECRET_ACCESS_KEY"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.Bytes())
	}
	var hits []hit
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var h hit
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatalf("search output line %q: %v", sc.Text(), err)
		}
		if h.Topic != topic {
			t.Fatalf("search hit of topic %q, want %q", h.Topic, topic)
		}
		hits = append(hits, h)
	}
	return hits
}

// killLosesNothing produces with acks=all while one broker container is
// killed (SIGKILL, no shutdown) and started again, then reads the topic
// back and fails if any record whose produce was acknowledged, before or
// during the crash, is missing or changed.
func killLosesNothing(t *testing.T, ctx context.Context, e env, topic string, acked *ackLog) {
	service := e.kill
	if service == "" {
		// A leader's crash is the case that can lose acknowledged
		// records. compose.yaml runs node N as service chronik-N.
		m, err := newAdmin(t, e).Metadata(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		p0, ok := m.Topics[topic].Partitions[0]
		if !ok || p0.Leader < 0 {
			t.Fatalf("partition 0 of %s has no leader: %+v", topic, m.Topics[topic])
		}
		service = fmt.Sprintf("chronik-%d", p0.Leader)
	}
	id := composeContainer(t, ctx, e, service)
	before := len(acked.snapshot())

	cl := newClient(t, e, kgo.RecordDeliveryTimeout(20*time.Second), kgo.RequiredAcks(kgo.AllISRAcks()))
	pctx, stop := context.WithCancel(ctx)
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		produced, fails int
	)
	// Bounded in flight: each record is produced after a slot frees.
	slots := make(chan struct{}, 1000)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-pctx.Done():
				return
			case slots <- struct{}{}:
			}
			r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("crash-%d", i)), Value: jsonValue("crash", i)}
			wg.Add(1)
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				defer wg.Done()
				<-slots
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					fails++
					return
				}
				produced++
				acked.add(r)
			})
		}
	}()
	progress := func(min int) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if produced < min {
				return fmt.Errorf("%d records acknowledged, want %d (%d failed)", produced, min, fails)
			}
			return nil
		}
	}
	testharness.CheckFor(t, time.Minute, 100*time.Millisecond, progress(2000))

	docker(t, ctx, "kill", id)
	t.Logf("killed %s (container %.12s)", service, id)
	mu.Lock()
	atKill := produced
	mu.Unlock()
	if len(e.brokers) > 1 {
		// The survivors keep taking writes: leadership moves off the
		// killed broker.
		testharness.CheckFor(t, 2*time.Minute, 100*time.Millisecond, progress(atKill+2000))
	}

	docker(t, ctx, "start", id)
	waitReady(t, e)
	mu.Lock()
	atRestart := produced
	mu.Unlock()
	testharness.CheckFor(t, 2*time.Minute, 100*time.Millisecond, progress(atRestart+2000))
	stop()
	wg.Wait()
	t.Logf("acknowledged %d records around the crash (%d at the kill, %d at the restart), %d failed",
		produced, atKill, atRestart, fails)

	all := acked.snapshot()
	if len(all) != before+produced {
		t.Fatalf("ack log has %d records, want %d", len(all), before+produced)
	}
	checkConsumed(t, ctx, e, topic, all)
}

// composeContainer returns the id of a compose service's container.
func composeContainer(t *testing.T, ctx context.Context, e env, service string) string {
	t.Helper()
	args := append(slices.Clone(e.compose[1:]), "ps", "-q", service)
	cmd := exec.CommandContext(ctx, e.compose[0], args...)
	out, err := cmd.Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("%s: %q, %v (set CHRONIK_E2E_COMPOSE to the compose command, project and file)", strings.Join(cmd.Args, " "), out, err)
	}
	return id
}

func docker(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
