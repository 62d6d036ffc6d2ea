#!/usr/bin/env bash
# Three-broker produce latency at a steady rate (issue "Cluster produce
# latency and balance"): a Chronik cluster on 127.0.0.1 (RF 3,
# min.insync.replicas 2, acks=all, idempotent producer, linger 1 ms,
# 6 partitions), one `chronik bench produce` client, open loop (latency
# counts from each record's scheduled time). Each round measures
#   - a fresh topic: created, then at once 20,000 msg/s for 5 s;
#   - a warm topic (created and written once before the first round, then
#     reused) at 20,000, 100,000 and 200,000 msg/s for 20 s each.
# Prints a markdown table of medians over REPS rounds, with the range of p99.
# Per-run results go to stderr as they come.
#
#   scripts/bench-cluster-latency.sh [REPS]
#   CHRONIK_BIN=/path/to/chronik scripts/bench-cluster-latency.sh 3   # prebuilt binary
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
PARTS=6
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

if [ -n "${CHRONIK_BIN:-}" ]; then
	bin=$CHRONIK_BIN
else
	go build -o "$work/chronik" ./cmd/chronik
	bin=$work/chronik
fi

. scripts/lib-cluster.sh
start_cluster "$bin" "$work"

create() { # topic
	"$bin" topic create "$1" --partitions "$PARTS" --replication-factor 3 \
		--config min.insync.replicas=2 --brokers $brokers >/dev/null
}
run() { # topic rate duration -> "msgs_per_sec p50 p99 p99_9 max errors"
	"$bin" bench produce --brokers $brokers --topic "$1" --acks all --idempotent \
		--linger 1ms --partitions "$PARTS" --producers 1 --rate "$2" --duration "$3" \
		--json --progress=false 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_ms"]; print(d["msgs_per_sec"], l["p50"], l["p99"], l["p99_9"], l["max"], d["errors"])'
}

warm="warm-$RANDOM"
create "$warm"
run "$warm" 20000 5s >/dev/null # written once; not counted

cases="fresh-20000 warm-20000 warm-100000 warm-200000"
for c in $cases; do : >"$work/$c"; done
for r in $(seq "$REPS"); do
	echo "round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	t="fresh-$r-$RANDOM"
	create "$t"
	run "$t" 20000 5s | tee -a "$work/fresh-20000" | sed 's/^/  fresh 20000: /' >&2
	for rate in 20000 100000 200000; do
		run "$warm" $rate 20s | tee -a "$work/warm-$rate" | sed "s/^/  warm $rate: /" >&2
	done
done
for c in $cases; do awk '$6 != 0 {exit 1}' "$work/$c" || echo "errors in a $c run" >&2; done

echo "| case | msg/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 range ms |"
echo "|---|---|---|---|---|---|---|"
for c in $cases; do
	f=$work/$c
	case $c in
	fresh-*) label="fresh topic, ${c#fresh-} msg/s, first 5 s" ;;
	warm-*) label="warm topic, ${c#warm-} msg/s, 20 s" ;;
	esac
	awk -v label="$label" -v got="$(cut -d' ' -f1 "$f" | median)" \
		-v p50="$(cut -d' ' -f2 "$f" | median)" -v p99="$(cut -d' ' -f3 "$f" | median)" \
		-v p999="$(cut -d' ' -f4 "$f" | median)" -v max="$(cut -d' ' -f5 "$f" | median)" \
		-v lo="$(cut -d' ' -f3 "$f" | sort -g | head -1)" -v hi="$(cut -d' ' -f3 "$f" | sort -g | tail -1)" \
		'BEGIN {printf "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f–%.1f |\n", label, got, p50, p99, p999, max, lo, hi}'
done
