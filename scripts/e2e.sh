#!/usr/bin/env bash
# make e2e: the compose cluster (compose.yaml) end to end, from the host.
#
#  1. Builds every image locally, pulling nothing: chronik and MinIO are
#     compiled on the host as static binaries (MinIO by `make tools/minio`
#     from the Go module proxy) and put on an empty base by the Dockerfiles
#     in tests/e2e/images. compose.yaml takes their names from
#     CHRONIK_IMAGE and CHRONIK_MINIO_IMAGE and `up --no-build` uses them
#     as they are, so compose neither pulls nor runs the repository's
#     Dockerfile (whose golang base image needs a registry).
#  2. Starts the cluster under its own project name and on free host ports
#     it picks, so it never touches (or collides with) a cluster a user
#     started from the same file, or other programs on this machine.
#  3. Runs tests/e2e (build tag e2e): readiness, franz-go and kcat produce
#     and consume, archival to MinIO, `chronik search --bucket`, and a
#     `docker kill` of a broker with no acknowledged record lost.
#  4. Always tears the cluster down with its volumes (`down -v`), printing
#     the containers' logs first when something failed.
#
# Works with Compose v2 (`docker compose`) and v1 (`docker-compose`).
# Environment: CHRONIK_E2E_KEEP=1 leaves the cluster running for a look;
# CHRONIK_E2E_RUN passes -run to go test.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose=(docker-compose)
else
	echo "e2e: neither 'docker compose' nor 'docker-compose' is installed" >&2
	exit 1
fi
# An absolute file path: the test runs compose from its own directory.
compose+=(-p chronik-e2e -f "$PWD/compose.yaml")

export CHRONIK_IMAGE=chronik-e2e/chronik:local
export CHRONIK_MINIO_IMAGE=chronik-e2e/minio:local

if [ ! -x tools/minio ]; then
	echo "e2e: tools/minio is missing: run 'make tools/minio' (make e2e does)" >&2
	exit 1
fi

ctx=bin/e2e-images
rm -rf "$ctx"
mkdir -p "$ctx/chronik/data" "$ctx/chronik/tmp" "$ctx/minio/data" "$ctx/minio/home" "$ctx/minio/tmp"
chmod 1777 "$ctx/chronik/tmp" "$ctx/minio/tmp"
for d in chronik minio; do
	echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$ctx/$d/passwd"
done
echo "e2e: building static binaries"
CGO_ENABLED=0 go build -trimpath -o "$ctx/chronik/chronik" ./cmd/chronik
# A hard link saves copying ~150 MB when tools/ is on the same file system.
ln -f tools/minio "$ctx/minio/minio" 2>/dev/null || cp tools/minio "$ctx/minio/minio"

echo "e2e: building $CHRONIK_IMAGE and $CHRONIK_MINIO_IMAGE"
docker build -q -t "$CHRONIK_IMAGE" -f tests/e2e/images/chronik.Dockerfile "$ctx/chronik"
docker build -q -t "$CHRONIK_MINIO_IMAGE" -f tests/e2e/images/minio.Dockerfile "$ctx/minio"

teardown() {
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "e2e: failed (exit $rc); container logs:" >&2
		"${compose[@]}" ps >&2 || true
		"${compose[@]}" logs --no-color --tail=100 >&2 || true
	fi
	if [ "${CHRONIK_E2E_KEEP:-}" = 1 ]; then
		echo "e2e: CHRONIK_E2E_KEEP=1: cluster left running; stop it with: ${compose[*]} down -v" >&2
	else
		"${compose[@]}" down -v --remove-orphans || true
	fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# port_free P: nothing listens on 127.0.0.1:P, where compose.yaml publishes.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_ports exports compose.yaml's host port variables, each a free port
# below the ephemeral range, and where the test finds the cluster.
pick_ports() {
	# Taken inside the shared namespace: Raft and MinIO (compose.yaml).
	local used=" 19093 29093 39093 9000 9001 " p n
	for n in BROKER1_KAFKA_PORT BROKER2_KAFKA_PORT BROKER3_KAFKA_PORT \
		BROKER1_HTTP_PORT BROKER2_HTTP_PORT BROKER3_HTTP_PORT MINIO_PORT MINIO_CONSOLE_PORT; do
		while :; do
			p=$((20000 + RANDOM % 12000))
			if [[ $used != *" $p "* ]] && port_free "$p"; then
				break
			fi
		done
		used+="$p "
		export "$n=$p"
	done
	export CHRONIK_E2E_BROKERS="127.0.0.1:$BROKER1_KAFKA_PORT,127.0.0.1:$BROKER2_KAFKA_PORT,127.0.0.1:$BROKER3_KAFKA_PORT"
	export CHRONIK_E2E_HTTP="127.0.0.1:$BROKER1_HTTP_PORT,127.0.0.1:$BROKER2_HTTP_PORT,127.0.0.1:$BROKER3_HTTP_PORT"
	export CHRONIK_E2E_BUCKET="minio://127.0.0.1:$MINIO_PORT/chronik/archive"
}

# Leftovers of an interrupted run would hold ports and old data.
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
# Another program can take a port between the check and `up`: try again
# with other ports.
for attempt in 1 2 3; do
	pick_ports
	echo "e2e: starting the cluster: Kafka on $CHRONIK_E2E_BROKERS, MinIO on 127.0.0.1:$MINIO_PORT"
	if "${compose[@]}" up -d --no-build; then
		break
	fi
	if [ "$attempt" = 3 ]; then
		exit 1
	fi
	"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
done

run=()
if [ -n "${CHRONIK_E2E_RUN:-}" ]; then
	run=(-run "$CHRONIK_E2E_RUN")
fi
CHRONIK_E2E_COMPOSE="${compose[*]}" CHRONIK_TEST_BINARY="$PWD/$ctx/chronik/chronik" \
	go test -tags e2e -count=1 -v -timeout 25m "${run[@]}" ./tests/e2e/
