#!/usr/bin/env bash
# Three-broker produce benchmark: a Chronik cluster on 127.0.0.1 (RF 3,
# min.insync.replicas 2, acks=all, every broker fsyncing before it reports
# an offset) and franz-go's kfake (one in-memory broker, the ceiling of a Go
# Kafka server on this machine), measured in the same run with the same
# `chronik bench` client. First the most each takes, then Chronik at half its
# median rate (open loop: latency counts from each record's scheduled time).
# Prints markdown tables of medians over REPS runs.
#
#   scripts/bench-cluster.sh [REPS] [PARTITIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
PARTS=${2:-6}
COUNT=${COUNT:-3000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT

go build -o "$work/chronik" ./cmd/chronik
go build -o "$work/kfake" ./internal/benchtool/kfake

. scripts/lib-cluster.sh
"$work/kfake" --addr 127.0.0.1:39099 >"$work/kfake.log" 2>&1 &
start_cluster "$work/chronik" "$work"
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/39099) 2>/dev/null && break; sleep 0.1; done

run() { # brokers topic rate -> "msgs_per_sec p50_ms p99_ms errors"
	"$work/chronik" bench produce --brokers "$1" --topic "$2" --acks all --partitions "$PARTS" \
		--producers 2 --count "$COUNT" --rate "$3" --json --progress=false 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_ms"]; print(d["msgs_per_sec"], l["p50"], l["p99"], d["errors"])'
}

: >"$work/c" && : >"$work/k"
for r in $(seq "$REPS"); do
	t="rf3-$r-$RANDOM"
	"$work/chronik" topic create "$t" --partitions "$PARTS" --replication-factor 3 \
		--config min.insync.replicas=2 --brokers $brokers >/dev/null
	run $brokers "$t" 0 >>"$work/c"
	run 127.0.0.1:39099 "kf-$r-$RANDOM" 0 >>"$work/k"
done
awk '$4 != 0 {exit 1}' "$work/c" "$work/k" || echo "errors in a run" >&2
c=$(cut -d' ' -f1 "$work/c" | median)
k=$(cut -d' ' -f1 "$work/k" | median)
echo "| setup | msg/s | MB/s | p50 ms | p99 ms | kfake msg/s | ratio |"
echo "|---|---|---|---|---|---|---|"
awk -v c="$c" -v k="$k" -v p50="$(cut -d' ' -f2 "$work/c" | median)" -v p99="$(cut -d' ' -f3 "$work/c" | median)" -v parts="$PARTS" \
	'BEGIN {printf "| 3 brokers, RF 3, acks=all, %s partitions, flat out | %.0f | %.1f | %.1f | %.1f | %.0f | %.2f |\n", parts, c, c*100/1e6, p50, p99, k, c/k}'

half=$(awk -v c="$c" 'BEGIN {printf "%.0f", c/2}')
: >"$work/h"
for r in $(seq "$REPS"); do
	t="half-$r-$RANDOM"
	"$work/chronik" topic create "$t" --partitions "$PARTS" --replication-factor 3 \
		--config min.insync.replicas=2 --brokers $brokers >/dev/null
	run $brokers "$t" "$half" >>"$work/h"
done
awk -v rate="$half" -v got="$(cut -d' ' -f1 "$work/h" | median)" -v p50="$(cut -d' ' -f2 "$work/h" | median)" -v p99="$(cut -d' ' -f3 "$work/h" | median)" -v parts="$PARTS" \
	'BEGIN {printf "| 3 brokers, RF 3, acks=all, %s partitions, at %.0f msg/s (half) | %.0f | %.1f | %.1f | %.1f | | |\n", parts, rate, got, got*100/1e6, p50, p99}'
