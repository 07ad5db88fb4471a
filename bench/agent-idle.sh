#!/usr/bin/env bash
# Idle RSS of `census-agent run` (release) after it has enrolled and delivered: the
# steady state of a laptop between collections. Goal: <= 10 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
cargo build --release --quiet -p census-collector -p census-agent
C=target/release/census-collector A=target/release/census-agent
D=$(mktemp -d)
trap 'kill $CP $AP 2>/dev/null || true; rm -rf "$D"' EXIT
$C --data-dir "$D/c" serve --listen 127.0.0.1:0 >"$D/c.out" 2>/dev/null & CP=$!
for _ in $(seq 1 100); do grep -q "^listening on" "$D/c.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$D/c.out")
TOKEN=$($C --data-dir "$D/c" --format json token create | sed -n 's/.*"token": "\(cet_[0-9a-f]*\)".*/\1/p')
printf 'schedule = "0 */4 * * *"\nsplay_seconds = 0\n' >"$D/agent.toml"
CENSUS_LOG=warn $A --state-dir "$D/a" --config "$D/agent.toml" enroll --server "$URL" --token "$TOKEN" --ca-fingerprint "$($C --data-dir "$D/c" fingerprint)" >/dev/null
CENSUS_LOG=warn $A --state-dir "$D/a" --config "$D/agent.toml" once >/dev/null
CENSUS_LOG=warn $A --state-dir "$D/a" --config "$D/agent.toml" run & AP=$!
sleep "${1:-10}"
rss=$(awk '/VmRSS/ {print $2}' /proc/$AP/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$AP/status)
threads=$(awk '/Threads/ {print $2}' /proc/$AP/status)
echo "census-agent run, idle after ${1:-10}s: RSS $(awk -v k="$rss" 'BEGIN {printf "%.1f", k/1024}') MiB (peak $(awk -v k="$hwm" 'BEGIN {printf "%.1f", k/1024}') MiB), $threads threads (goal <= 10 MiB)"
/usr/bin/time -f "census-agent once (full collection + delivery): peak RSS %M KiB, wall %e s" $A --state-dir "$D/a" --config "$D/agent.toml" once >/dev/null 2>"$D/time" || true
tail -1 "$D/time"
