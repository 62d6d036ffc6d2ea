package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chronik-go/chronik/broker"
)

// docs/operations.md is exactly what the generator writes, so it cannot
// drift from the code.
func TestOperationsDocIsCurrent(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "operations.md")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: generate it with `%s` from the repository root", err, regenerate)
	}
	if want := render(); !bytes.Equal(got, want) {
		t.Fatalf("docs/operations.md is stale: regenerate it with `%s` from the repository root", regenerate)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 15000: "15,000", 100000: "100,000", 1234567: "1,234,567"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q; want %q", n, got, want)
		}
	}
}

// compose.yaml sets only real settings, and each broker advertises an
// address that is published to the host on the same port it listens on
// (so host clients and the other brokers, which share the network
// namespace, both reach it), and is a controller voter.
func TestComposeBrokers(t *testing.T) {
	services, err := readCompose()
	if err != nil {
		t.Fatal(err)
	}
	// Compose substitutes ${VAR:-default}; check the defaults.
	defaults := regexp.MustCompile(`\$\{[A-Za-z0-9_]+:-([^}]*)\}`)
	expand := func(s string) string { return defaults.ReplaceAllString(s, "$1") }
	ids := map[string]bool{}
	brokers := 0
	for name, svc := range services {
		env := svc.Environment
		if env["CHRONIK_NODE_ID"] == "" {
			continue
		}
		brokers++
		if ids[env["CHRONIK_NODE_ID"]] {
			t.Errorf("%s repeats node id %s", name, env["CHRONIK_NODE_ID"])
		}
		ids[env["CHRONIK_NODE_ID"]] = true
		_, kafkaPort, err := net.SplitHostPort(expand(env["CHRONIK_KAFKA_ADDR"]))
		if err != nil {
			t.Fatalf("%s: CHRONIK_KAFKA_ADDR: %v", name, err)
		}
		// Clients on the host: the advertised address is published,
		// mapped to the listener's port.
		adv := expand(env["CHRONIK_ADVERTISED_ADDR"])
		var published []string
		for _, p := range svc.Ports {
			published = append(published, expand(p))
		}
		if !slices.Contains(published, adv+":"+kafkaPort) {
			t.Errorf("%s advertises %s but publishes %v, not %s:%s", name, adv, published, adv, kafkaPort)
		}
		// Other brokers: the internal address is the service name and the
		// listener's port.
		if want := name + ":" + kafkaPort; expand(env["CHRONIK_INTERNAL_ADDR"]) != want {
			t.Errorf("%s: CHRONIK_INTERNAL_ADDR=%s; want %s", name, env["CHRONIK_INTERNAL_ADDR"], want)
		}
		_, raftPort, err := net.SplitHostPort(expand(env["CHRONIK_RAFT_ADDR"]))
		if err != nil {
			t.Fatalf("%s: CHRONIK_RAFT_ADDR: %v", name, err)
		}
		voter := env["CHRONIK_NODE_ID"] + "@" + name + ":" + raftPort
		if !slices.Contains(strings.Split(env["CHRONIK_CLUSTER_PEERS"], ","), voter) {
			t.Errorf("%s: %s is not in CHRONIK_CLUSTER_PEERS=%s", name, voter, env["CHRONIK_CLUSTER_PEERS"])
		}
	}
	if brokers != 3 {
		t.Errorf("compose.yaml has %d brokers, want 3", brokers)
	}

	if _, err := parseCompose([]byte("services:\n  b:\n    environment:\n      CHRONIK_NO_SUCH: x\n")); err == nil || !strings.Contains(err.Error(), "CHRONIK_NO_SUCH") {
		t.Errorf("an unknown CHRONIK_ variable: %v", err)
	}
}

// The Grafana dashboard queries only metrics the broker exports, so a
// renamed metric fails here rather than as an empty panel.
func TestGrafanaDashboardMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana", "chronik-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana/chronik-dashboard.json: %v", err)
	}
	types := map[string]string{}
	for _, m := range broker.MetricDocs() {
		types[m.Name] = m.Type
	}
	name := regexp.MustCompile(`chronik_[a-z0-9_]+`)
	queries := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			for _, n := range name.FindAllString(q.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && types[b] == "histogram" {
						base = b
					}
				}
				if types[base] == "" {
					t.Errorf("panel %q queries %s, which the broker does not export", p.Title, n)
				}
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
}
