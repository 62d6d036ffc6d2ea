// Package hostile_test attacks a running three-broker cluster the way a
// hostile or broken client would, while well-behaved traffic runs beside
// the attacks, and checks that each attack gets its documented answer and
// that the cluster keeps serving everybody else.
//
// One cluster (RF 3, min.insync.replicas 2) runs the whole suite with the
// limits below made small enough to hit in seconds. One acks=all producer
// (traffic rate, default 2,000 records/s) and one consumer run throughout;
// a baseline window is measured before the first attack. Each attack is a
// subtest whose window is held to:
//
//   - the answer the broker documents for it (an error code, an HTTP
//     status, a closed connection);
//   - every broker's RSS growing by at most rssHeadroom and staying under
//     rssCeiling, and its WAL growing by at most walGrowthBound;
//   - the traffic's ack throughput at least minThroughputRatio of the
//     baseline, and its p99 ack latency under maxP99.
//
// At the end every acknowledged record is read back. The attacks, in the
// order they run, and the answers they must get:
//
//	lying-batch              counts, last offset deltas and offset deltas that lie, behind a
//	                         valid CRC: INVALID_RECORD (or CORRUPT_MESSAGE), end offset kept;
//	                         a lying max timestamp is corrected, as Kafka does (broker/validate.go)
//	future-timestamp         CreateTime a day ahead: INVALID_TIMESTAMP
//	bombs                    gzip, lz4, zstd and snappy records inflating past 32 × max.message.bytes:
//	                         MESSAGE_TOO_LARGE (internal/inflate), nothing stored
//	fuzz-seeds               broker/fuzz_test.go's seeds as raw frames: an answer or a close, broker alive
//	slowloris                8 connections per broker announcing 100 MiB: closed after
//	                         CHRONIK_REQUEST_READ_TIMEOUT_MS, traffic unaffected
//	non-reading-fetch        pipelined Fetches of 8 MB never read: closed after
//	                         CHRONIK_RESPONSE_WRITE_TIMEOUT_MS, RSS bounded by CHRONIK_CONNECTION_MAX_UNSENT_BYTES
//	connection-flood         2 × CHRONIK_MAX_CONNECTIONS_PER_IP connections: the excess closed at once
//	producer-id-flood        20,000 invented idempotent producers on one partition:
//	                         chronik_producer_ids within CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION
//	producer-id-claim        InitProducerId naming a live producer's ID and epoch: it is not fenced
//	search                   8 concurrent searches: 429 with Retry-After past CHRONIK_SEARCH_MAX_CONCURRENT;
//	                         10,000,000 hits: 400 naming CHRONIK_SEARCH_MAX_HITS
//	auto-create-flood        Metadata auto-creating 3,000 topics: at most CHRONIK_MAX_PARTITIONS
//	                         partitions; CreateTopics past it POLICY_VIOLATION (or INVALID_PARTITIONS)
//	spoofed-replica          Fetches claiming a follower's ID, with and without guessed broker epochs
//	                         (KIP-903): STALE_BROKER_EPOCH, counted, no ISR or HW effect
//	spoofed-replica-min-isr  the follower killed, min.insync.replicas 3, spoofing it: acks=all
//	                         produce NOT_ENOUGH_REPLICAS(_AFTER_APPEND) or a timeout, never OK
//	duplicate-node-id        a fourth broker started as node 2: exits naming the duplicate node
//	                         ID; broker 2 stays registered and serving
//
//	go test -count=1 -v ./tests/hostile/
//	CHRONIK_HOSTILE_LONG=1 go test -count=1 -v -timeout 30m ./tests/hostile/   # 60 s attack windows
//	CHRONIK_HOSTILE_ONLY=slowloris,bombs go test ./tests/hostile/             # a few attacks
//	CHRONIK_HOSTILE_RATE=500 go test ./tests/hostile/                          # lighter traffic
//
// Build the broker once and reuse it with CHRONIK_TEST_BINARY=path.
package hostile_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// The limits the cluster runs with: small, so that each attack reaches its
// limit within its window.
const (
	requestReadTimeout   = 3 * time.Second
	responseWriteTimeout = 3 * time.Second
	// maxUnsentBytes bounds what one connection may have the broker hold
	// for a client that does not read.
	maxUnsentBytes      = 4 << 20
	maxConnectionsPerIP = 200
	maxProducerIDs      = 1000 // per partition
	maxPartitions       = 200
	searchMaxHits       = 10_000
	searchMaxConcurrent = 2
	// replicaLagTimeMax is short so that a killed follower leaves the ISR
	// within seconds and acks=all traffic resumes on the other two.
	replicaLagTimeMax = 5 * time.Second
)

