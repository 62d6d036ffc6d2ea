package main

import (
	"testing"
)

// Bad input fails before anything is sent, with a message naming the
// problem; broker-side problems are named too.
func TestBadInput(t *testing.T) {
	addr := newKfake(t)
	down := closedAddr(t)
	mustChronik(t, "", "topic", "create", "one", "--partitions", "1", "--brokers", addr)
	mustChronik(t, "a\nb\n", "produce", "--topic", "one", "--brokers", addr)

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"unknown compression", "x\n", []string{"produce", "--brokers", addr, "--topic", "one", "--compression", "brotli"},
			`--compression "brotli" is not one of none, gzip, snappy, lz4, zstd`},
		{"bench unknown compression", "", []string{"bench", "produce", "--brokers", addr, "--compression", "brotli"},
			`--compression "brotli" is not one of none, gzip, snappy, lz4, zstd`},
		{"bad acks", "x\n", []string{"produce", "--brokers", addr, "--topic", "one", "--acks", "2"}, `--acks "2" is not one of all, 1, 0`},
		{"negative count", "", []string{"bench", "produce", "--brokers", addr, "--count", "-5"}, "--count -5 is negative"},
		{"count and duration", "", []string{"bench", "produce", "--brokers", addr, "--count", "5", "--duration", "1s"}, "give --count or --duration, not both"},
		{"idempotent without acks all", "", []string{"bench", "produce", "--brokers", addr, "--acks", "1", "--idempotent"}, "--idempotent needs --acks all, not 1"},
		{"zero producers", "", []string{"bench", "produce", "--brokers", addr, "--producers", "0"}, "--producers 0 is outside 1 to 1024"},
		{"bench consume negative count", "", []string{"bench", "consume", "--brokers", addr, "--count", "-1"}, "--count -1 is negative"},
		{"bench consume empty topic", "", []string{"bench", "consume", "--brokers", addr, "--topic", "empty"}, `topic "empty" does not exist`},
		{"produce unreachable", "x\n", []string{"produce", "--brokers", down, "--topic", "one", "--timeout", "2s"},
			"cannot reach broker at " + down + ": is `chronik start` running?"},
		{"bench unreachable", "", []string{"bench", "produce", "--brokers", down, "--count", "10", "--timeout", "2s"},
			"cannot reach broker at " + down + ": is `chronik start` running?"},
		{"topic list unreachable", "", []string{"topic", "list", "--brokers", down, "--timeout", "2s"},
			"cannot reach broker at " + down + ": is `chronik start` running?"},
		{"search bad output", "", []string{"search", "--topic", "one", "--output", "xml", "x"}, `--output "xml" is not table, json or jsonl`},
		{"search bad from", "", []string{"search", "--topic", "one", "--from", "yesterday", "x"}, `from: "yesterday" is neither an RFC 3339 time`},
		{"search bad query", "", []string{"search", "--server", "http://" + down, "--topic", "one", "city:x a:>>1"}, `at "a:>>1"`},
		{"search unreachable", "", []string{"search", "--server", "http://" + down, "--topic", "one", "x"},
			"cannot reach the search API at http://" + down + ": is `chronik start` running?"},
		{"search bad bucket", "", []string{"search", "--bucket", "ftp://x", "--topic", "one", "x"}, `--bucket "ftp://x"`},
		{"consume unreachable", "", []string{"consume", "--brokers", down, "--topic", "one", "--timeout", "2s"},
			"cannot reach broker at " + down + ": is `chronik start` running?"},
		{"brokers without port", "", []string{"topic", "list", "--brokers", "localhost"}, `--brokers "localhost" is not host:port`},
		{"missing topic", "x\n", []string{"produce", "--brokers", addr}, "--topic is required"},
		{"bad header", "x\n", []string{"produce", "--brokers", addr, "--topic", "one", "--header", "novalue"}, `--header "novalue" is not key=value`},
		{"consume unknown topic", "", []string{"consume", "--brokers", addr, "--topic", "nope"}, "topic \"nope\" does not exist: create it with `chronik topic create nope`"},
		{"consume missing partition", "", []string{"consume", "--brokers", addr, "--topic", "one", "--partition", "7"},
			`--partition 7 does not exist: topic "one" has partitions 0 to 0`},
		{"consume offset needs partition", "", []string{"consume", "--brokers", addr, "--topic", "one", "--from", "5"}, "--from 5 needs --partition"},
		{"consume offset past end", "", []string{"consume", "--brokers", addr, "--topic", "one", "--partition", "0", "--from", "9"},
			"--from 9 is outside partition 0's offsets 0 to 2"},
		{"consume bad from", "", []string{"consume", "--brokers", addr, "--topic", "one", "--from", "yesterday"},
			`--from "yesterday" is not earliest, latest or an offset of 0 or more`},
		{"consume bad format", "", []string{"consume", "--brokers", addr, "--topic", "one", "--format", "xml"}, `--format "xml" is not one of text, json`},
		{"consume negative count", "", []string{"consume", "--brokers", addr, "--topic", "one", "--count", "-3"}, "--count -3 is negative"},
		{"topic config without value", "", []string{"topic", "create", "t2", "--brokers", addr, "--config", "retention.ms"},
			`--config "retention.ms" is not key=value`},
		{"topic zero partitions", "", []string{"topic", "create", "t2", "--brokers", addr, "--partitions", "0"}, "--partitions 0: give 1 or more"},
		{"alter nothing", "", []string{"topic", "alter", "one", "--brokers", addr}, "nothing to alter"},
		{"topic without name", "", []string{"topic", "create", "--brokers", addr}, "requires at least 1 arg"},
		{"bench negative rate", "", []string{"bench", "produce", "--brokers", addr, "--rate", "-5"}, "--rate -5 is negative"},
		{"unknown flag", "", []string{"produce", "--colour", "red"}, "unknown flag: --colour (see chronik produce --help)"},
		{"start with peers missing this node", "", []string{"start", "--node-id", "3", "--peers", "1@127.0.0.1:9093,2@127.0.0.2:9093", "--data-dir", t.TempDir()},
			"is not among the ids of --peers="},
		{"start with bad profile", "", []string{"start", "--wal-profile", "turbo"}, `--wal-profile="turbo" is not one of low, medium, high, ultra`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, chronik(t, tt.stdin, tt.args...), tt.want)
		})
	}
}
