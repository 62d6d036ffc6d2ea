# Chronik build and test entry points. `make test` is the one command that
# runs every test; .ci/run calls it after installing what the tests need.

GO ?= go
BIN := bin/chronik

.PHONY: build test unit integration vet fmt bench-produce clean e2e

# The MinIO server the Tier 3 tests start on 127.0.0.1 (DESIGN.md, "Real
# components in tests"). AGPL: built from the Go module proxy into the
# git-ignored tools/ folder and run only as a separate process, never
# imported. About 3 minutes and 1.5 GB of memory, once per version (the
# stamp file names the version, so changing it rebuilds).
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_STAMP := tools/.minio-$(MINIO_VERSION)

build:
	$(GO) build -o $(BIN) ./cmd/chronik

# Every test: unit tests (with the race detector) and the integration suites
# that run real client libraries, kcat and real broker processes.
test: tools/minio vet unit integration

tools/minio: $(MINIO_STAMP)
	CGO_ENABLED=0 GOBIN=$(CURDIR)/tools $(GO) install github.com/minio/minio@$(MINIO_VERSION)
	touch $@
$(MINIO_STAMP):
	mkdir -p tools && touch $@

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./tests/e2e/

unit: tools/minio
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list ./... | grep -v /tests/)

integration: tools/minio
	$(GO) test -count=1 -timeout 40m ./tests/...

# The docker compose cluster end to end (scripts/e2e.sh): builds every image
# locally, starts compose.yaml, drives it from the host with franz-go, kcat
# and `chronik search`, kills a broker, and always tears it down. Needs a
# Docker engine with Compose (v1 or v2) and kcat; no image registry.
e2e: tools/minio
	scripts/e2e.sh

clean:
	rm -rf bin
