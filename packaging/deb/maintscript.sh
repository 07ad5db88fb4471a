# Maintainer-script bodies shared by both packages; build.sh substitutes @NAME@ (package,
# unit and user name) and @DIR@ (state directory).

postinst() {
cat <<POSTINST
#!/bin/sh
set -e
if [ "\$1" = configure ]; then
  if ! getent passwd @NAME@ >/dev/null; then
    useradd --system --user-group --home-dir @DIR@ --no-create-home --shell /usr/sbin/nologin @NAME@
  fi
  install -d -m 0700 -o @NAME@ -g @NAME@ @DIR@
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable @NAME@.service >/dev/null 2>&1 || true
    if [ -n "\$2" ]; then
      systemctl try-restart @NAME@.service >/dev/null 2>&1 || true
    else
      systemctl start @NAME@.service >/dev/null 2>&1 || true
    fi
  fi
fi
exit 0
POSTINST
}

prerm() {
cat <<PRERM
#!/bin/sh
set -e
if [ "\$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop @NAME@.service >/dev/null 2>&1 || true
  systemctl disable @NAME@.service >/dev/null 2>&1 || true
fi
exit 0
PRERM
}

postrm() {
cat <<POSTRM
#!/bin/sh
set -e
# Data is only ever deleted on purge, never on remove or upgrade.
if [ "\$1" = purge ]; then
  rm -rf @DIR@
  if getent passwd @NAME@ >/dev/null; then
    userdel @NAME@ >/dev/null 2>&1 || true
  fi
  if getent group @NAME@ >/dev/null; then
    groupdel @NAME@ >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
POSTRM
}
