# The Chronik broker image: one static binary on an empty base, run as a
# non-root user, with its data in a volume.
#
#	docker build -t chronik:latest .
#	docker run -p 9092:9092 -p 6092:6092 -e CHRONIK_ADVERTISED_ADDR=localhost:9092 chronik:latest
#
# `make e2e` does not use this file: the test machines reach no image
# registry, so it builds the same runtime layout from a binary compiled on
# the host (tests/e2e/images/chronik.Dockerfile).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no libc), so it runs on scratch. The empty directories become the
# data volume and /tmp, owned by the runtime user.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/chronik ./cmd/chronik \
	&& mkdir -p /out/data /out/tmp && chmod 1777 /out/tmp

FROM scratch
# CA roots for s3:// and minio://...?secure=true over TLS.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tmp /tmp
COPY --from=build --chown=65532:65532 /out/data /var/lib/chronik
COPY --from=build /out/chronik /chronik
USER 65532:65532
ENV CHRONIK_DATA_DIR=/var/lib/chronik
VOLUME /var/lib/chronik
# Kafka, the controller (Raft) and HTTP (metrics, health, search).
EXPOSE 9092 9093 6092
# Liveness: the process serves HTTP. Readiness (/readyz: recovered, joined
# the cluster) is `chronik health` without --live; compose.yaml uses that.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
	CMD ["/chronik", "health", "--live"]
ENTRYPOINT ["/chronik"]
CMD ["start"]