// The bounds each attack window is held to.
const (
	// rssHeadroom is how far a broker's RSS may rise during an attack
	// window above where it was when the window began (Go keeps freed
	// memory a while, so an earlier window's peak would hide or blame the
	// wrong attack). The largest thing an attack may legitimately
	// make a broker hold is a few inflate buffers (32 × max.message.bytes,
	// 4 MiB on the bomb topic), the unsent bytes of the non-reading
	// fetchers (maxUnsentBytes each) and the buffers of a few hundred
	// connections; with Go's heap doubling before a collection that is well
	// under 256 MiB. A broker inflating a bomb (16 MiB and up), queueing
	// whole fetch answers for clients that never read, or reading a 100 MiB
	// request it was promised, goes past it.
	rssHeadroom = 256 << 20
	// rssCeiling is what no broker's RSS may pass at any point of the
	// suite, so growth spread over several windows is caught too: the
	// baseline is about 50-70 MiB, and the suite's data (tens of MB) lives
	// on disk, not in memory.
	rssCeiling = 1 << 30
	// minWindow is the shortest window traffic is measured over: an attack
	// that is over sooner is measured with its aftermath, so a ratio of
	// rates is not taken over a few hundred records.
	minWindow = 3 * time.Second
	// walGrowthBound is how much a broker's WAL may grow during one attack
	// window. The traffic writes about 0.3 MB/s to every broker (RF 3),
	// the producer ID flood about 2 MB; 64 MiB is far above both, and far
	// below what storing what the attacks send would take.
	walGrowthBound = 64 << 20
	// minThroughputRatio and maxP99 are what the well-behaved traffic keeps
	// during an attack: at least half its baseline ack rate, and 99 % of
	// its records acknowledged within a second.
	minThroughputRatio = 0.5
	maxP99             = time.Second
)

// clusterEnv sets the limits above. Settings main does not know yet are
// ignored by its brokers.
func clusterEnv() []string {
	return []string{
		"CHRONIK_REQUEST_READ_TIMEOUT_MS=" + ms(requestReadTimeout),
		"CHRONIK_RESPONSE_WRITE_TIMEOUT_MS=" + ms(responseWriteTimeout),
		"CHRONIK_CONNECTION_MAX_UNSENT_BYTES=" + strconv.Itoa(maxUnsentBytes),
		"CHRONIK_MAX_CONNECTIONS_PER_IP=" + strconv.Itoa(maxConnectionsPerIP),
		"CHRONIK_PRODUCER_IDS_MAX_PER_PARTITION=" + strconv.Itoa(maxProducerIDs),
		"CHRONIK_MAX_PARTITIONS=" + strconv.Itoa(maxPartitions),
		"CHRONIK_SEARCH_MAX_HITS=" + strconv.Itoa(searchMaxHits),
		"CHRONIK_SEARCH_MAX_CONCURRENT=" + strconv.Itoa(searchMaxConcurrent),
		"CHRONIK_REPLICA_LAG_TIME_MAX_MS=" + ms(replicaLagTimeMax),
		"CHRONIK_INDEX_WORKERS=0",
	}
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// The suite's topics, all RF 3.
const (
	trafficTopic = "traffic" // the well-behaved load, 3 partitions
	rawTopic     = "raw"     // target of malformed batches, 1 partition, nothing else writes it
	bombTopic    = "bombs"   // max.message.bytes 128 KiB: an inflate bound of 4 MiB
	bigTopic     = "big"     // several MB for the fetchers that never read
	spoofTopic   = "spoof"
	pidTopic     = "pids"
	idemTopic    = "idem"
	searchTopic  = "searchable"
	fuzzTopic    = "fuzz"
)

// settings are the suite's knobs, read from the environment.
type settings struct {
	window time.Duration // how long each sustained attack runs
	rate   int           // traffic records/s
	only   map[string]bool
}

func loadSettings(t *testing.T) settings {
	s := settings{window: 6 * time.Second, rate: 2000}
	if os.Getenv("CHRONIK_HOSTILE_LONG") != "" {
		s.window = 60 * time.Second
	}
	if v := os.Getenv("CHRONIK_HOSTILE_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("CHRONIK_HOSTILE_RATE=%q: want records/s, at least 100", v)
		}
		s.rate = n
	}
	if v := os.Getenv("CHRONIK_HOSTILE_ONLY"); v != "" {
		s.only = map[string]bool{}
		for _, name := range strings.Split(v, ",") {
			s.only[strings.TrimSpace(name)] = true
		}
	}
	return s
}

