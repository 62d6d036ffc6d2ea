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
#  5. Then the secure variant (compose.secure.yaml): in a new temporary
#     directory, never the repository's (a user's own .env and ./certs stay
#     untouched), runs the ```sh compose block of docs/security.md as the
#     doc writes it, so the doc cannot drift from what works; only the
#     project name, `--no-build`, the host ports and the chronik binary are
#     this run's. It runs the block up to its last line (`down -v`), waits
#     for the brokers' health checks (HTTPS now), runs TestSecureCompose
#     against the SASL_SSL listeners, and runs that last line on the way
#     out, however it leaves.
#
# Works with Compose v2 (`docker compose`) and v1 (`docker-compose`).
# Environment: CHRONIK_E2E_KEEP=1 leaves the clusters running for a look;
# CHRONIK_E2E_RUN passes -run to the first phase's go test;
# CHRONIK_E2E_PHASES picks phases, "plain secure" by default (e.g.
# CHRONIK_E2E_PHASES=secure while working on the secure variant).
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
	compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	compose_cmd=(docker-compose)
else
	echo "e2e: neither 'docker compose' nor 'docker-compose' is installed" >&2
	exit 1
fi
# An absolute file path: the test runs compose from its own directory.
compose=("${compose_cmd[@]}" -p chronik-e2e -f "$PWD/compose.yaml")

# The secure phase sets it for its own go test; the plain phase's, which
# runs every test, must skip TestSecureCompose.
unset CHRONIK_E2E_SECURE_BROKERS

phases=" ${CHRONIK_E2E_PHASES:-plain secure} "
phases=${phases//,/ }
for p in $phases; do
	case $p in
	plain | secure) ;;
	*)
		echo "e2e: CHRONIK_E2E_PHASES: unknown phase '$p' (plain, secure)" >&2
		exit 1
		;;
	esac
done

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
# The doc's commands say `chronik`: this directory, first on their PATH,
# makes that the binary just built.
chronik_path="$PWD/$ctx/path"
mkdir "$chronik_path"
ln -s ../chronik/chronik "$chronik_path/chronik"

echo "e2e: building $CHRONIK_IMAGE and $CHRONIK_MINIO_IMAGE"
docker build -q -t "$CHRONIK_IMAGE" -f tests/e2e/images/chronik.Dockerfile "$ctx/chronik"
docker build -q -t "$CHRONIK_MINIO_IMAGE" -f tests/e2e/images/minio.Dockerfile "$ctx/minio"

# The phase whose cluster is up: teardown takes down that one.
active=

teardown() {
	rc=$?
	case $active in
	plain) teardown_plain "$rc" ;;
	secure) teardown_secure "$rc" ;;
	esac
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

teardown_plain() {
	if [ "$1" -ne 0 ]; then
		echo "e2e: failed (exit $1); container logs:" >&2
		"${compose[@]}" ps >&2 || true
		"${compose[@]}" logs --no-color --tail=100 >&2 || true
	fi
	if [ "${CHRONIK_E2E_KEEP:-}" = 1 ]; then
		echo "e2e: CHRONIK_E2E_KEEP=1: cluster left running; stop it with: ${compose[*]} down -v" >&2
	else
		"${compose[@]}" down -v --remove-orphans || true
	fi
}

# port_free P: nothing listens on 127.0.0.1:P, where compose.yaml publishes.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_free exports each variable named as a free port below the
# ephemeral range, all different.
pick_free() {
	# Taken inside the shared namespace: Raft and MinIO (compose.yaml).
	local used=" 19093 29093 39093 9000 9001 " p n
	for n in "$@"; do
		while :; do
			p=$((20000 + RANDOM % 12000))
			if [[ $used != *" $p "* ]] && port_free "$p"; then
				break
			fi
		done
		used+="$p "
		export "$n=$p"
	done
}

