package txn_test

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/internal/testharness"
)

//go:embed testdata/confluent_txn.py
var confluentScript string

// confluentResult is what testdata/confluent_txn.py prints.
type confluentResult struct {
	Exception      string
	DeliveryErrors []string `json:"delivery_errors"`
	ClientErrors   []struct {
		Name  string
		Fatal bool
		Str   string
	} `json:"client_errors"`
	Consumed             []string
	Positions            map[string]int64
	CommittedBefore      map[string]int64 `json:"committed_before"`
	CommittedAfterAbort  map[string]int64 `json:"committed_after_abort"`
	CommittedAfterCommit map[string]int64 `json:"committed_after_commit"`
	ReadCommitted        []string         `json:"read_committed"`
	ReadUncommitted      []string         `json:"read_uncommitted"`
	Fence                struct {
		ZombieUnflushed int    `json:"zombie_unflushed"`
		ZombieCommit    string `json:"zombie_commit"`
		Error           struct {
			Name             string
			Code             int
			Fatal            bool
			Retriable        bool
			TxnRequiresAbort bool `json:"txn_requires_abort"`
			Str              string
		}
		WinnerCommitted bool `json:"winner_committed"`
	}
}

// offsetInvalid is librdkafka's RD_KAFKA_OFFSET_INVALID: no committed
// offset.
const offsetInvalid = -1001

// TestConfluentPythonTransactions runs testdata/confluent_txn.py (see its
// docstring) with /usr/bin/python3 against one broker: librdkafka's
// transactional producer commits 10 records, then consumes an input topic
// in a group at read_committed and aborts, then commits, a transaction of
// 10 records that also sends the consumer's positions
// (send_offsets_to_transaction: AddOffsetsToTxn, TxnOffsetCommit with the
// consumer's generation and member ID). It checks:
//
//   - librdkafka's committed() shows no offset before and after the
//     aborted transaction, and the consumer's positions after the
//     committed one; kadm (require_stable) agrees;
//   - librdkafka and franz-go consumers at read_committed see exactly the
//     20 committed records, at read_uncommitted all 30 (no control record
//     among them), and franz-go keeping control records sees one COMMIT
//     marker per partition per committed transaction and one ABORT marker
//     per partition for the aborted one;
//   - a second producer with the same transactional.id fences the first:
//     its init_transactions succeeds, the first's commit_transaction
//     raises a fatal fencing error (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH
//     or librdkafka's _FENCED), its flushed record is aborted, and the
//     second commits.
func TestConfluentPythonTransactions(t *testing.T) {
	requirePython(t, "confluent_kafka", "python3-confluent-kafka")
	b := testharness.Start(t, testharness.Options{})
	seeds := []string{b.Addr()}
	const (
		in, out, fence = "py-txn-in", "py-txn-out", "py-txn-fence"
		group          = "py-txn-group"
	)
	adm := kadm.NewClient(newClient(t, seeds))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	librdkafkaTopics(ctx, t, adm, seeds, in, out, fence, 3)

	began := time.Now()
	cmd := exec.CommandContext(ctx, python, "-c", confluentScript)
	cmd.Env = append(os.Environ(), "TXN_BOOTSTRAP="+b.Addr(), "TXN_IN="+in, "TXN_OUT="+out, "TXN_FENCE="+fence,
		"TXN_GROUP="+group, "TXN_ID=py-txn", "TXN_FENCE_ID=py-txn-fence")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res confluentResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("confluent_txn.py: %v; output not JSON (%v): %q\nstderr:\n%s", runErr, err, stdout.Bytes(), tail(stderr.Bytes(), 8192))
	}
	took := time.Since(began)
	if runErr != nil || res.Exception != "" {
		t.Fatalf("confluent_txn.py: %v\n%s\nresult so far: %s\nstderr:\n%s", runErr, res.Exception, stdout.Bytes(), tail(stderr.Bytes(), 8192))
	}
	t.Logf("confluent_txn.py ran in %v: %s", took.Round(time.Millisecond), stdout.Bytes())
	for _, e := range res.DeliveryErrors {
		t.Errorf("librdkafka delivery error: %s", e)
	}
	for _, e := range res.ClientErrors {
		if e.Fatal {
			t.Errorf("librdkafka fatal error outside the fencing check: %s: %s", e.Name, e.Str)
		}
	}

	// The consumed input and the group's offsets.
	var wantIn []string
	for i := range 10 {
		wantIn = append(wantIn, fmt.Sprintf("in-%d", i))
	}
	slices.Sort(wantIn)
	if !slices.Equal(res.Consumed, wantIn) {
		t.Errorf("the read_committed group consumer got %v, want %v", res.Consumed, wantIn)
	}
	ends := map[string]int64{"0": 5, "1": 5}
	if !maps.Equal(res.Positions, ends) {
		t.Errorf("consumer positions %v, want the ends of %s %v", res.Positions, in, ends)
	}
	none := map[string]int64{"0": offsetInvalid, "1": offsetInvalid}
	if !maps.Equal(res.CommittedBefore, none) {
		t.Errorf("committed() before any transaction: %v, want none (%d)", res.CommittedBefore, offsetInvalid)
	}
	if !maps.Equal(res.CommittedAfterAbort, none) {
		t.Errorf("committed() after the aborted transaction that sent offsets: %v, want none (%d): an aborted transaction's offsets were committed",
			res.CommittedAfterAbort, offsetInvalid)
	}
	if !maps.Equal(res.CommittedAfterCommit, ends) {
		t.Errorf("committed() after the committed transaction: %v, want its offsets %v", res.CommittedAfterCommit, ends)
	}
	var fetched map[int32]int64
	testharness.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		var err error
		fetched, err = groupOffsets(seeds, group, in, 5*time.Second)
		return err
	})
	if fetched[0] != 5 || fetched[1] != 5 || len(fetched) != 2 {
		t.Errorf("kadm FetchOffsets of group %s: %v, want 5 for both partitions of %s", group, fetched, in)
	}

	// What each isolation level shows, through librdkafka and franz-go.
	want := librdkafkaValues
	if d := diffCounts(count(res.ReadCommitted), want("c1", "c2"), 10); d != "" {
		t.Errorf("librdkafka read_committed: %d records, want the 20 committed once each: %s", len(res.ReadCommitted), d)
	}
	if d := diffCounts(count(res.ReadUncommitted), want("c1", "a", "c2"), 10); d != "" {
		t.Errorf("librdkafka read_uncommitted: %d records, want all 30 once each: %s", len(res.ReadUncommitted), d)
	}
	closeTopic(t, seeds, out, 3)
	committed := readAll(t, seeds, out, 3, kgo.ReadCommitted(), false)
	if d := diffCounts(count(values(committed)), want("c1", "c2"), 10); d != "" {
		t.Errorf("franz-go read_committed: %d records, want the 20 committed once each: %s", len(committed), d)
	}
	all := readAll(t, seeds, out, 3, kgo.ReadUncommitted(), true)
	if d := diffCounts(count(values(all)), want("c1", "a", "c2"), 10); d != "" {
		t.Errorf("franz-go read_uncommitted: %d data records, want all 30 once each: %s", len(values(all)), d)
	}
	if commits, aborts := markers(all); commits != 6 || aborts != 3 {
		t.Errorf("%s with control records: %d COMMIT and %d ABORT markers, want 6 and 3 (one per partition per transaction)", out, commits, aborts)
	}

	// Fencing.
	f := res.Fence
	fenced := map[string]bool{"PRODUCER_FENCED": true, "INVALID_PRODUCER_EPOCH": true, "_FENCED": true}
	switch {
	case f.ZombieUnflushed != 0:
		t.Errorf("the first producer's record was not delivered before the second producer started (%d left)", f.ZombieUnflushed)
	case f.ZombieCommit != "raised":
		t.Errorf("the fenced producer's commit_transaction %s, want a fatal fencing error", f.ZombieCommit)
	case !f.Error.Fatal || !fenced[f.Error.Name]:
		t.Errorf("the fenced producer's commit_transaction raised %s (code %d, fatal %v, retriable %v, txn_requires_abort %v): %s; want a fatal PRODUCER_FENCED, INVALID_PRODUCER_EPOCH or _FENCED",
			f.Error.Name, f.Error.Code, f.Error.Fatal, f.Error.Retriable, f.Error.TxnRequiresAbort, f.Error.Str)
	default:
		t.Logf("the fenced producer's commit_transaction raised %s (fatal): %s", f.Error.Name, f.Error.Str)
	}
	if !f.WinnerCommitted {
		t.Errorf("the fencing producer did not commit")
	}
	closeTopic(t, seeds, fence, 1)
	if got := values(readAll(t, seeds, fence, 1, kgo.ReadCommitted(), false)); !slices.Equal(got, []string{"winner"}) {
		t.Errorf("%s read_committed: %q, want only the fencing producer's \"winner\"", fence, got)
	}
	fall := readAll(t, seeds, fence, 1, kgo.ReadUncommitted(), true)
	if got := values(fall); !slices.Equal(got, []string{"zombie", "winner"}) {
		t.Errorf("%s read_uncommitted: %q, want the fenced producer's \"zombie\" then \"winner\"", fence, got)
	}
	if commits, aborts := markers(fall); commits != 1 || aborts != 1 {
		t.Errorf("%s with control records: %d COMMIT and %d ABORT markers, want 1 and 1 (the fenced transaction aborted)", fence, commits, aborts)
	}
}