// suite is what every attack gets: the cluster, the traffic, the sampler.
type suite struct {
	s     settings
	bs    []*testharness.Broker
	seeds []string
	tr    *traffic
	smp   *sampler
	adm   *kadm.Client
	base  windowStats
}

// attack is one subtest. run attacks for about s.window and fails t when
// the answer is not the documented one. quiet attacks are not held to the
// traffic bounds (they take a broker down on purpose).
type attack struct {
	name  string
	run   func(t *testing.T, su *suite) string // returns a one-line outcome
	quiet bool
}

func attacks() []attack {
	return []attack{
		{name: "lying-batch", run: attackLyingBatch},
		{name: "future-timestamp", run: attackFutureTimestamp},
		{name: "bombs", run: attackBombs},
		{name: "fuzz-seeds", run: attackFuzzSeeds},
		{name: "slowloris", run: attackSlowloris},
		{name: "non-reading-fetch", run: attackNonReadingFetch},
		{name: "connection-flood", run: attackConnectionFlood},
		{name: "producer-id-flood", run: attackProducerIDFlood},
		{name: "producer-id-claim", run: attackProducerIDClaim},
		{name: "search", run: attackSearch},
		{name: "auto-create-flood", run: attackAutoCreateFlood},
		{name: "spoofed-replica", run: attackSpoofedReplica},
		{name: "spoofed-replica-min-isr", run: attackSpoofedReplicaMinISR, quiet: true},
		{name: "duplicate-node-id", run: attackDuplicateNodeID},
	}
}

type row struct {
	name, outcome string
	passed        bool
	ratio         float64
	p99           time.Duration
	maxRSS        int64
	maxWAL        int64
}

func TestHostile(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("the attacks need a cluster of chronik processes, not kfake")
	}
	start := time.Now()
	s := loadSettings(t)
	bs := testharness.StartCluster(t, 3, testharness.Options{Env: clusterEnv(),
		Args: []string{"--default-replication-factor", "3", "--min-insync-replicas", "2"}})
	su := &suite{s: s, bs: bs, seeds: addrs(bs)}
	su.adm = kadm.NewClient(newClient(t, su.seeds))
	createTopic(t, su.adm, trafficTopic, 3, nil)
	createTopic(t, su.adm, rawTopic, 1, nil)
	createTopic(t, su.adm, bombTopic, 1, map[string]string{"max.message.bytes": "131072"})
	createTopic(t, su.adm, bigTopic, 1, nil)
	createTopic(t, su.adm, spoofTopic, 1, nil)
	createTopic(t, su.adm, pidTopic, 1, nil)
	createTopic(t, su.adm, idemTopic, 1, nil)
	createTopic(t, su.adm, searchTopic, 1, nil)
	createTopic(t, su.adm, fuzzTopic, 1, nil)
	fillBigTopic(t, su)
	fillSearchTopic(t, su)
	t.Logf("cluster up with its topics after %v", time.Since(start).Round(time.Millisecond))

	su.smp = startSampler(t, bs)
	su.tr = startTraffic(t, su.seeds, trafficTopic, s.rate)
	// The first seconds warm up clients and leaders; the baseline is the
	// window after them.
	time.Sleep(2 * time.Second)
	from := time.Now()
	time.Sleep(max(s.window, 5*time.Second))
	to := time.Now()
	time.Sleep(time.Second)
	su.base = su.tr.window(from, to)
	baseRSS, _, _, _ := su.smp.peaks(from, time.Now())
	t.Logf("baseline: %.0f acks/s, %.0f consumed/s, p99 %v, RSS %v", su.base.ackRate, su.base.consumeRate, su.base.p99, fmtBytes(baseRSS))
	if su.base.ackRate < 0.8*float64(s.rate) {
		t.Errorf("baseline: %.0f acks/s of the %d/s sent: the cluster cannot carry the traffic even unattacked", su.base.ackRate, s.rate)
	}

	var rows []row
	for _, a := range attacks() {
		if s.only != nil && !s.only[a.name] {
			continue
		}
		r := &row{name: a.name, outcome: "did not finish"}
		t.Run(a.name, func(t *testing.T) { su.runAttack(t, a, r) })
		rows = append(rows, *r)
	}

	verifyAcked(t, su)
	t.Logf("summary (baseline %.0f acks/s, p99 %v; suite %v):", su.base.ackRate, su.base.p99, time.Since(start).Round(time.Second))
	t.Logf("%-24s %-4s %7s %8s %10s %10s  %s", "attack", "ok", "tput", "p99", "max RSS", "max WAL", "outcome")
	for _, r := range rows {
		ok := "FAIL"
		if r.passed {
			ok = "pass"
		}
		t.Logf("%-24s %-4s %6.2fx %8v %10s %10s  %s", r.name, ok, r.ratio, r.p99.Round(time.Millisecond), mib(r.maxRSS), mib(r.maxWAL), r.outcome)
	}
}

