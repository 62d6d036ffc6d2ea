#!/usr/bin/env bash
# Produce throughput over TLS against plaintext: one Chronik broker serving
# a PLAINTEXT, an SSL and a SASL_SSL (SCRAM-SHA-512) listener, and franz-go's
# kfake (plaintext, in memory), each a separate process, driven by the same
# `chronik bench produce` client in the same run, alternating targets.
# Prints a markdown table of medians over REPS runs.
#
#   scripts/bench-tls.sh [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/chronik" ./cmd/chronik
go build -o "$work/kfake" ./internal/benchtool/kfake
"$work/chronik" certs create --dir "$work/certs" --broker broker=127.0.0.1,localhost >/dev/null
umask 077
head -c 18 /dev/urandom | base64 >"$work/admin.pw"
printf 'SCRAM-SHA-512=[name=bench,password="%s"]\n' "$(cat "$work/admin.pw")" >"$work/users"

"$work/chronik" start --data-dir "$work/data" --http-addr 127.0.0.1:0 --log-level warn \
	--listeners PLAINTEXT://127.0.0.1:29092,SSL://127.0.0.1:29093,SASL_SSL://127.0.0.1:29094 \
	--tls-cert-file "$work/certs/broker.crt" --tls-key-file "$work/certs/broker.key" \
	--bootstrap-users-file "$work/users" >"$work/chronik.log" 2>&1 &
"$work/kfake" --addr 127.0.0.1:19092 >"$work/kfake.log" 2>&1 &
for port in 29092 29093 29094 19092; do
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
sleep 1 # the bootstrap user

tls=(--tls-ca-file "$work/certs/ca.crt")
sasl=(--sasl-username bench --sasl-password-file "$work/admin.pw" "${tls[@]}")
run() { # port partitions size count [security flags...] -> "msgs_per_sec errors"
	local port=$1 parts=$2 size=$3 count=$4
	shift 4
	"$work/chronik" bench produce --brokers "127.0.0.1:$port" --topic "b-$RANDOM$RANDOM" --acks all \
		--partitions "$parts" --record-size "$size" --count "$count" --json --progress=false "$@" 2>/dev/null |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["msgs_per_sec"], d["errors"])'
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| partitions | record | PLAINTEXT msg/s | SSL msg/s | SASL_SSL msg/s | SSL / PLAINTEXT | SASL_SSL / PLAINTEXT | kfake msg/s | PLAINTEXT / kfake |"
echo "|---|---|---|---|---|---|---|---|---|"
for parts in 1 64; do
	for size in 100 1024; do
		count=$((size == 100 ? 2000000 : 400000))
		: >"$work/p" && : >"$work/s" && : >"$work/a" && : >"$work/k"
		for _ in $(seq "$REPS"); do
			run 29092 $parts $size $count >>"$work/p"
			run 29093 $parts $size $count "${tls[@]}" >>"$work/s"
			run 29094 $parts $size $count "${sasl[@]}" >>"$work/a"
			run 19092 $parts $size $count >>"$work/k"
		done
		if ! awk '$2 != 0 {exit 1}' "$work/p" "$work/s" "$work/a" "$work/k"; then echo "errors in a run" >&2; fi
		p=$(cut -d' ' -f1 "$work/p" | median)
		s=$(cut -d' ' -f1 "$work/s" | median)
		a=$(cut -d' ' -f1 "$work/a" | median)
		k=$(cut -d' ' -f1 "$work/k" | median)
		awk -v parts=$parts -v size=$size -v p="$p" -v s="$s" -v a="$a" -v k="$k" \
			'BEGIN {printf "| %s | %s B | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f | %.2f |\n", parts, size, p, s, a, s/p, a/p, k, p/k}'
	done
done
