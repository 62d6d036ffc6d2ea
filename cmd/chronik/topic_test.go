package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
)

func TestTopicLifecycle(t *testing.T) {
	addr := newKfake(t)
	ctx := context.Background()
	b := []string{"--brokers", addr}

	r := mustChronik(t, "", append([]string{"topic", "create", "orders", "--partitions", "3", "--replication-factor", "1",
		"--config", "retention.ms=3600000", "--config", "cleanup.policy=delete"}, b...)...)
	if !strings.Contains(r.stdout, `created topic "orders" with 3 partitions, replication factor 1`) {
		t.Errorf("create output: %q", r.stdout)
	}
	tds, err := newAdmin(t, addr).ListTopics(ctx, "orders")
	if err != nil || len(tds["orders"].Partitions) != 3 {
		t.Fatalf("after create: %+v, %v", tds["orders"], err)
	}
	assertTopicConfig(t, newAdmin(t, addr), "orders", "retention.ms", "3600000")

	mustChronik(t, "", append([]string{"topic", "create", "payments", "--partitions", "1"}, b...)...)
	r = mustChronik(t, "", append([]string{"topic", "list"}, b...)...)
	for _, want := range []string{`(?m)^TOPIC\s+PARTITIONS\s+REPLICATION$`, `(?m)^orders\s+3\s+1$`, `(?m)^payments\s+1\s+1$`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("list output lacks %s:\n%s", want, r.stdout)
		}
	}
	if strings.Index(r.stdout, "orders") > strings.Index(r.stdout, "payments") {
		t.Errorf("list is not sorted:\n%s", r.stdout)
	}

	// Produce so describe has offsets to show.
	mustChronik(t, "a\nb\n", append([]string{"produce", "--topic", "orders", "--partition", "1"}, b...)...)
	r = mustChronik(t, "", append([]string{"topic", "describe", "orders"}, b...)...)
	for _, want := range []string{
		`Topic: orders\s+ID: \S+\s+Partitions: 3\s+Replication: 1`,
		`(?m)^PARTITION\s+LEADER\s+REPLICAS\s+ISR\s+START\s+END`,
		`(?m)^0\s+\d+\s+\[\d+\]\s+\[\d+\]\s+0\s+0\s*$`,
		`(?m)^1\s+\d+\s+\[\d+\]\s+\[\d+\]\s+0\s+2\s*$`,
		`(?m)^2\s+\d+\s+\[\d+\]\s+\[\d+\]\s+0\s+0\s*$`,
		`retention.ms=3600000\s+\(set on topic\)`,
		`cleanup.policy=delete\s+\(set on topic\)`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("describe output lacks %s:\n%s", want, r.stdout)
		}
	}

	r = mustChronik(t, "", append([]string{"topic", "alter", "orders", "--config", "retention.ms=7200000", "--partitions", "5"}, b...)...)
	if !strings.Contains(r.stdout, `topic "orders" now has 5 partitions`) || !strings.Contains(r.stdout, `altered configs of topic "orders"`) {
		t.Errorf("alter output: %q", r.stdout)
	}
	tds, err = newAdmin(t, addr).ListTopics(ctx, "orders")
	if err != nil || len(tds["orders"].Partitions) != 5 {
		t.Fatalf("after alter: %d partitions, %v", len(tds["orders"].Partitions), err)
	}
	assertTopicConfig(t, newAdmin(t, addr), "orders", "retention.ms", "7200000")
	// Incremental: the other config is untouched.
	assertTopicConfig(t, newAdmin(t, addr), "orders", "cleanup.policy", "delete")

	mustChronik(t, "", append([]string{"topic", "alter", "orders", "--delete-config", "retention.ms"}, b...)...)
	r = mustChronik(t, "", append([]string{"topic", "describe", "orders"}, b...)...)
	if strings.Contains(r.stdout, "retention.ms=") {
		t.Errorf("retention.ms still set after --delete-config:\n%s", r.stdout)
	}

	r = chronik(t, "", append([]string{"topic", "alter", "orders", "--partitions", "2"}, b...)...)
	wantErr(t, r, `topic "orders" has 5 partitions: partitions can be added but not removed`)
	r = chronik(t, "", append([]string{"topic", "create", "orders", "--partitions", "1"}, b...)...)
	wantErr(t, r, "topic \"orders\" already exists: change it with `chronik topic alter orders`")

	r = mustChronik(t, "", append([]string{"topic", "delete", "orders"}, b...)...)
	if !strings.Contains(r.stdout, `deleted topic "orders"`) {
		t.Errorf("delete output: %q", r.stdout)
	}
	tds, err = newAdmin(t, addr).ListTopics(ctx)
	if err != nil || tds.Has("orders") || !tds.Has("payments") {
		t.Fatalf("after delete: topics %v, %v", tds.Names(), err)
	}
	r = mustChronik(t, "", append([]string{"topic", "list"}, b...)...)
	if strings.Contains(r.stdout, "orders") {
		t.Errorf("deleted topic still listed:\n%s", r.stdout)
	}
	wantErr(t, chronik(t, "", append([]string{"topic", "describe", "orders"}, b...)...), "topic \"orders\" does not exist: see `chronik topic list`")
	wantErr(t, chronik(t, "", append([]string{"topic", "delete", "orders"}, b...)...), "topic \"orders\" does not exist")
	wantErr(t, chronik(t, "", append([]string{"topic", "alter", "orders", "--config", "retention.ms=1"}, b...)...), "topic \"orders\" does not exist")
}

func assertTopicConfig(t *testing.T, adm *kadm.Client, topic, key, want string) {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == key {
			if got := c.MaybeValue(); got != want {
				t.Errorf("%s %s = %q; want %q", topic, key, got, want)
			}
			return
		}
	}
	t.Errorf("%s has no config %s", topic, key)
}

// wantErr checks a command failed with exit status 1 and a message
// containing want.
func wantErr(t *testing.T, r cmdResult, want string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit %d; want 1 (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "chronik: ") || !strings.Contains(last, want) {
		t.Errorf("stderr %q does not contain %q", r.stderr, want)
	}
}
