#!/usr/bin/env bash
# Builds Census, starts the collector on its embedded store (loopback, private CA), enrolls
# this machine's agent with the CA fingerprint pinned, delivers its first snapshot, and says
# where to look. Idempotent: run it again and it reuses the running collector and the
# enrollment, and delivers a fresh snapshot (or a heartbeat if nothing changed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DATA=${CENSUS_QUICKSTART_DIR:-$ROOT/census-data}
PORT=${CENSUS_PORT:-8443}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

if ! command -v cc >/dev/null 2>&1; then
  echo "a C compiler is needed to build (ring, zstd): apt-get install -y gcc" >&2
  exit 1
fi
echo "==> building (release; the first build takes a few minutes)"
cargo build --release --quiet -p census-collector -p census-agent
C="$ROOT/target/release/census-collector"
A="$ROOT/target/release/census-agent"
CDIR="$DATA/collector"
ADIR="$DATA/agent"
mkdir -p "$DATA"
[ -f "$DATA/agent.toml" ] || printf 'schedule = "0 */4 * * *"\nsplay_seconds = 900\n' > "$DATA/agent.toml"

running() { [ -f "$DATA/collector.pid" ] && kill -0 "$(cat "$DATA/collector.pid")" 2>/dev/null; }
if running; then
  echo "==> collector already running (pid $(cat "$DATA/collector.pid"))"
else
  echo "==> starting the collector on https://127.0.0.1:$PORT (data in $CDIR)"
  nohup "$C" --data-dir "$CDIR" serve --listen "127.0.0.1:$PORT" >"$DATA/collector.log" 2>&1 &
  echo $! >"$DATA/collector.pid"
  for _ in $(seq 1 100); do
    grep -q "^listening on" "$DATA/collector.log" 2>/dev/null && break
    running || { cat "$DATA/collector.log" >&2; echo "the collector did not start" >&2; exit 1; }
    sleep 0.1
  done
fi
FP=$("$C" --data-dir "$CDIR" fingerprint)

if [ ! -f "$ADIR/enrollment.json" ]; then
  TOKEN=$("$C" --data-dir "$CDIR" --format json token create --uses 1 --ttl 1h --note quickstart | sed -n 's/.*"token": "\(cet_[0-9a-f]*\)".*/\1/p')
  echo "==> enrolling this machine (CA fingerprint $FP)"
  CENSUS_LOG=warn "$A" --state-dir "$ADIR" --config "$DATA/agent.toml" enroll --server "https://127.0.0.1:$PORT" --token "$TOKEN" --ca-fingerprint "$FP"
fi
echo "==> collecting and delivering this machine's inventory"
CENSUS_LOG=warn "$A" --state-dir "$ADIR" --config "$DATA/agent.toml" once
CI=$(sed -n 's/.*"ci_id": "\(cmp_[0-9a-f]*\)".*/\1/p' "$ADIR/last_ack.json")
PKGS=$("$C" --data-dir "$CDIR" --format json ci show "$CI" | sed -n 's/^ *"installs": \([0-9]*\).*/\1/p' | head -1)
# A web UI login for the person running the quickstart (kept in a 0600 file, made once).
if [ ! -f "$DATA/ui-password" ]; then
  "$C" --data-dir "$CDIR" user add admin --role admin >/dev/null
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DATA/ui-password")
  "$C" --data-dir "$CDIR" user passwd admin < "$DATA/ui-password" >/dev/null
fi
cat <<MSG

Census is running.
  collector   https://127.0.0.1:$PORT   (pid $(cat "$DATA/collector.pid"), log $DATA/collector.log)
  this host   CI $CI with ${PKGS:-?} installed packages

Look next:
  web UI      https://127.0.0.1:$PORT/ui   user admin, password in $DATA/ui-password
              (the browser warns about the private CA; its fingerprint is $FP)
  $C --data-dir $CDIR ci show $CI          # this machine: attributes, relationships, identification
  $C --data-dir $CDIR ci list --class computer
  $C --data-dir $CDIR ci history $CI
  $C --data-dir $CDIR stats
  $A --state-dir $ADIR --config $DATA/agent.toml status
Stop the collector:  kill \$(cat $DATA/collector.pid)
MSG
