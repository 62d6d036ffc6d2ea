#!/usr/bin/env bash
# Produce throughput with the batch indexer flat out, against the indexer
# off (docs/benchmarks.md, "Produce throughput with the indexer flat out").
# Each run is a fresh standalone broker with Tier 3 on the local file store
# and a topic whose small segments keep the indexer behind the producer the
# whole run. Pairs alternate their order (on first, then off first) so drift
# of a shared machine falls on both sides. After an indexer-on run the broker
# is left idle for IDLE seconds to see how fast the indexer catches up.
# Prints one line per run and the medians.
#
#   scripts/bench-indexer.sh [PAIRS]
#   COUNT (6000000) records per run, SEGMENT (16777216) segment.bytes,
#   IDLE (20) seconds idle after an indexer-on run, NICE (19) CHRONIK_INDEX_NICE,
#   YIELD (0.5) CHRONIK_INDEX_YIELD_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
COUNT=${COUNT:-6000000}
SEGMENT=${SEGMENT:-16777216}
IDLE=${IDLE:-20}
NICE=${NICE:-19}
YIELD=${YIELD:-0.5}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/chronik" ./cmd/chronik
kafka=127.0.0.1:39491
http=127.0.0.1:36491

# metric NAME: the value of one series of the broker's /metrics (0 if absent).
metric() {
	python3 -c '
import sys, urllib.request
body = urllib.request.urlopen("http://'$http'/metrics").read().decode()
v = [l.rsplit(" ", 1)[1] for l in body.splitlines() if l.split(" ")[0] == sys.argv[1]]
print(float(v[0]) if v else 0)' "$1"
}

run() { # workers -> "msgs_per_sec p99_ms indexed_during lag_after indexed_idle"
	local d="$work/data-$RANDOM"
	CHRONIK_INDEX_WORKERS=$1 CHRONIK_INDEX_NICE=$NICE CHRONIK_INDEX_YIELD_CPU=$YIELD "$work/chronik" start --data-dir "$d" \
		--kafka-addr $kafka --http-addr $http --log-level warn >"$work/broker.log" 2>&1 &
	local pid=$!
	for _ in $(seq 100); do (echo >/dev/tcp/${kafka%:*}/${kafka#*:}) 2>/dev/null && break; sleep 0.1; done
	"$work/chronik" topic create bench --brokers $kafka --partitions 1 --config segment.bytes="$SEGMENT" >/dev/null
	local res during lag idle=""
	res=$("$work/chronik" bench produce --brokers $kafka --topic bench --count "$COUNT" --json --progress=false 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["msgs_per_sec"]), d["latency_ms"]["p99"], d["elapsed_sec"], d["errors"])')
	during=$(metric chronik_indexer_records_total)
	lag=$(metric chronik_indexer_lag_records)
	if [ "$1" -gt 0 ]; then
		sleep "$IDLE"
		idle=$(python3 -c "print($(metric chronik_indexer_records_total) - $during)")
	fi
	kill -TERM $pid
	wait $pid || true
	rm -rf "$d"
	echo "$res $during $lag $idle"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/on" && : >"$work/off"
echo "pair indexer msg/s p99_ms produce_s errors indexed_during_produce lag_records_after indexed_in_${IDLE}s_idle"
for p in $(seq "$PAIRS"); do
	order="1 0"
	[ $((p % 2)) -eq 0 ] && order="0 1"
	for w in $order; do
		r=$(run "$w")
		echo "$p $([ "$w" -gt 0 ] && echo on || echo off) $r"
		if [ "$w" -gt 0 ]; then echo "$r" >>"$work/on"; else echo "$r" >>"$work/off"; fi
	done
done
on=$(cut -d' ' -f1 "$work/on" | median)
off=$(cut -d' ' -f1 "$work/off" | median)
echo "median msg/s: indexer on $on (p99 $(cut -d' ' -f2 "$work/on" | median) ms), off $off (p99 $(cut -d' ' -f2 "$work/off" | median) ms)"
awk -v on="$on" -v off="$off" 'BEGIN {printf "loss: %.1f %%\n", (off-on)*100/off}'
echo "median records indexed while producing: $(cut -d' ' -f5 "$work/on" | median); in ${IDLE}s idle after: $(cut -d' ' -f7 "$work/on" | median)"
