#!/usr/bin/env bash
# Produce throughput of this checkout against an earlier revision and
# franz-go's kfake, one server at a time on a fresh data directory, with the
# same `chronik bench` client (acks=all, 1 partition, 100 B records). Runs
# alternate between the three so that a noisy machine slows each alike.
# Prints every run, then the medians.
#
#   scripts/bench-compare.sh REV [REPS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: scripts/bench-compare.sh REV [REPS] [COUNT]}
REPS=${2:-7}
COUNT=${3:-2000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git worktree add --detach "$work/old" "$REV" >/dev/null 2>&1
(cd "$work/old" && go build -o "$work/chronik-before" ./cmd/chronik)
go build -o "$work/chronik-after" ./cmd/chronik
go build -o "$work/kfake" ./internal/benchtool/kfake

port=29110
waitport() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done; }
run() {
	"$work/chronik-after" bench produce --brokers "127.0.0.1:$port" --topic "b-$RANDOM$RANDOM" --acks all \
		--partitions 1 --record-size 100 --count "$COUNT" --json --progress=false 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["msgs_per_sec"]), round(d["latency_ms"]["p99"], 1), d["errors"])'
}
: >"$work/runs"
for _ in $(seq "$REPS"); do
	for t in before after kfake; do
		rm -rf "$work/data"
		if [ "$t" = kfake ]; then
			"$work/kfake" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
		else
			"$work/chronik-$t" start --data-dir "$work/data" --kafka-addr "127.0.0.1:$port" --http-addr 127.0.0.1:0 \
				--log-level warn >"$work/server.log" 2>&1 &
		fi
		pid=$!
		waitport
		sleep 0.5
		echo "$t $(run)" | tee -a "$work/runs"
		kill "$pid"
		wait "$pid" 2>/dev/null || true
	done
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| server | msg/s (median) | p99 ms (median) |"
echo "|---|---|---|"
for t in before after kfake; do
	echo "| $t | $(awk -v t=$t '$1==t {print $2}' "$work/runs" | median) | $(awk -v t=$t '$1==t {print $3}' "$work/runs" | median) |"
done