// runAttack runs a and holds its window to the suite's bounds.
func (su *suite) runAttack(t *testing.T, a attack, r *row) {
	from := time.Now()
	defer func() {
		time.Sleep(time.Until(from.Add(minWindow)))
		to := time.Now()
		time.Sleep(time.Second) // answers due at the end of the window
		w := su.tr.window(from, to)
		rss, wal, rssStart, walStart := su.smp.peaks(from, time.Now())
		r.ratio = w.ackRate / su.base.ackRate
		r.p99 = w.p99
		for i := range rss {
			r.maxRSS = max(r.maxRSS, rss[i])
			r.maxWAL = max(r.maxWAL, wal[i])
			if limit := rssStart[i] + rssHeadroom; rssStart[i] > 0 && rss[i] > limit {
				t.Errorf("broker %d: RSS %s during the attack, over its bound %s (%s at the start + rssHeadroom)", i+1, mib(rss[i]), mib(limit), mib(rssStart[i]))
			}
			if rss[i] > rssCeiling {
				t.Errorf("broker %d: RSS %s during the attack, over rssCeiling %s", i+1, mib(rss[i]), mib(rssCeiling))
			}
			if grew := wal[i] - walStart[i]; grew > walGrowthBound {
				t.Errorf("broker %d: WAL grew by %s during the attack, over walGrowthBound %s", i+1, mib(grew), mib(walGrowthBound))
			}
		}
		if !a.quiet {
			if r.ratio < minThroughputRatio {
				t.Errorf("traffic: %.0f acks/s during the attack, %.2f of the baseline %.0f (want at least %.2f)", w.ackRate, r.ratio, su.base.ackRate, minThroughputRatio)
			}
			if w.p99 > maxP99 {
				t.Errorf("traffic: p99 ack latency %v during the attack, over %v", w.p99, maxP99)
			}
		}
		t.Logf("window %v: %.0f acks/s (%.2fx), %.0f consumed/s, p99 %v, %d traffic failures so far; RSS %v; WAL %v",
			w.dur.Round(time.Millisecond), w.ackRate, r.ratio, w.consumeRate, w.p99.Round(time.Millisecond), w.failed, fmtBytes(rss), fmtBytes(wal))
		r.passed = !t.Failed()
	}()
	r.outcome = a.run(t, su)
}

func fmtBytes(ns []int64) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, mib(n))
	}
	return strings.Join(parts, " / ")
}

func addrs(bs []*testharness.Broker) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Addr())
	}
	return out
}

