#!/bin/sh
# Installs the Census agent package and enrolls this machine, idempotently: running it
# again upgrades the package if a newer one is given and keeps the enrollment.
#
#   sudo sh install-agent.sh --server https://census.example.com:8443 \
#        --token cet_... --ca-fingerprint 4fa7... [--deb census-agent_X_amd64.deb]
set -eu

die() { echo "install-agent: $*" >&2; exit 1; }
server= token= fingerprint= deb=
while [ $# -gt 0 ]; do
  case "$1" in
    --server) server=$2; shift 2 ;;
    --token) token=$2; shift 2 ;;
    --ca-fingerprint) fingerprint=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$server" ] || die "--server is required"
[ "$(id -u)" = 0 ] || die "run as root (it installs a package and a service)"

if [ -n "$deb" ]; then
  dpkg -i "$deb"
elif ! command -v census-agent >/dev/null 2>&1; then
  apt-get install -y census-agent
fi

state=/var/lib/census-agent
as_agent() { runuser -u census-agent -- env CENSUS_AGENT_STATE_DIR=$state "$@"; }
if [ -f "$state/enrollment.json" ]; then
  echo "already enrolled; keeping the existing enrollment"
else
  [ -n "$token" ] || die "--token is required to enroll"
  [ -n "$fingerprint" ] || die "--ca-fingerprint is required to enroll (census-collector fingerprint)"
  as_agent census-agent enroll --server "$server" --token "$token" --ca-fingerprint "$fingerprint"
fi

if [ -d /run/systemd/system ]; then
  systemctl enable --now census-agent.service
  systemctl restart census-agent.service
  echo "census-agent is running under systemd (journalctl -u census-agent)"
else
  # No systemd (a container): deliver once so the machine is in the CMDB.
  as_agent census-agent once
  echo "no systemd here: delivered one snapshot; run 'census-agent run' under your supervisor"
fi