# pick_ports exports compose.yaml's host port variables and where the test
# finds the cluster.
pick_ports() {
	pick_free BROKER1_KAFKA_PORT BROKER2_KAFKA_PORT BROKER3_KAFKA_PORT \
		BROKER1_HTTP_PORT BROKER2_HTTP_PORT BROKER3_HTTP_PORT MINIO_PORT MINIO_CONSOLE_PORT
	export CHRONIK_E2E_BROKERS="127.0.0.1:$BROKER1_KAFKA_PORT,127.0.0.1:$BROKER2_KAFKA_PORT,127.0.0.1:$BROKER3_KAFKA_PORT"
	export CHRONIK_E2E_HTTP="127.0.0.1:$BROKER1_HTTP_PORT,127.0.0.1:$BROKER2_HTTP_PORT,127.0.0.1:$BROKER3_HTTP_PORT"
	export CHRONIK_E2E_BUCKET="minio://127.0.0.1:$MINIO_PORT/chronik/archive"
}

plain_phase() {
	active=plain
	# Leftovers of an interrupted run would hold ports and old data.
	"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
	# Another program can take a port between the check and `up`: try
	# again with other ports.
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
	teardown_plain 0
	active=
}

# The secure phase's state, for teardown_secure: the temporary directory
# the doc's commands run in, the compose command line with absolute file
# paths (for the test, which runs elsewhere, and for logs), and the doc's
# last line as this run writes it.
secure_project=chronik-e2e-secure
secure_dir=
secure_compose=()
secure_down=

# secure_rewrite turns the doc's lines into this run's: the project name,
# images used as they are, and the SASL_SSL port picked. Everything else
# runs as the doc writes it.
secure_rewrite() {
	sed -e "s|docker compose |${compose_cmd[*]} -p $secure_project |g" \
		-e 's/ up -d\( \|$\)/ up -d --no-build\1/' \
		-e "s/127\.0\.0\.1:19094/127.0.0.1:$BROKER1_SASL_PORT/g"
}

# secure_sh runs a script in secure_dir as a user's shell would, with the
# binary just built as `chronik` and compose taking the admin password from
# .env (a variable in the environment would win over .env). The doc's
# commands wait for the cluster: a bound keeps a broken one from hanging
# the run.
secure_sh() {
	(cd "$secure_dir" && env -u CHRONIK_ADMIN_PASSWORD PATH="$chronik_path:$PATH" \
		timeout 180 bash -x -e -o pipefail -c "$1")
}

teardown_secure() {
	if [ "$1" -ne 0 ]; then
		echo "e2e: secure phase failed (exit $1); container logs:" >&2
		"${secure_compose[@]}" ps >&2 || true
		"${secure_compose[@]}" logs --no-color --tail=100 >&2 || true
	fi
	if [ "${CHRONIK_E2E_KEEP:-}" = 1 ]; then
		echo "e2e: CHRONIK_E2E_KEEP=1: secure cluster left running in $secure_dir; stop it with: cd $secure_dir && $secure_down" >&2
		return
	fi
	# The doc's own last line; should it fail (say .env was never
	# written, so compose refuses to read the file), the same with a
	# placeholder password.
	if [ -z "$secure_down" ] || ! secure_sh "$secure_down"; then
		CHRONIK_ADMIN_PASSWORD=unused "${secure_compose[@]}" down -v --remove-orphans || true
	fi
	remove_secure_dir
}

# remove_secure_dir deletes secure_dir. The certs service, as root, gave
# ./certs and its files to the brokers' user (65532), so a user who is not
# root cannot delete them; `chronik certs create --owner` (as root, in the
# image: it has no shell) hands them to this user first. It issues
# nothing: admin's pair exists, and --keep-existing keeps it.
remove_secure_dir() {
	if rm -rf "$secure_dir" 2>/dev/null; then
		return
	fi
	docker run --rm --network none --user 0:0 -v "$secure_dir/certs:/certs" "$CHRONIK_IMAGE" \
		certs create --dir /certs --keep-existing --owner "$(id -u):$(id -g)" --client admin >/dev/null || true
	rm -rf "$secure_dir" || echo "e2e: could not delete $secure_dir" >&2
}

