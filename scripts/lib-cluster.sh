# Sourced by the cluster benchmarks: start_cluster BIN WORKDIR starts three
# chronik brokers on 127.0.0.1 (Kafka ports 39091-39093, Raft 39301-39303,
# data and logs in WORKDIR), waits until all three are live and sets
# $brokers to their bootstrap list. median reads numbers, one per line,
# and prints their median.
start_cluster() {
	local bin=$1 work=$2 i port
	local peers=1@127.0.0.1:39301,2@127.0.0.1:39302,3@127.0.0.1:39303
	for i in 1 2 3; do
		"$bin" start --node-id $i --peers $peers --raft-addr 127.0.0.1:3930$i \
			--kafka-addr 127.0.0.1:3909$i --advertised-addr 127.0.0.1:3909$i --http-addr 127.0.0.1:0 \
			--data-dir "$work/data$i" --log-level warn >"$work/chronik$i.log" 2>&1 &
	done
	for port in 39091 39092 39093; do
		for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
	done
	brokers=127.0.0.1:39091,127.0.0.1:39092,127.0.0.1:39093
	for _ in $(seq 100); do
		"$bin" cluster status --brokers $brokers --output json 2>/dev/null |
			python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if sum(b["state"]=="live" for b in d["brokers"] or [])==3 else 1)' 2>/dev/null && break
		sleep 0.2
	done
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
