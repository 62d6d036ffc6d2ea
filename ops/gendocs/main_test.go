package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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

// compose.yaml sets only real settings, and each broker advertises the
// host port its Kafka listener is published on, which is what lets
// clients on the host reach every broker.
func TestComposeBrokers(t *testing.T) {
	services, err := readCompose()
	if err != nil {
		t.Fatal(err)
	}
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
		_, kafkaPort, err := net.SplitHostPort(env["CHRONIK_KAFKA_ADDR"])
		if err != nil {
			t.Fatalf("%s: CHRONIK_KAFKA_ADDR: %v", name, err)
		}
		_, advPort, err := net.SplitHostPort(env["CHRONIK_ADVERTISED_ADDR"])
		if err != nil {
			t.Fatalf("%s: CHRONIK_ADVERTISED_ADDR: %v", name, err)
		}
		if !slices.Contains(svc.Ports, advPort+":"+kafkaPort) {
			t.Errorf("%s advertises port %s but publishes %v, not %s:%s", name, advPort, svc.Ports, advPort, kafkaPort)
		}
		if !strings.Contains(env["CHRONIK_CLUSTER_PEERS"], env["CHRONIK_NODE_ID"]+"@"+name+":") {
			t.Errorf("%s (node %s) is not a voter in CHRONIK_CLUSTER_PEERS=%s", name, env["CHRONIK_NODE_ID"], env["CHRONIK_CLUSTER_PEERS"])
		}
	}
	if brokers != 3 {
		t.Errorf("compose.yaml has %d brokers, want 3", brokers)
	}

	if _, err := parseCompose([]byte("services:\n  b:\n    environment:\n      CHRONIK_NO_SUCH: x\n")); err == nil || !strings.Contains(err.Error(), "CHRONIK_NO_SUCH") {
		t.Errorf("an unknown CHRONIK_ variable: %v", err)
	}
}
