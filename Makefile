# Chronik build and test entry points. `make test` is the one command that
# runs every test; .ci/run calls it after installing what the tests need.

GO ?= go
BIN := bin/chronik

.PHONY: build test unit integration vet fmt bench-produce clean

build:
	$(GO) build -o $(BIN) ./cmd/chronik

# Every test: unit tests (with the race detector) and the integration suites
# that run real client libraries, kcat and real broker processes.
test: vet unit integration

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list ./... | grep -v /tests/)

integration:
	$(GO) test -count=1 -timeout 40m ./tests/...

clean:
	rm -rf bin