// librdkafkaTopics creates the topics the librdkafka tests use: in, of two
// partitions holding "in-0" to "in-9" alternately, out of outPartitions
// and fence of one.
func librdkafkaTopics(ctx context.Context, t *testing.T, adm *kadm.Client, seeds []string, in, out, fence string, outPartitions int32) {
	t.Helper()
	createTopics(t, adm, 2, 1, nil, in)
	createTopics(t, adm, outPartitions, 1, nil, out)
	createTopics(t, adm, 1, 1, nil, fence)
	fill := newClient(t, seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var inputs []*kgo.Record
	for i := range 10 {
		inputs = append(inputs, &kgo.Record{Topic: in, Partition: int32(i % 2), Value: fmt.Appendf(nil, "in-%d", i)})
	}
	if err := fill.ProduceSync(ctx, inputs...).FirstErr(); err != nil {
		t.Fatalf("filling %s: %v", in, err)
	}
}

// librdkafkaValues counts, once each, the values the librdkafka tests'
// transactions write: "c1-0".."c1-9" for prefix c1, else
// "<prefix>-in-0".."<prefix>-in-9".
func librdkafkaValues(prefixes ...string) map[string]int {
	m := map[string]int{}
	for _, p := range prefixes {
		for i := range 10 {
			if p == "c1" {
				m[fmt.Sprintf("c1-%d", i)] = 1
			} else {
				m[fmt.Sprintf("%s-in-%d", p, i)] = 1
			}
		}
	}
	return m
}
