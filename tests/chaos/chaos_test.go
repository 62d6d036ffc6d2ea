// Package chaos_test proves that a tiered cluster survives real operations.
//
// Three real chronik brokers, each in a network namespace of its own
// (testharness.NewHosts), archive to a real MinIO server (tier3/miniotest,
// listening on the test namespace's address, which every broker namespace
// routes to) while two idempotent acks=all producers run throughout. The
// topic has RF 3, min.insync.replicas 2, three partitions, both seal
// triggers firing (segment.ms 800 for the steady trickle, segment.bytes
// 256 KiB for the bursts) and a small local retention (512 KiB). Rounds
// cycle through seven faults:
//
//	leader-kill      SIGKILL of a partition leader, restarted after it moved
//	follower-kill    SIGKILL of a follower, restarted once it left the ISR
//	leader-stop      SIGSTOP of a leader, SIGCONT after it moved
//	leader-cut       a leader cut off the network (MinIO too), healed after it moved
//	wipe             SIGKILL of a follower (odd occurrences: the leader), its
//	                 whole data directory deleted, restarted with the same
//	                 node ID and addresses
//	controller-kill  SIGKILL of the controller (Raft) leader, restarted after
//	                 a new one was elected
//	minio-down       MinIO stopped for 30 s; producing must go on meanwhile
//
// After every fault the cluster must get every partition a leader and a
// full ISR again, and each producer must have new records acknowledged on
// every partition, before the next round. After the rounds the producers stop and the suite checks:
// upload lag back to 0 within 60 s; each partition's archive one ordered,
// non-overlapping, gapless run of segments from offset 0 to the high
// watermark, with both seal triggers seen; local segments within local
// retention; then, with local.retention.* set to 0 and every local copy
// gone and every broker restarted (cold caches), every partition read from
// offset 0 on every replica: 0 acknowledged records lost or moved, 0
// duplicated, replicas identical; and `chronik search --bucket` (the real
// binary, no broker running) returns exactly the records read back. It
// prints a line per round and the totals.
//
// Needs root and iproute2 (network namespaces) and the MinIO server binary
// (CHRONIK_MINIO_BIN, or tools/minio from `make tools/minio`; without one
// the suite skips, except under CI=true).
//
//	go test ./tests/chaos -v -timeout 30m                           # 21 rounds
//	CHRONIK_CHAOS_ROUNDS=60 go test ./tests/chaos -v -timeout 60m   # a long run
//	CHRONIK_CHAOS_FAULTS=wipe,leader-cut CHRONIK_CHAOS_ROUNDS=4 \
//	  CHRONIK_CHAOS_MINIO_DOWN=5s go test ./tests/chaos -v          # a few kinds, quickly
//
// The default run takes about 4 minutes on a 2-core machine when the
// cluster passes; a failing one waits out its deadlines and takes up to
// about 12. The report comes at the end (and on any failure): a line per
// round, the totals, every check, the brokers' Tier 3 metrics and the
// lines of their logs that explain a failure.
//
// Environment: CHRONIK_CHAOS_ROUNDS (default 21: each kind three times),
// CHRONIK_CHAOS_FAULTS (comma-separated kinds above, default all, in that
// order), CHRONIK_CHAOS_MINIO_DOWN (a Go duration, default 30s),
// CHRONIK_CHAOS_RATE (steady records/s of each producer, default 200;
// each producer also sends bursts of 1,300 records of about 270 bytes to
// one partition every 6 s).
package chaos_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chronik-go/chronik/internal/testharness"
	"github.com/chronik-go/chronik/tier3"
	"github.com/chronik-go/chronik/tier3/miniotest"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const (
	topic      = "chaos"
	partitions = 3
	prefix     = "chronik" // the archive's prefix inside the bucket

	segmentBytes        = 256 << 10
	segmentMs           = 800
	localRetentionBytes = 512 << 10
	// maxBatchBytes bounds the producers' record batches, so a sealed
	// segment never exceeds segment.bytes (a single batch larger than it
	// would make a segment of its own).
	maxBatchBytes = 32 << 10
)

// settings are the suite's knobs, read from the environment.
type settings struct {
	rounds     int
	faults     []faultKind
	minioDown  time.Duration
	rate       int           // steady records/s of each producer
	burst      int           // records of each burst, all to one partition
	burstEvery time.Duration // per producer
}

