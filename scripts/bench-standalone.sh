#!/usr/bin/env bash
# Standalone produce benchmark: Chronik (acks after fsync) and franz-go's kfake
# (in-memory, the ceiling of a Go Kafka server on this machine), each as a
# separate process, measured in the same run with the same `chronik bench`
# client. Prints a markdown table of medians over REPS runs.
#
#   scripts/bench-standalone.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/chronik" ./cmd/chronik
go build -o "$work/kfake" ./internal/benchtool/kfake

"$work/chronik" start --data-dir "$work/data" --kafka-addr 127.0.0.1:29092 --http-addr 127.0.0.1:0 --log-level warn >"$work/chronik.log" 2>&1 &
"$work/kfake" --addr 127.0.0.1:19092 >"$work/kfake.log" 2>&1 &
for port in 29092 19092; do
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

run() { # target acks partitions size count -> "msgs_per_sec p99_ms"
	"$work/chronik" bench produce --brokers "127.0.0.1:$1" --topic "b-$RANDOM$RANDOM" --acks "$2" \
		--partitions "$3" --record-size "$4" --count "$5" --json --progress=false 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["msgs_per_sec"], d["latency_ms"]["p99"], d["errors"])'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| acks | partitions | record | Chronik msg/s | Chronik MB/s | Chronik p99 ms | kfake msg/s | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for acks in all 1; do
	for parts in 1 64; do
		for size in 100 1024; do
			count=$((size == 100 ? 3000000 : 600000))
			: >"$work/c" && : >"$work/k"
			for _ in $(seq "$REPS"); do
				run 29092 $acks $parts $size $count >>"$work/c"
				run 19092 $acks $parts $size $count >>"$work/k"
			done
			if awk '$3 != 0 {exit 1}' "$work/c" "$work/k"; then :; else echo "errors in a run" >&2; fi
			c=$(cut -d' ' -f1 "$work/c" | median)
			p99=$(cut -d' ' -f2 "$work/c" | median)
			k=$(cut -d' ' -f1 "$work/k" | median)
			awk -v a=$acks -v p=$parts -v s=$size -v c="$c" -v l="$p99" -v k="$k" \
				'BEGIN {printf "| %s | %s | %s B | %.0f | %.1f | %.1f | %.0f | %.2f |\n", a, p, s, c, c*s/1e6, l, k, c/k}'
		done
	done
done
