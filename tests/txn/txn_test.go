// Package txn_test runs Kafka transactions through real clients against
// real Chronik broker processes over TCP, and checks what Kafka promises:
// a committed transaction's records and offsets appear together, an
// aborted one's never reach a read_committed consumer nor move a group's
// offsets, a producer is fenced by a newer one with its transactional ID,
// and a consume-transform-produce loop is exactly-once while brokers die.
//
//   - TestExactlyOnceETLUnderKills: franz-go's GroupTransactSession copies
//     eos-in to eos-out on a cluster of three while the transaction
//     coordinator, a leader of eos-out and the group coordinator are
//     killed (SIGKILL) in turn; it also aborts some transactions and
//     abandons some open (a crashed application, fenced by its successor).
//     eos-out must hold every input exactly once.
//   - TestConfluentPythonTransactions: librdkafka through Debian's
//     python3-confluent-kafka (testdata/confluent_txn.py): commit, abort,
//     send_offsets_to_transaction, both isolation levels, fencing.
//   - TestConfluentGoTransactions: librdkafka through confluent-kafka-go:
//     the same commit, abort, SendOffsetsToTransaction with a group
//     consumer's metadata, both isolation levels (no control record
//     returned) and fencing (the fenced commit fails with a fatal _FENCED).
//   - TestSaramaTransactions: IBM/sarama's transactional producer, read
//     back by franz-go and sarama consumers at both isolation levels.
//
// Every read-back ends at a non-transactional sentinel record appended to
// each partition afterwards (closeTopic), so no reader waits on a timer to
// decide it has seen everything.
//
// kafka-python 2.0.2 (python3-kafka) has no transactional producer and
// always fetches read_uncommitted (nor does it drop control batches), so
// it has no test here.
//
//	go test ./tests/txn                                  # about 1.7 minutes
//	go test ./tests/txn -run ETL                         # about 75 s of them
//	CHRONIK_TXN_ETL_RECORDS=20000 CHRONIK_TXN_ETL_KILLS=9 go test ./tests/txn -run ETL  # about 3.5 minutes
//	CHRONIK_TEST_TARGET=kfake go test ./tests/txn        # the standalone tests against kfake
package txn_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chronik-go/chronik/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// envInt is the positive integer in the environment variable name, or def
// when it is unset.
func envInt(t *testing.T, name string, def, least int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < least {
		t.Fatalf("%s=%q: want an integer of at least %d", name, s, least)
	}
	return n
}

// newClient returns a franz-go client on seeds, closed when the test ends.
func newClient(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopics creates each topic, retrying while a cluster is still
// electing its controller and accepting one a retry already created.
func createTopics(t *testing.T, adm *kadm.Client, partitions int32, rf int16, configs map[string]*string, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		testharness.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("create topic %s (%d partitions, replication factor %d): %w", topic, partitions, rf, err)
			}
			return nil
		})
	}
}

// record is one record as a consumer returned it.
type record struct {
	partition int32
	offset    int64
	key       string
	value     string
	control   bool // a transaction marker (only with kgo.KeepControlRecords)
	commit    bool // for a control record: a COMMIT marker, else ABORT
}

// sentinel is the value of the record closeTopic appends to partition p.
func sentinel(p int32) string { return fmt.Sprintf("sentinel-%d", p) }

// closeTopic appends a non-transactional record (sentinel(p)) to every
// partition of topic. It lands after every transaction written before it,
// so a reader that has seen it has read the partition to that point, and a
// read_committed reader sees it only once those transactions have ended:
// readAll needs no timing to know it has read everything.
func closeTopic(t *testing.T, seeds []string, topic string, partitions int32) {
	t.Helper()
	cl := newClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rs []*kgo.Record
	for p := range partitions {
		rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("sentinel"), Value: []byte(sentinel(p))})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("appending the sentinels to %s: %v", topic, err)
	}
}

// readAll reads every partition of topic from its start, with the
// isolation level, until it has returned each partition's sentinel (see
// closeTopic), and returns the records before them. keepControl also
// returns the transaction markers that franz-go otherwise drops.
func readAll(t *testing.T, seeds []string, topic string, partitions int32, level kgo.IsolationLevel, keepControl bool) []record {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	opts := []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(level),
	}
	if keepControl {
		opts = append(opts, kgo.KeepControlRecords())
	}
	cl := newClient(t, seeds, opts...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var out []record
	done := map[int32]bool{}
	for len(done) < int(partitions) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			lso, hwm, _ := stableAndEnd(seeds, topic)
			t.Fatalf("reading %s %s: sentinels of partitions %v seen after %d records within 90s; last stable offsets %v, high watermarks %v",
				topic, levelName(level), sortedKeys(done), len(out), lso, hwm)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Logf("reading %s partition %d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Partition] {
				t.Errorf("%s partition %d: record at offset %d after the sentinel: %q", topic, r.Partition, r.Offset, r.Value)
				return
			}
			rec := record{partition: r.Partition, offset: r.Offset, key: string(r.Key), value: string(r.Value)}
			if r.Attrs.IsControl() {
				rec.control = true
				// The key of a control record: version int16, type int16
				// (0 ABORT, 1 COMMIT).
				if len(r.Key) >= 4 {
					rec.commit = binary.BigEndian.Uint16(r.Key[2:4]) == 1
				}
			}
			if !rec.control && rec.value == sentinel(r.Partition) {
				done[r.Partition] = true
				return
			}
			out = append(out, rec)
		})
	}
	return out
}

