# regdr — build, test and demo. `make test` is what CI runs (.ci/run).
GO      ?= go
BIN     := $(CURDIR)/bin/regdr
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/regdr/regdr/internal/agent.Version=$(VERSION)

.PHONY: all build test vet fmt-check lint demo demo-down bench fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/regdr

# The whole suite, against real PostgreSQL, etcd and Knot (the lab). Test
# packages run two at a time, one per core.
test: build vet fmt-check
	REGDR_BIN=$(BIN) $(GO) test -count=1 -p 2 -timeout 14m ./...

vet:
	$(GO) vet ./...

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# One command on a fresh Debian machine: installs what is missing (as root),
# brings the lab up, writes under load, shows status and the secondary's SOA.
demo: build
	./scripts/demo.sh

demo-down: build
	$(BIN) lab down

bench: build
	REGDR_BIN=$(BIN) $(GO) test -run '^$$' -bench . -benchmem ./...

# Short fuzzing of every fuzz target (CI runs the seed corpora via `make test`).
fuzz:
	./scripts/fuzz.sh 30s

clean:
	rm -rf bin
