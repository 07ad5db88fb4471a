#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) on nightly; keeps the corpus
# under fuzz/corpus (git-ignored) and stops at the first crash, leaving the input in
# fuzz/artifacts/<target>/ to turn into a regression test.
#   cargo install cargo-fuzz; bash bench/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-60}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo +nightly fuzz build
total=0
for target in $(cargo +nightly fuzz list); do
  out=$(cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 | tail -3)
  runs=$(echo "$out" | grep -o 'Done [0-9]* runs' | grep -o '[0-9]*' || echo "?")
  echo "$target: ${SECONDS_EACH}s, ${runs} runs, no crash"
  total=$((total + SECONDS_EACH))
done
echo "total: ${total}s of fuzzing, zero crashes"