func newClient(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(250 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t *testing.T, adm *kadm.Client, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	set := map[string]*string{}
	for k, v := range configs {
		set[k] = kadm.StringPtr(v)
	}
	testharness.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := withTimeout(20 * time.Second)
		defer cancel()
		resp, err := adm.CreateTopic(ctx, partitions, 3, set, topic)
		if err != nil {
			return err
		}
		if resp.Err != nil && !strings.Contains(resp.Err.Error(), "TOPIC_ALREADY_EXISTS") {
			return fmt.Errorf("%v: %s", resp.Err, resp.ErrMessage)
		}
		return nil
	})
}

// partitionInfo is one partition's leader and replicas, as metadata says.
type partitionInfo struct {
	topicID  [16]byte
	leader   int32
	replicas []int32
	isr      []int32
}

func describe(t *testing.T, su *suite, topic string, partition int32) partitionInfo {
	t.Helper()
	var pi partitionInfo
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		tds, err := su.adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		td, ok := tds[topic]
		if !ok || td.Err != nil {
			return fmt.Errorf("metadata of %s: %v", topic, td.Err)
		}
		p, ok := td.Partitions[partition]
		if !ok || p.Leader < 0 {
			return fmt.Errorf("%s/%d has no leader", topic, partition)
		}
		pi = partitionInfo{topicID: td.ID, leader: p.Leader, replicas: p.Replicas, isr: p.ISR}
		return nil
	})
	return pi
}

// broker is the broker with node ID id (StartCluster numbers them 1..n).
func (su *suite) broker(id int32) *testharness.Broker { return su.bs[id-1] }

// endOffset is the partition's high watermark.
func endOffset(t *testing.T, su *suite, topic string, partition int32) int64 {
	t.Helper()
	var end int64
	testharness.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := withTimeout(10 * time.Second)
		defer cancel()
		offs, err := su.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return err
		}
		o, ok := offs.Lookup(topic, partition)
		if !ok || o.Err != nil {
			return fmt.Errorf("end offset of %s/%d: %v", topic, partition, o.Err)
		}
		end = o.Offset
		return nil
	})
	return end
}

// fillBigTopic writes about 8 MB to bigTopic for the fetchers that never
// read.
func fillBigTopic(t *testing.T, su *suite) {
	cl := newClient(t, su.seeds, kgo.DefaultProduceTopic(bigTopic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordDeliveryTimeout(60*time.Second))
	value := []byte(strings.Repeat("b", 4<<10))
	ctx, cancel := withTimeout(2 * time.Minute)
	defer cancel()
	for range 2000 {
		cl.Produce(ctx, &kgo.Record{Value: value}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// fillSearchTopic writes 2,000 JSON records for the search attack: a
// search indexes them in memory (none are archived), which takes long
// enough for eight sent at once to overlap, and little enough memory that
// the two allowed to run stay well inside rssHeadroom.
func fillSearchTopic(t *testing.T, su *suite) {
	cl := newClient(t, su.seeds, kgo.DefaultProduceTopic(searchTopic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(60*time.Second))
	ctx, cancel := withTimeout(2 * time.Minute)
	defer cancel()
	for i := range 2000 {
		cl.Produce(ctx, &kgo.Record{Value: fmt.Appendf(nil, `{"order":%d,"status":"s%d","note":"hostile search target %d"}`, i, i%7, i)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// verifyAcked stops the traffic and reads the traffic topic back: every
// acknowledged record must be there.
func verifyAcked(t *testing.T, su *suite) {
	su.tr.halt()
	if n, err := su.tr.failures(); n > 0 {
		t.Errorf("traffic: %d acks=all records failed during the suite, the last with %v", n, err)
	}
	acked := su.tr.ackedIDs()
	want := map[string]bool{}
	for _, i := range acked {
		want[trafficValue(i)] = true
	}
	cl := newClient(t, su.seeds, kgo.ConsumeTopics(trafficTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	remaining := len(want)
	for remaining > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if v := string(r.Value); want[v] {
				want[v] = false
				remaining--
			}
		})
	}
	if remaining > 0 {
		var missing []string
		for v, m := range want {
			if m && len(missing) < 5 {
				missing = append(missing, v[:len("traffic-000000000")])
			}
		}
		t.Errorf("%d of %d acknowledged records not read back, e.g. %v", remaining, len(acked), missing)
		return
	}
	t.Logf("all %d acknowledged traffic records read back", len(acked))
}
