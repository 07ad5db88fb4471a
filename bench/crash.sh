#!/usr/bin/env bash
# kill -9 the collector during ingest, CYCLES times (default 100); every acknowledged
# snapshot must be present afterwards, the store must open every time, no duplicate CIs.
# Then the same with two collectors on one PostgreSQL database, the first killed
# PG_CYCLES times (default 50) while the second keeps serving.
#   bash bench/crash.sh [CYCLES] [PG_CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo build --release --quiet -p census-collector -p census-agent
CENSUS_CRASH_CYCLES=${1:-100} CENSUS_PG_CRASH_CYCLES=${2:-50} cargo test --release --quiet -p census-e2e --test e2e -- crash --nocapture 2>&1 | grep -E "crash test:|test result|panicked|FAILED"
