#!/usr/bin/env bash
# Transactional produce throughput against idempotent produce: one Chronik
# broker and franz-go's kfake (in memory), each a separate process, driven
# by the same `chronik bench produce` client in the same run, alternating
# modes. Transactional producers commit every 100 ms
# (--transaction-interval). Prints a markdown table of medians over REPS runs.
#
#   scripts/bench-txn.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/chronik" ./cmd/chronik
go build -o "$work/kfake" ./internal/benchtool/kfake
"$work/chronik" start --data-dir "$work/data" --http-addr 127.0.0.1:0 --log-level warn \
	--listeners PLAINTEXT://127.0.0.1:29292 >"$work/chronik.log" 2>&1 &
"$work/kfake" --addr 127.0.0.1:19292 >"$work/kfake.log" 2>&1 &
for port in 29292 19292; do
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

run() { # port partitions count [flags...] -> "msgs_per_sec errors"
	local port=$1 parts=$2 count=$3
	shift 3
	"$work/chronik" bench produce --brokers "127.0.0.1:$port" --topic "b-$RANDOM$RANDOM" --acks all \
		--partitions "$parts" --record-size 100 --count "$count" --json --progress=false "$@" 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["msgs_per_sec"], d["errors"])'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| partitions | producers | idempotent msg/s | transactional msg/s | transactional / idempotent | kfake idempotent msg/s | kfake transactional msg/s | Chronik / kfake (transactional) |"
echo "|---|---|---|---|---|---|---|---|"
for row in "1 1" "8 1" "1 4" "8 4"; do
	read -r parts producers <<<"$row"
	count=2000000
	: >"$work/i" && : >"$work/t" && : >"$work/ki" && : >"$work/kt"
	for _ in $(seq "$REPS"); do
		run 29292 $parts $count --producers "$producers" >>"$work/i"
		run 29292 $parts $count --producers "$producers" --transaction-interval 100ms >>"$work/t"
		run 19292 $parts $count --producers "$producers" >>"$work/ki"
		run 19292 $parts $count --producers "$producers" --transaction-interval 100ms >>"$work/kt"
	done
	if ! awk '$2 != 0 {exit 1}' "$work/i" "$work/t" "$work/ki" "$work/kt"; then echo "errors in a run" >&2; fi
	i=$(cut -d' ' -f1 "$work/i" | median)
	t=$(cut -d' ' -f1 "$work/t" | median)
	ki=$(cut -d' ' -f1 "$work/ki" | median)
	kt=$(cut -d' ' -f1 "$work/kt" | median)
	awk -v parts=$parts -v producers=$producers -v i="$i" -v t="$t" -v ki="$ki" -v kt="$kt" \
		'BEGIN {printf "| %d | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", parts, producers, i, t, t/i, ki, kt, t/kt}'
done
