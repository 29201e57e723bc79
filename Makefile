# jitgate — two commands do all the set-up on a fresh machine:
#   make run    install what is missing, build, start the whole gateway, query through it
#   make test   install what is missing, build, run every test (unit, wasm, golden, e2e)
# Everything installed goes to .tools/ (ignored); Go's build cache makes warm runs fast.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
# One build of everything, cgo-free: the BigQuery emulator and our SQL analyser share the
# (huge) go-googlesql package, which then compiles once per machine instead of twice.
export CGO_ENABLED = 0
DATA ?= tools/demo/bigquery-data.yaml
POLICIES ?= tools/demo/policies
RUN_FLAGS ?=
UNIT_PKGS = $$($(GO) list ./... | grep -v '/e2e')
TEST_FLAGS ?=

.PHONY: all help setup build wasm bin unit e2e test gen gen-check vet bench fuzz stress run clean

all: build

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## install Envoy, the Python BigQuery client and the BigQuery emulator into .tools/ (pinned, idempotent)
	@tools/setup.sh all

build: wasm bin ## build build/jitgate.wasm and bin/jitgated

wasm:
	@mkdir -p build
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o build/jitgate.wasm ./filter
	@ls -l build/jitgate.wasm | awk '{print "build/jitgate.wasm: " $$5 " bytes"}'

bin:
	@mkdir -p bin
	$(GO) build -o bin/jitgated ./controlplane/cmd/jitgated
	$(GO) build -o bin/jitgate ./controlplane/cmd/jitgate

vet: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "not gofmt-formatted: $$out"; exit 1; fi

unit: wasm ## the fast tests: unit, filter (native and .wasm), golden xDS; no Envoy or emulator
	$(GO) test $(TEST_FLAGS) -count=1 $(UNIT_PKGS)

gen: ## regenerate the golden xDS files
	$(GO) test ./controlplane/xds -run Golden -update

gen-check: ## fail when the golden xDS files are stale
	$(GO) test -count=1 ./controlplane/xds -run Golden

e2e: setup ## end-to-end tests through real Envoy, jitgated, NATS and the emulator
	$(GO) test $(TEST_FLAGS) -count=1 -timeout 20m ./e2e/...

test: setup vet unit e2e ## everything CI runs

bench: setup wasm ## benchmarks: filter, policies, identity (Go), latency through real Envoy vs direct, a masked 9 MB page through Envoy
	$(GO) test -run '^$$' -bench . -benchmem ./filter/... ./policies/... ./controlplane/...
	$(GO) test -run '^$$' -bench '^Benchmark(Query|TablesGet|ResponseReport|Authorize)' -benchtime 200x ./e2e
	$(GO) test -run '^$$' -bench '^BenchmarkLargePage$$' -benchtime 5x -timeout 30m ./e2e

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each (not part of make test); failures land in testdata/fuzz
	$(GO) test -run '^$$' -fuzz '^FuzzClassify$$' -fuzztime $(FUZZTIME) ./filter/bqapi
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeQueryRequest$$' -fuzztime $(FUZZTIME) ./filter/bqapi
	$(GO) test -run '^$$' -fuzz '^FuzzMaskResponse$$' -fuzztime $(FUZZTIME) ./filter/masking
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./policies/source
	$(GO) test -run '^$$' -fuzz '^FuzzAnalyze$$' -fuzztime $(FUZZTIME) ./controlplane/sqlanalysis

STRESS ?= 2m
stress: setup ## the SQL engine under GC pressure for STRESS (default 2m): corpus analyses in a child process, several goroutines; not part of make test
	JITGATE_STRESS=$(STRESS) $(GO) test -count=1 -timeout 30m -run '^(TestEngineStress|TestEngineObjectsOutliveTheirAnalysis)$$' -v ./controlplane/sqlanalysis

run: setup build ## bring up the gateway with the demo data and policy (DATA=seed.yaml, POLICIES=dir) and query through it
	$(GO) build -o bin/devstack ./tools/devstack
	bin/devstack --data $(DATA) $(if $(POLICIES),--policies $(POLICIES)) $(RUN_FLAGS)

clean: ## remove build outputs (keeps .tools/)
	rm -rf bin build .jitgate
