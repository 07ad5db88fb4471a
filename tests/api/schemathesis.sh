#!/usr/bin/env bash
# Runs schemathesis (an independent OpenAPI-driven fuzzer, from PyPI) against a real
# collector with every check, once with an admin's token and once with an auditor's.
# The collector is the debug build on its embedded store, seeded with this machine's
# agent so that ids in paths can be real. Exit status: schemathesis's (0 = no failures).
# Usage: tests/api/schemathesis.sh [VENV_DIR]   (the venv is made and filled if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${1:-/tmp/census-schemathesis}
C=$ROOT/target/debug/census-collector
A=$ROOT/target/debug/census-agent
[ -x "$VENV/bin/schemathesis" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'schemathesis>=4,<5'; }

WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CDIR=$WORK/collector
"$C" --data-dir "$CDIR" serve --listen "127.0.0.1:$PORT" >"$WORK/collector.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do grep -q "^listening on" "$WORK/collector.log" 2>/dev/null && break; sleep 0.1; done
grep -q "^listening on" "$WORK/collector.log" || { cat "$WORK/collector.log" >&2; exit 1; }

TOKEN=$("$C" --data-dir "$CDIR" --format json token create --uses 1 --ttl 1h | sed -n 's/.*"token": "\(cet_[0-9a-f]*\)".*/\1/p')
printf 'schedule = "0 */4 * * *"\n' >"$WORK/agent.toml"
CENSUS_LOG=warn "$A" --state-dir "$WORK/agent" --config "$WORK/agent.toml" enroll --server "https://127.0.0.1:$PORT" --token "$TOKEN" --ca-fingerprint "$("$C" --data-dir "$CDIR" fingerprint)" >/dev/null
CENSUS_LOG=warn "$A" --state-dir "$WORK/agent" --config "$WORK/agent.toml" once >/dev/null
export CENSUS_CI=$(sed -n 's/.*"ci_id": "\(cmp_[0-9a-f]*\)".*/\1/p' "$WORK/agent/last_ack.json")
[ -n "$CENSUS_CI" ] || { echo "the seed snapshot was not acknowledged" >&2; exit 1; }
"$C" --data-dir "$CDIR" user add fuzz-admin --role admin >/dev/null
"$C" --data-dir "$CDIR" user add fuzz-reviewer --role change_manager >/dev/null
"$C" --data-dir "$CDIR" user add fuzz-auditor --role auditor >/dev/null
token_of() { "$C" --data-dir "$CDIR" --format json user token "$1" | sed -n 's/.*"token": "\([^"]*\)".*/\1/p'; }
ADMIN=$(token_of fuzz-admin)
AUDITOR=$(token_of fuzz-auditor)
CHANGE_MANAGER=$(token_of fuzz-reviewer)
"$C" openapi >"$WORK/openapi.json"
CA=$CDIR/tls/ca.pem
[ -f "$CA" ] || CA=false

status=0
# The admin and the auditor, as the API's review asked; the change manager too, the one
# role that may review records and plan changes.
for who in ADMIN AUDITOR CHANGE_MANAGER; do
  echo "==> schemathesis, all checks, as ${who,,}"
  echo "    (collector log: $WORK/collector.log)"
  "$VENV/bin/schemathesis" --config-file "$ROOT/tests/api/schemathesis.toml" run "$WORK/openapi.json" \
    --url "https://127.0.0.1:$PORT" --tls-verify "$CA" \
    -H "Authorization: Bearer ${!who}" \
    --checks all --max-examples "${CENSUS_SCHEMATHESIS_EXAMPLES:-30}" --seed "${CENSUS_SCHEMATHESIS_SEED:-1}" \
    --no-color "${@:2}" || status=$?
done
exit $status
