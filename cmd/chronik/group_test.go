package main

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/chronik-go/chronik/broker"
)

// newBroker starts an in-process Chronik broker and returns its address.
func newBroker(t *testing.T) string {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.KafkaAddr = "127.0.0.1:0"
	cfg.GroupInitialRebalanceDelay = 0
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr().String()
}

func TestGroupCommands(t *testing.T) {
	addr := newBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := []string{"--brokers", addr}
	mustChronik(t, "", append([]string{"topic", "create", "orders", "--partitions", "2"}, b...)...)
	mustChronik(t, "a\nb\nc\nd\n", append([]string{"produce", "--topic", "orders", "--partition", "0"}, b...)...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("svc"), kgo.ConsumeTopics("orders"), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	for got < 4 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
		if err := cl.CommitRecords(ctx, fs.Records()...); err != nil {
			t.Fatal(err)
		}
	}

	r := mustChronik(t, "", append([]string{"group", "list"}, b...)...)
	if !regexp.MustCompile(`(?m)^svc\s+Stable\s+consumer$`).MatchString(r.stdout) {
		t.Errorf("list output:\n%s", r.stdout)
	}
	r = mustChronik(t, "", append([]string{"group", "describe", "svc"}, b...)...)
	for _, want := range []string{`state Stable`, `(?m)^orders\s+0\s+4\s+4\s+0$`, `orders\[0 1\]`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("describe output lacks %s:\n%s", want, r.stdout)
		}
	}

	// Active groups are refused.
	r = chronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders", "--to-earliest"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "stop its consumers") {
		t.Errorf("reset of an active group: exit %d, stderr %q", r.code, r.stderr)
	}
	r = chronik(t, "", append([]string{"group", "delete", "svc"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "NON_EMPTY_GROUP") {
		t.Errorf("delete of an active group: exit %d, stderr %q", r.code, r.stderr)
	}
	cl.Close()

	r = mustChronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders", "--to-earliest"}, b...)...)
	if !regexp.MustCompile(`(?m)^orders\s+0\s+0$`).MatchString(r.stdout) {
		t.Errorf("reset output:\n%s", r.stdout)
	}
	mustChronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders", "--to-offset", "2"}, b...)...)
	r = mustChronik(t, "", append([]string{"group", "describe", "svc"}, b...)...)
	if !regexp.MustCompile(`(?m)^orders\s+0\s+2\s+4\s+2$`).MatchString(r.stdout) {
		t.Errorf("describe after --to-offset 2:\n%s", r.stdout)
	}
	mustChronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders", "--to-latest"}, b...)...)
	mustChronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders", "--to-datetime", "2000-01-01T00:00:00Z"}, b...)...)
	r = mustChronik(t, "", append([]string{"group", "describe", "svc"}, b...)...)
	if !regexp.MustCompile(`(?m)^orders\s+0\s+0\s+4\s+4$`).MatchString(r.stdout) {
		t.Errorf("describe after --to-datetime 2000:\n%s", r.stdout)
	}
	r = chronik(t, "", append([]string{"group", "reset-offsets", "svc", "--topic", "orders"}, b...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "exactly one of") {
		t.Errorf("reset without a target: exit %d, stderr %q", r.code, r.stderr)
	}

	r = mustChronik(t, "", append([]string{"group", "delete", "svc"}, b...)...)
	if !strings.Contains(r.stdout, `deleted group "svc"`) {
		t.Errorf("delete output: %q", r.stdout)
	}
	r = mustChronik(t, "", append([]string{"group", "list"}, b...)...)
	if strings.Contains(r.stdout, "svc") {
		t.Errorf("deleted group still listed:\n%s", r.stdout)
	}
}