# wait_healthy waits until compose's health check (chronik health, over
# HTTPS with CHRONIK_HTTP_TLS) passes in every broker container.
wait_healthy() {
	local deadline=$((SECONDS + 120)) s id status
	for s in chronik-1 chronik-2 chronik-3; do
		id=$("${secure_compose[@]}" ps -q "$s")
		while :; do
			status=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}no health check{{end}}' "$id")
			if [ "$status" = healthy ]; then
				break
			fi
			if [ "$SECONDS" -ge "$deadline" ]; then
				echo "e2e: $s is $status after 120 s" >&2
				return 1
			fi
			sleep 1
		done
	done
}

secure_phase() {
	local block script want
	block=$(awk '/^```sh compose$/ { f = 1; next } f && /^```$/ { exit } f' docs/security.md)
	if [ -z "$block" ]; then
		echo "e2e: docs/security.md has no \`\`\`sh compose block" >&2
		exit 1
	fi
	case $(tail -n 1 <<<"$block") in
	"docker compose "*" down -v") ;;
	*)
		echo "e2e: the last line of docs/security.md's sh compose block is not 'docker compose ... down -v', which this script runs last" >&2
		exit 1
		;;
	esac
	for want in "docker compose " " up -d" "127.0.0.1:19094"; do
		if [[ $block != *"$want"* ]]; then
			echo "e2e: docs/security.md's sh compose block has no '$want', which this script rewrites" >&2
			exit 1
		fi
	done

	secure_dir=$(mktemp -d "${TMPDIR:-/tmp}/chronik-e2e-secure.XXXXXX")
	secure_compose=("${compose_cmd[@]}" -p "$secure_project" -f "$secure_dir/compose.yaml" -f "$secure_dir/compose.secure.yaml")
	active=secure
	cp compose.yaml compose.secure.yaml .env.example "$secure_dir/"
	# Leftovers of an interrupted run would hold ports and old data.
	CHRONIK_ADMIN_PASSWORD=unused "${secure_compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
	pick_free BROKER1_KAFKA_PORT BROKER2_KAFKA_PORT BROKER3_KAFKA_PORT \
		BROKER1_HTTP_PORT BROKER2_HTTP_PORT BROKER3_HTTP_PORT \
		BROKER1_SASL_PORT BROKER2_SASL_PORT BROKER3_SASL_PORT MINIO_PORT MINIO_CONSOLE_PORT
	script=$(sed '$d' <<<"$block" | secure_rewrite)
	secure_down=$(tail -n 1 <<<"$block" | secure_rewrite)

	echo "e2e: running docs/security.md's sh compose block in $secure_dir: SASL_SSL on 127.0.0.1:$BROKER1_SASL_PORT, $BROKER2_SASL_PORT, $BROKER3_SASL_PORT"
	secure_sh "$script"
	wait_healthy
	CHRONIK_E2E_COMPOSE="${secure_compose[*]}" CHRONIK_TEST_BINARY="$PWD/$ctx/chronik/chronik" \
		CHRONIK_E2E_SECURE_BROKERS="127.0.0.1:$BROKER1_SASL_PORT,127.0.0.1:$BROKER2_SASL_PORT,127.0.0.1:$BROKER3_SASL_PORT" \
		CHRONIK_E2E_SECURE_INTERNAL="127.0.0.1:$BROKER1_KAFKA_PORT,127.0.0.1:$BROKER2_KAFKA_PORT,127.0.0.1:$BROKER3_KAFKA_PORT" \
		CHRONIK_E2E_SECURE_HTTP="127.0.0.1:$BROKER1_HTTP_PORT,127.0.0.1:$BROKER2_HTTP_PORT,127.0.0.1:$BROKER3_HTTP_PORT" \
		CHRONIK_E2E_SECURE_CA_FILE="$secure_dir/certs/ca.crt" \
		CHRONIK_E2E_SECURE_ADMIN_PASSWORD_FILE="$secure_dir/admin.pw" \
		go test -tags e2e -count=1 -v -timeout 5m -run '^TestSecureCompose$' ./tests/e2e/
	teardown_secure 0
	active=
}

for p in $phases; do
	start=$SECONDS
	"${p}_phase"
	echo "e2e: phase $p passed in $((SECONDS - start)) s"
done
