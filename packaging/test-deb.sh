#!/usr/bin/env bash
# Builds the .deb packages, installs them on this machine (root), and checks what an IT
# team relies on: the unit files verify, the agent runs as its own user, the install
# script enrolls against a collector and delivers, an upgrade keeps the agent's key and seq,
# remove keeps data, purge deletes it. Run by .ci/run as root; leaves the machine as found.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-deb: needs root (dpkg -i)"; exit 1; }

cleanup() {
  [ -n "${collector_pid:-}" ] && kill "$collector_pid" 2>/dev/null || true
  dpkg -P census-agent census-collector >/dev/null 2>&1 || true
  rm -rf "${work:-/nonexistent}"
}
trap cleanup EXIT
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

command -v rpmbuild >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null 2>&1 || true
debs=$(bash packaging/build.sh)
agent_deb=$(echo "$debs" | grep census-agent_)
collector_deb=$(echo "$debs" | grep census-collector_)
echo "built: $agent_deb $collector_deb"
if command -v rpmbuild >/dev/null 2>&1; then
  agent_rpm=$(echo "$debs" | grep 'census-agent-.*\.rpm$') || fail "no agent rpm"
  collector_rpm=$(echo "$debs" | grep 'census-collector-.*\.rpm$') || fail "no collector rpm"
  rpm -qlp "$agent_rpm" | grep -x /usr/bin/census-agent >/dev/null || fail "agent rpm lacks the binary"
  rpm -qp --configfiles "$agent_rpm" | grep -x /etc/census-agent/agent.toml >/dev/null || fail "agent.toml not %config in the rpm"
  rpm -qlp "$collector_rpm" | grep -x /usr/lib/systemd/system/census-collector.service >/dev/null || fail "collector rpm lacks its unit"
  rpm -qp --scripts "$agent_rpm" | grep 'rm -rf' >/dev/null && fail "the rpm deletes data"
  echo "rpm: ok ($agent_rpm, $collector_rpm)"
fi

dpkg -i "$collector_deb" "$agent_deb" >/dev/null
getent passwd census-agent >/dev/null || fail "no census-agent user"
getent passwd census-collector >/dev/null || fail "no census-collector user"
[ "$(stat -c '%a %U' /var/lib/census-agent)" = "700 census-agent" ] || fail "agent state dir mode/owner: $(stat -c '%a %U' /var/lib/census-agent)"
[ "$(stat -c '%a %U' /var/lib/census-collector)" = "700 census-collector" ] || fail "collector data dir"
grep -q /etc/census-agent/agent.toml /var/lib/dpkg/info/census-agent.conffiles || fail "agent.toml is not a conffile"
runuser -u census-agent -- census-agent --version | grep census-agent >/dev/null || fail "census-agent --version as its user"

if command -v systemd-analyze >/dev/null 2>&1; then
  for unit in census-agent census-collector; do
    out=$(systemd-analyze verify /lib/systemd/system/$unit.service 2>&1 || true)
    # Containers without a running systemd still parse units; only our file's own errors count.
    if echo "$out" | grep -i "$unit.service" | grep -iv "not found\|No such file\|Failed to create\|bus" >/dev/null; then
      echo "$out" >&2
      fail "systemd-analyze verify $unit.service"
    fi
  done
  echo "systemd-analyze verify: ok"
fi

# A collector from the package, as its user, on loopback.
work=$(mktemp -d)
runuser -u census-collector -- census-collector --data-dir /var/lib/census-collector serve \
  --listen 127.0.0.1:18443 > "$work/collector.out" 2>&1 &
collector_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/collector.out" && break; sleep 0.1; done
grep -q "listening on" "$work/collector.out" || { cat "$work/collector.out"; fail "collector did not start"; }
fp=$(runuser -u census-collector -- census-collector --data-dir /var/lib/census-collector fingerprint)
token=$(runuser -u census-collector -- census-collector --data-dir /var/lib/census-collector --format json token create --uses 1 | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
[ -n "$token" ] || fail "no enrollment token"

sh packaging/install-agent.sh --server https://127.0.0.1:18443 --token "$token" --ca-fingerprint "$fp" --deb "$agent_deb" > "$work/install.out" 2>&1 \
  || { cat "$work/install.out"; fail "install-agent.sh"; }
[ "$(stat -c '%U' /var/lib/census-agent/agent.key)" = census-agent ] || fail "agent key owner"
[ "$(stat -c '%a' /var/lib/census-agent/agent.key)" = 600 ] || fail "agent key mode"
key_before=$(sha256sum /var/lib/census-agent/agent.key)
seq_before=$(cat /var/lib/census-agent/seq)
computers=$(runuser -u census-collector -- census-collector --data-dir /var/lib/census-collector --format json stats | sed -n 's/.*"computer": \([0-9]*\).*/\1/p')
[ "$computers" = 1 ] || fail "the machine is not in the CMDB (computers=$computers)"

# Upgrade (same version reinstalled) and the install script again: state kept, no re-enroll.
dpkg -i "$agent_deb" >/dev/null
sh packaging/install-agent.sh --server https://127.0.0.1:18443 --deb "$agent_deb" > "$work/install2.out" 2>&1 \
  || { cat "$work/install2.out"; fail "install-agent.sh (second run)"; }
grep -q "already enrolled" "$work/install2.out" || fail "second install re-enrolled"
[ "$(sha256sum /var/lib/census-agent/agent.key)" = "$key_before" ] || fail "upgrade changed the agent key"
[ "$(cat /var/lib/census-agent/seq)" -ge "$seq_before" ] || fail "upgrade lost the seq"

dpkg -r census-agent >/dev/null
[ -f /var/lib/census-agent/agent.key ] || fail "remove deleted the agent's data"
dpkg -P census-agent >/dev/null
[ ! -e /var/lib/census-agent ] || fail "purge kept the agent's data"
getent passwd census-agent >/dev/null && fail "purge kept the census-agent user"
echo "test-deb: ok (install, verify, enroll, deliver, upgrade keeps state, remove keeps data, purge deletes it)"