func loadSettings(t *testing.T) settings {
	s := settings{rounds: 21, faults: allFaults, minioDown: 30 * time.Second, rate: 200, burst: 1300, burstEvery: 6 * time.Second}
	if v := os.Getenv("CHRONIK_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHRONIK_CHAOS_ROUNDS=%q: want a positive number", v)
		}
		s.rounds = n
	}
	if v := os.Getenv("CHRONIK_CHAOS_FAULTS"); v != "" {
		s.faults = nil
		for _, name := range strings.Split(v, ",") {
			k := faultKind(strings.TrimSpace(name))
			if !k.valid() {
				t.Fatalf("CHRONIK_CHAOS_FAULTS: unknown fault %q; the kinds are %v", k, allFaults)
			}
			s.faults = append(s.faults, k)
		}
	}
	if v := os.Getenv("CHRONIK_CHAOS_MINIO_DOWN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 2*time.Second {
			t.Fatalf("CHRONIK_CHAOS_MINIO_DOWN=%q: want a Go duration of at least 2s", v)
		}
		s.minioDown = d
	}
	if v := os.Getenv("CHRONIK_CHAOS_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 50 {
			t.Fatalf("CHRONIK_CHAOS_RATE=%q: want records/s of at least 50", v)
		}
		s.rate = n
	}
	return s
}

// suite is one run: the cluster, the object store, the producers' ack log
// and what the rounds and checks found. Its methods run on the test
// goroutine, except what the producers call on ackLog.
type suite struct {
	t        *testing.T
	set      settings
	hosts    *testharness.Hosts
	srv      *miniotest.Server
	url      string      // CHRONIK_TIER3_URL of the brokers
	store    tier3.Store // the bucket under prefix, for the test's own reads
	nodes    []*node
	topicID  [16]byte
	acks     *ackLog
	prod     *producers
	rounds   []roundLog
	occurred map[faultKind]int // rounds of each kind so far
	checks   []checkResult
	// archiveBroken says, per partition, after which round its archive
	// first overlapped itself or had a gap.
	archiveBroken [partitions]string
	// coldRead is set once every broker was restarted with no local
	// segment of the topic: the final reads then prove the archive.
	coldRead bool
	totals   totals
	// metricsSnapshot is the brokers' Tier 3 series once the archive
	// caught up (or failed to), for the report.
	metricsSnapshot string
	started         time.Time
	reported        bool // the round log and totals were printed
}

func TestChaos(t *testing.T) {
	if testharness.CurrentTarget() != testharness.TargetChronik {
		t.Skip("the chaos suite needs the chronik binary")
	}
	set := loadSettings(t)
	hosts := testharness.NewHosts(t, 3)
	// MinIO listens on the test namespace's address, routed to every
	// broker's namespace; a broker cut off the network loses it too.
	srv := miniotest.StartWith(t, miniotest.Options{Host: hosts.IP(0)})
	bucket := srv.NewBucket(t)
	store, err := tier3.NewMinIOStore(tier3.MinIOOptions{Endpoint: srv.Endpoint(), Bucket: bucket, Prefix: prefix,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{t: t, set: set, hosts: hosts, srv: srv, url: srv.URL(bucket, prefix), store: store,
		acks: newAckLog(), occurred: map[faultKind]int{}, started: time.Now(),
		totals: totals{readBack: -1, searchHits: -1, lost: -1, dups: -1}}
	bs := testharness.StartCluster(t, 3, testharness.Options{Hosts: hosts,
		Env: append(srv.Env(), "CHRONIK_TIER3_URL="+s.url),
		// pprof: a broker that stops answering /metrics shows where.
		Args: []string{"--min-insync-replicas", "2", "--default-replication-factor", "3", "--pprof"}})
	s.nodes = newNodes(t, bs)
	// Runs before the brokers are killed (cleanups run last first), so a
	// failure anywhere still shows the rounds, metrics and log evidence.
	t.Cleanup(func() {
		if t.Failed() && !s.reported {
			s.report()
		}
	})
	t.Logf("settings: %d rounds of %v; MinIO down %v; each producer %d records/s plus %d every %v; MinIO at %s",
		set.rounds, set.faults, set.minioDown, set.rate, set.burst, set.burstEvery, srv.Endpoint())

	s.createTopic()
	if _, err := s.waitFullISR(90 * time.Second); err != nil {
		t.Fatalf("the new topic never had a full ISR: %v", err)
	}
	s.prod = s.startProducers()
	// Tiering works before any fault: every partition has archived a
	// segment, so the rounds start from an archive that is in use.
	testharness.CheckFor(t, 90*time.Second, 250*time.Millisecond, func() error {
		for p := range int32(partitions) {
			m, err := s.manifest(p)
			if err != nil {
				return err
			}
			if len(m.Segments) == 0 {
				return fmt.Errorf("partition %d has archived nothing yet", p)
			}
		}
		return nil
	})
	t.Logf("warm-up: every partition archived a segment after %v; %d records acknowledged",
		time.Since(s.started).Round(time.Millisecond), s.acks.total())

	for p := range int32(partitions) {
		if m, err := s.manifest(p); err == nil && overlaps(m) != "" {
			s.archiveBroken[p] = "warm-up"
			t.Errorf("ARCHIVE BROKEN before any fault: partition %d: %s", p, overlaps(m))
		}
	}
	for round := range set.rounds {
		if !s.runRound(round) {
			t.Errorf("round %d: the cluster did not recover; rounds stopped, checking what there is", round+1)
			break
		}
	}
	s.prod.stop(t)
	s.verify()
	s.report()
}
