#!/usr/bin/env bash
# Builds the Debian packages of census-agent and census-collector from a clean checkout:
#   bash packaging/build.sh            -> target/dist/census-{agent,collector}_VERSION_ARCH.deb
# Needs cargo and dpkg-deb (Debian's dpkg). Set NO_BUILD=1 to package existing release
# binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/deb/maintscript.sh

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
out=${OUT:-target/dist}
[ "${NO_BUILD:-}" = 1 ] || CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release -q -p census-agent -p census-collector
mkdir -p "$out"

# package NAME DIR DESCRIPTION CONFFILE... ; files are staged by the caller in $root
package() {
  local name=$1 dir=$2 description=$3
  shift 3
  mkdir -p "$root/DEBIAN"
  cat > "$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: Census developers <census@example.org>
Depends: libc6, passwd
Section: admin
Priority: optional
Description: $description
CONTROL
  : > "$root/DEBIAN/conffiles"
  for f in "$@"; do echo "$f" >> "$root/DEBIAN/conffiles"; done
  for script in postinst prerm postrm; do
    "$script" | sed "s|@NAME@|$name|g; s|@DIR@|$dir|g" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
  done
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${name}_${version}_${arch}.deb" >/dev/null
  echo "$out/${name}_${version}_${arch}.deb"
}

stage_common() {
  root=$(mktemp -d)
  chmod 0755 "$root"
  install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/doc/$1"
  install -m 0644 packaging/systemd/$1.service "$root/lib/systemd/system/"
  install -m 0644 README.md "$root/usr/share/doc/$1/README.md"
}

stage_common census-agent
install -m 0755 target/release/census-agent "$root/usr/bin/"
install -d -m 0755 "$root/etc/census-agent"
install -m 0644 packaging/deb/agent.toml "$root/etc/census-agent/agent.toml"
package census-agent /var/lib/census-agent \
  "Census inventory agent: signed hardware, OS and software snapshots for the Census CMDB" \
  /etc/census-agent/agent.toml
rm -rf "$root"

stage_common census-collector
install -m 0755 target/release/census-collector target/release/census "$root/usr/bin/"
install -d -m 0755 "$root/etc/default"
install -m 0644 packaging/deb/census-collector.default "$root/etc/default/census-collector"
package census-collector /var/lib/census-collector \
  "Census collector: signed-snapshot ingest, CMDB, drift review and query API" \
  /etc/default/census-collector
rm -rf "$root"

# RPMs, where rpmbuild exists (apt-get install rpm on Debian; native on Fedora/RHEL).
if command -v rpmbuild >/dev/null 2>&1; then
  top=$(mktemp -d)
  rpmbuild -bb --quiet \
    --define "_topdir $top" --define "repo $PWD" --define "version $version" \
    --define "_systemd_util_dir /usr/lib/systemd" \
    packaging/rpm/census.spec >/dev/null 2>"$top/rpmbuild.log" || { cat "$top/rpmbuild.log" >&2; exit 1; }
  for r in "$top"/RPMS/*/*.rpm; do
    cp "$r" "$out/" && echo "$out/$(basename "$r")"
  done
  rm -rf "$top"
fi