func levelName(l kgo.IsolationLevel) string {
	if l == kgo.ReadCommitted() {
		return "read_committed"
	}
	return "read_uncommitted"
}

func sortedKeys[V any](m map[int32]V) []int32 {
	var ks []int32
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// stableAndEnd lists topic's last stable offsets (ListOffsets at
// read_committed) and high watermarks through a new client; err is the
// first failure, of the request or of any partition.
func stableAndEnd(seeds []string, topic string) (lso, hwm map[int32]int64, err error) {
	lso, hwm = map[int32]int64{}, map[int32]int64{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return lso, hwm, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, list := range []struct {
		fn   func(context.Context, ...string) (kadm.ListedOffsets, error)
		into map[int32]int64
	}{{adm.ListCommittedOffsets, lso}, {adm.ListEndOffsets, hwm}} {
		l, lerr := list.fn(ctx, topic)
		if lerr == nil {
			lerr = l.Error()
		}
		if lerr != nil {
			err = cmp.Or(err, lerr)
			continue
		}
		l.Each(func(o kadm.ListedOffset) { list.into[o.Partition] = o.Offset })
	}
	return lso, hwm, err
}

// values is the data records' values (control records left out).
func values(rs []record) []string {
	var vs []string
	for _, r := range rs {
		if !r.control {
			vs = append(vs, r.value)
		}
	}
	return vs
}

// markers counts the COMMIT and ABORT control records among rs.
func markers(rs []record) (commits, aborts int) {
	for _, r := range rs {
		switch {
		case r.control && r.commit:
			commits++
		case r.control:
			aborts++
		}
	}
	return commits, aborts
}

// groupOffsets is a group's committed offsets of topic, asked with
// require_stable (KIP-447): while a transaction that committed offsets of
// the group is not complete (its markers not written), the broker answers
// UNSTABLE_OFFSET_COMMIT, returned as the error, rather than the offsets
// from before it. It asks through a new client: franz-go keeps a group's
// coordinator cached through dial errors, so a long-lived client would
// keep asking a dead broker.
func groupOffsets(seeds []string, group, topic string, timeout time.Duration) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	off, err := kadm.NewClient(cl).FetchOffsets(kadm.RequireStable(ctx), group)
	if err == nil {
		err = off.Error()
	}
	if err != nil {
		return nil, err
	}
	got := map[int32]int64{}
	off.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			got[o.Partition] = o.At
		}
	})
	return got, nil
}

// findCoordinator asks any broker, through a new client, which node
// coordinates key: a group (type 0) or a transactional ID (type 1).
func findCoordinator(seeds []string, typ int8, key string) (int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorType = typ
	req.CoordinatorKey = key
	req.CoordinatorKeys = []string{key}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	node, code := resp.NodeID, resp.ErrorCode
	if len(resp.Coordinators) == 1 {
		node, code = resp.Coordinators[0].NodeID, resp.Coordinators[0].ErrorCode
	}
	if err := kerr.ErrorForCode(code); err != nil {
		return 0, fmt.Errorf("FindCoordinator type %d %q: %w", typ, key, err)
	}
	return node, nil
}

// python is the interpreter that has Debian's python3-confluent-kafka:
// the first python3 on PATH may be another one.
const python = "/usr/bin/python3"

// requirePython skips the test when /usr/bin/python3 cannot import module,
// except in CI (.ci/run installs it), where it must.
func requirePython(t *testing.T, module, pkg string) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import "+module).CombinedOutput(); err != nil {
		what := fmt.Sprintf("%s cannot import %s (apt-get install %s)", python, module, pkg)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v: %s", what, err, out)
		}
		t.Skipf("%s; skipping: %v: %s", what, err, out)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// count is how many times each value occurs.
func count(vs []string) map[string]int {
	m := map[string]int{}
	for _, v := range vs {
		m[v]++
	}
	return m
}

// diffCounts describes how got differs from want, value by value, at
// most max of them.
func diffCounts(got, want map[string]int, max int) string {
	var lines []string
	for v, n := range want {
		if got[v] != n {
			lines = append(lines, fmt.Sprintf("%q: %d times, want %d", v, got[v], n))
		}
	}
	for v, n := range got {
		if _, ok := want[v]; !ok {
			lines = append(lines, fmt.Sprintf("%q: %d times, want none", v, n))
		}
	}
	slices.Sort(lines)
	if len(lines) > max {
		lines = append(lines[:max], fmt.Sprintf("… and %d more", len(lines)-max))
	}
	return strings.Join(lines, "; ")
}
