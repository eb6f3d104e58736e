# tilefeed — see README.md.
GO      ?= go
PKGS    := ./...
BIN     := bin/tilefeed
SHELL   := /bin/bash

.PHONY: build test bench lint demo deps chaos run reference

build:
	$(GO) build -o $(BIN) ./cmd/tilefeed

# The README's test command. Integration tests start their own PostgreSQL
# (postgresql-15 must be installed: .ci/run installs it); Aerospike tests
# run when AEROSPIKE_HOSTS is set and skip loudly otherwise. The run ends
# with every skipped test and its reason, then "N passed, N failed, N
# skipped" (cmd/internal/testsummary reads go test -json).
test: deps
	$(GO) vet $(PKGS)
	$(GO) build -o bin/testsummary ./cmd/internal/testsummary
	set -o pipefail; $(GO) test -json -race -count=1 -timeout 30m $(PKGS) | bin/testsummary

# Throughput and latency figures (changes/s decoded, changes/s end to end
# for a 1M-change backlog, commit→durable p50/p99 at a steady rate, rows/s
# of an initial snapshot of 1M rows).
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./decode/ ./transform/ ./connector/debezium/ ./integration/

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# A throwaway PostgreSQL with a sample schema and workload, tilefeed on the
# embedded store, features printed.
# From a terminal it keeps serving after the workload until Ctrl-C
# (DEMO_ARGS=-keep=false ends it; -duration 60s runs a longer workload).
demo: deps
	@echo "== downloading Go modules (first run only)"
	@$(GO) mod download
	@echo "== compiling the demo (the first build takes a minute or two)"
	@$(GO) build -o bin/tilefeed-demo ./cmd/tilefeed-demo
	bin/tilefeed-demo $(DEMO_ARGS)

# PostgreSQL server binaries for the tests and the demo (Debian's
# postgresql-15; needs root, as on the CI and developer machines).
deps:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		{ echo "installing postgresql-15"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }

# The crash suite's long mode: 100 SIGKILLs in every phase under load
# (CI runs 25 as part of make test). TILEFEED_SEED=… replays a run.
chaos: deps
	TILEFEED_CHAOS_KILLS=$${TILEFEED_CHAOS_KILLS:-100} $(GO) test -count=1 -v -timeout 60m -run 'TestChaos$$' ./integration/

run: build
	$(BIN) run -c $(CONNECTOR)

# Regenerate the property reference from the code.
reference:
	$(GO) run ./cmd/tilefeed config-reference > docs/config-reference.md
