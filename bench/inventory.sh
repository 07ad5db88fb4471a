#!/usr/bin/env bash
# Local inventory: census-agent (release) vs fusioninventory-inventory, side by side in one
# run, N runs each; prints medians of wall time, CPU time (user+sys), peak RSS, output size,
# and the stripped census-agent binary size.
#   bash bench/inventory.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
command -v fusioninventory-inventory >/dev/null || { echo "apt-get install -y fusioninventory-agent" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "apt-get install -y time" >&2; exit 1; }
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --quiet -p census-agent
AGENT=target/release/census-agent
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

measure() { # name, output file, command...
  local name=$1 file=$2; shift 2
  for i in $(seq 1 "$RUNS"); do
    /usr/bin/time -f "%e %U %S %M" -o "$OUT/t" "$@" >"$file" 2>/dev/null
    echo "$(cat "$OUT/t") $(stat -c %s "$file")" >>"$OUT/$name.runs"
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
row() {
  local name=$1 f="$OUT/$1.runs"
  local wall cpu rss size
  wall=$(awk '{print $1}' "$f" | median)
  cpu=$(awk '{print $2+$3}' "$f" | median)
  rss=$(awk '{print $4/1024}' "$f" | median)
  size=$(awk '{print $5/1024}' "$f" | median)
  printf "| %s | %.3f | %.3f | %.1f | %.0f |\n" "$name" "$wall" "$cpu" "$rss" "$size"
  echo "$wall $cpu $rss" >"$OUT/$name.med"
}

# Interleave the tools so machine noise hits both alike.
for i in $(seq 1 "$RUNS"); do
  RUNS=1 measure census-agent "$OUT/census.json" "$AGENT" inventory --format json
  RUNS=1 measure fusioninventory "$OUT/fi.xml" fusioninventory-inventory
done

echo "runs: $RUNS each, interleaved; $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "| tool | wall s (median) | CPU s (median) | peak RSS MiB (median) | output KiB |"
echo "|---|---:|---:|---:|---:|"
row census-agent
row fusioninventory
read -r cw cc cr <"$OUT/census-agent.med"
read -r fw fc fr <"$OUT/fusioninventory.med"
awk -v cw="$cw" -v fw="$fw" -v cr="$cr" -v fr="$fr" 'BEGIN {printf "wall ratio census/fusioninventory: %.3f (goal <= 0.1); RSS ratio: %.3f (goal <= 0.25)\n", cw/fw, cr/fr}'
echo "stripped census-agent binary: $(stat -c %s "$AGENT" | awk '{printf "%.1f MB", $1/1e6}') (goal <= 10 MB)"
echo "packages: census $(grep -o '"source":"dpkg"' "$OUT/census.json" | wc -l), fusioninventory $(grep -c '<SOFTWARES>' "$OUT/fi.xml")"
