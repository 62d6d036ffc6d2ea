package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// chronik txn lists and describes a transaction, and abort ends a hanging
// one: the partition's read_committed end moves past it.
func TestTxnCommands(t *testing.T) {
	addr := newBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "payments", "--partitions", "1"}, b...)...)

	p, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("payments-etl"), kgo.TransactionTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Topic: "payments", Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out := mustChronik(t, "", append([]string{"txn", "list"}, b...)...).stdout
	if !strings.Contains(out, "payments-etl") || !strings.Contains(out, "Ongoing") {
		t.Fatalf("txn list:\n%s", out)
	}
	if out := mustChronik(t, "", append([]string{"txn", "list", "--state", "Empty"}, b...)...).stdout; strings.Contains(out, "payments-etl") {
		t.Fatalf("txn list --state Empty lists an ongoing transaction:\n%s", out)
	}
	out = mustChronik(t, "", append([]string{"txn", "describe", "payments-etl"}, b...)...).stdout
	if !strings.Contains(out, "state Ongoing") || !strings.Contains(out, "payments[0]") {
		t.Fatalf("txn describe:\n%s", out)
	}
	if r := chronik(t, "", append([]string{"txn", "describe", "no-such-id"}, b...)...); r.code == 0 {
		t.Fatalf("describing an unknown transactional ID succeeded:\n%s", r.stdout)
	}

	lso := func() int64 {
		t.Helper()
		os, err := newAdmin(t, addr).ListCommittedOffsets(ctx, "payments")
		if err != nil {
			t.Fatal(err)
		}
		o, _ := os.Lookup("payments", 0)
		return o.Offset
	}
	if got := lso(); got != 0 {
		t.Fatalf("read_committed end %d with the transaction open, want 0", got)
	}
	out = mustChronik(t, "", append([]string{"txn", "abort", "--topic", "payments", "--partition", "0"}, b...)...).stdout
	if !strings.Contains(out, "aborted the open transactions of producers") {
		t.Fatalf("txn abort:\n%s", out)
	}
	if got := lso(); got != 2 {
		t.Fatalf("read_committed end %d after the abort, want 2 (past the marker)", got)
	}
	out = mustChronik(t, "", append([]string{"txn", "abort", "--topic", "payments", "--partition", "0"}, b...)...).stdout
	if !strings.Contains(out, "no open transaction") {
		t.Fatalf("a second txn abort:\n%s", out)
	}
	if r := chronik(t, "", append([]string{"txn", "abort"}, b...)...); r.code == 0 || !strings.Contains(r.stderr, "--topic") {
		t.Fatalf("txn abort without a partition: exit %d, %s", r.code, r.stderr)
	}
}
