package broker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/tier3"
)

// read_committed reads of the archive drop aborted transactions: on the
// broker that archived them (after local retention deleted the local
// copies) and on a broker restored from the bucket, which knows the
// aborted ranges only from the manifest's segment entries.
func TestTier3ReadCommittedArchive(t *testing.T) {
	mem := tier3.NewMemStore()
	b := testBroker(t, t.TempDir(), tier3Config(mem))
	p := testPartition(t, b, "tarch", map[string]string{"segment.bytes": "2000", "local.retention.bytes": "0", "retention.ms": "-1"})
	prod := testClient(t, b, kgo.TransactionalID("tarch-txn"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// Eight rounds of 20 records, every other one aborted: many segments,
	// some transactions spanning two.
	commits := []bool{true, false, true, false, true, false, true, false}
	for round, commit := range commits {
		runTxnsRound(t, prod, "tarch", round, 20, commit)
	}
	prod.Close()
	waitFor(t, 10*time.Second, func() error {
		return b.seal(p, time.Now().Add(8*24*time.Hour)) // the last transaction's records too
	})
	waitArchived(t, p)
	b.clean(time.Now())
	if local := p.localStart(); local == 0 {
		t.Fatal("nothing was deleted locally: the archive is not read")
	}
	check := func(b *Broker, where string) {
		t.Helper()
		got := countRounds(readAll(t, b, "tarch", kgo.ReadCommitted(), 80))
		for round, commit := range commits {
			if want := map[bool]int{true: 20}[commit]; got[strconv.Itoa(round)] != want {
				t.Fatalf("%s: read_committed rounds %v, want the even ones with 20 each", where, got)
			}
		}
	}
	check(b, "on the archiving broker")
	p.mu.RLock()
	listed := 0
	for _, s := range p.archSegs {
		listed += len(s.Aborted)
	}
	p.mu.RUnlock()
	if listed < 4 {
		t.Fatalf("the manifest lists %d aborted transactions over its segments, want at least 4", listed)
	}
	b.Close()

	dir := t.TempDir()
	if _, err := RestoreTopic(context.Background(), dir, mem, "tarch"); err != nil {
		t.Fatal(err)
	}
	b2 := testBroker(t, dir, tier3Config(mem))
	waitArchLoaded(t, b2.lookupTopic("tarch").partitions[0])
	check(b2, "restored from the bucket")
}

// runTxnsRound produces one transaction of n records to partition 0 of
// topic, values "<round>-<i>", and commits or aborts it.
func runTxnsRound(t *testing.T, cl *kgo.Client, topic string, round, n int, commit bool) {
	t.Helper()
	ctx := testCtx(t)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(round) + "-" + strconv.Itoa(i%10))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("round %d: end: %v", round, err)
	}
}
