#!/usr/bin/env bash
# The Debian package (debian/): built with dpkg-buildpackage from a copy of the tree, installed
# with apt-get, the installed config passes knockdaemon -check once the key files it names
# exist, the installed unit passes systemd-analyze verify (its security score is printed;
# tests/e2e/systemd_unit.sh holds it to 2.0), the worker's system user portknock is made,
# and purging leaves nothing behind, that user included. Needs root: it installs the package
# on this machine, and the trap purges it again whatever happens.
#
# With BIN_DIR (a plain build of this tree) the package takes that build's knockdaemon and
# knockclient (debian/rules PORTKNOCK_PREBUILT) instead of compiling them again;
# PORTKNOCK_DEB_FULL=1 compiles them as a Debian build does (dpkg-buildflags; 2 jobs).
source "$(dirname "$0")/common.bash"

[ "$(id -u)" = 0 ] || fail "needs root (installs the package)"
for tool in dpkg-buildpackage dh systemd-analyze apt-get; do
  command -v "$tool" >/dev/null || fail "$tool missing: run scripts/install-deps.sh"
done
BIN_DIR=${BIN_DIR:-}
if [ -n "$BIN_DIR" ] && grep -q '^PORTKNOCK_SANITIZE:BOOL=ON' "$BIN_DIR/CMakeCache.txt" 2>/dev/null; then
  say "SKIP: a sanitizer build is not packaged (the plain build's run of this test covers it)"
  exit 0
fi

# Never touch an installation that is not ours.
status=$(dpkg-query -W -f='${db:Status-Status}' portknock 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] ||
  fail "the package portknock is on this machine ($status): purge it first (apt-get purge portknock)"
for d in /etc/portknock /var/lib/portknock; do
  [ ! -e "$d" ] || fail "$d exists (a cmake --install?): this test installs and purges the package there"
done
# The package makes the worker's user and group, and its purge removes them: never someone else's.
for db in passwd group; do
  [ -z "$(getent $db portknock)" ] || fail "a $db entry portknock exists: this test makes and removes it"
done

tmp=$(mktemp -d)
installed=
cleanup() {
  if [ -n "$installed" ]; then
    apt-get purge -y -qq -o DPkg::Lock::Timeout=300 portknock >/dev/null 2>&1 ||
      dpkg --purge portknock >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# 1. Build, from a copy of the sources (no build folders, no git metadata).
say "== build"
mkdir "$tmp/src"
tar -C "$SOURCE_DIR" --exclude=./.git --exclude='./build*' --exclude='./obj-*' --exclude=./out \
  --exclude=./debian/tmp --exclude=./debian/portknock --exclude='./debian/.debhelper' -cf - . |
  tar -C "$tmp/src" -xf -
export DEB_BUILD_OPTIONS="nocheck noddebs parallel=2"
if [ -z "${PORTKNOCK_DEB_FULL:-}" ] && [ -n "$BIN_DIR" ] && [ -x "$BIN_DIR/knockdaemon" ] && [ -x "$BIN_DIR/knockclient" ]; then
  export PORTKNOCK_PREBUILT=$BIN_DIR
  say "programs from $BIN_DIR"
else
  say "programs compiled by debian/rules"
fi
start=$SECONDS
(cd "$tmp/src" && dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1 ||
  fail "dpkg-buildpackage: $(tail -40 "$tmp/build.log")"
say "dpkg-buildpackage: $((SECONDS - start)) s"
deb=$(ls "$tmp"/portknock_*.deb)
dpkg-deb -c "$deb" >"$tmp/contents"
for f in ./usr/sbin/knockdaemon ./usr/bin/knockclient ./etc/portknock/knockdaemon.conf \
         ./etc/portknock/knockclient.conf ./etc/portknock/logformats.conf \
         ./usr/share/man/man1/knockdaemon.1 ./usr/share/man/man1/knockclient.1 \
         ./lib/systemd/system/knockdaemon.service ./usr/lib/tmpfiles.d/portknock.conf \
         ./usr/share/doc/portknock/README.Debian \
         ./usr/share/doc/portknock/README.md ./usr/share/doc/portknock/PROTOCOL.md \
         ./usr/share/doc/portknock/examples/knockdaemon.service.d/realtime.conf \
         ./usr/share/doc/portknock/copyright ./usr/share/bash-completion/completions/knockclient \
         ./usr/share/bash-completion/completions/knockdaemon ./usr/share/bash-completion/completions/knockctl; do
  grep -Eq " $f(\.gz)?\$" "$tmp/contents" || fail "not in the package: $f"
done
# Every file of etc/ is a conffile.
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles >"$tmp/conffiles"
for f in $(cd "$SOURCE_DIR/etc" && find . -type f | sed 's|^\./||'); do
  grep -qx "/etc/portknock/$f" "$tmp/conffiles" || fail "not a conffile: /etc/portknock/$f"
done
if command -v lintian >/dev/null; then
  lintian --tag-display-limit 0 "$deb" >"$tmp/lintian" 2>&1 || true
  say "lintian: $(grep -c '^E:' "$tmp/lintian") errors, $(grep -c '^W:' "$tmp/lintian") warnings"
  grep -v 'root privileges is not recommended' "$tmp/lintian" || true
  ! grep -q '^E:' "$tmp/lintian" || fail "lintian errors"
fi

# 2. Install, with the dependencies the package declares.
say "== install"
installed=1
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "$deb" >"$tmp/install.log" 2>&1 ||
  fail "apt-get install: $(cat "$tmp/install.log")"
[ "$(dpkg-query -W -f='${db:Status-Status}' portknock)" = installed ] || fail "not installed"
# The state cache is the monitor's: root's, 0700, not the worker's.
[ "$(stat -c %a:%U:%G /var/lib/portknock)" = 700:root:root ] || fail "/var/lib/portknock: $(stat -c %a:%U:%G /var/lib/portknock)"
# The worker's system user and group: no home, no shell, owning nothing the package installed.
IFS=: read -r _ _ wuid wgid _ whome wshell <<<"$(getent passwd portknock)" || fail "postinst made no user portknock"
[ "$(getent group portknock | cut -d: -f3)" = "$wgid" ] || fail "the user portknock's group is not the group portknock: $(getent group portknock)"
((wuid > 0 && wuid < 1000)) || fail "portknock is not a system user (uid $wuid)"
[ "$whome" = /nonexistent ] && [ ! -e /nonexistent ] || fail "portknock's home: $whome"
[ "$wshell" = /usr/sbin/nologin ] || fail "portknock's shell: $wshell"
owned=$( (dpkg -L portknock; find /etc/portknock /var/lib/portknock) | sort -u |
  while read -r f; do [ ! -e "$f" ] || stat -c '%U:%G %n' "$f"; done | grep -E '^(portknock:|[^ ]*:portknock )' || true)
[ -z "$owned" ] || fail "files of the package belong to portknock: $owned"
say "user portknock (uid $wuid, group $wgid), home $whome, shell $wshell; /var/lib/portknock root 0700"
[ "$(stat -c %a /etc/portknock/knockdaemon.conf)" = 640 ] || fail "knockdaemon.conf mode $(stat -c %a /etc/portknock/knockdaemon.conf)"
[ -e /etc/systemd/system/multi-user.target.wants/knockdaemon.service ] || fail "the unit is not enabled"
/usr/sbin/knockdaemon -version >/dev/null || fail "the installed knockdaemon does not run"
/usr/bin/knockclient -man | cmp -s - <(zcat /usr/share/man/man1/knockclient.1.gz) || fail "knockclient -man differs from the installed page"

# The maintainer scripts' service handling, against a stand-in systemd (none runs here): the
# scripts run again with /run/systemd/system pointed at a folder of the test's, and systemctl,
# deb-systemd-invoke and deb-systemd-helper that only log. FAKE_ACTIVE=1: the unit is running.
mkdir -p "$tmp/fake/bin" "$tmp/fake/run-systemd"
for tool in systemctl deb-systemd-invoke deb-systemd-helper; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$tool" "$tmp/fake/calls" >"$tmp/fake/bin/$tool"
  [ "$tool" != systemctl ] ||
    printf 'case "$*" in *is-active*) [ "${FAKE_ACTIVE:-}" = 1 ];; esac\n' >>"$tmp/fake/bin/$tool"
  chmod +x "$tmp/fake/bin/$tool"
done
for s in postinst prerm; do
  sed "s|/run/systemd/system|$tmp/fake/run-systemd|g" "/var/lib/dpkg/info/portknock.$s" >"$tmp/fake/$s"
done
# maint SCRIPT ARGS...: run it with the stand-ins; prints the service actions it took.
maint() {
  : >"$tmp/fake/calls"
  PATH="$tmp/fake/bin:$PATH" sh "$tmp/fake/$1" "${@:2}" 2>"$tmp/fake/stderr" || fail "$1 $*: $(cat "$tmp/fake/stderr")"
  sed -n 's/^deb-systemd-invoke //p' "$tmp/fake/calls" | tr '\n' ' '
}
conf=/etc/portknock/knockdaemon.conf
if ! /usr/sbin/knockdaemon -check -conf "$conf" >/dev/null 2>&1; then
  actions=$(maint postinst configure)
  [ -z "$actions" ] || fail "postinst starts the daemon on a config that fails -check: $actions"
  grep -q 'README.Debian' "$tmp/fake/stderr" || fail "postinst does not point to README.Debian"
  grep -q 'deb-systemd-helper enable knockdaemon.service' "$tmp/fake/calls" || fail "postinst does not enable the unit"
  actions=$(FAKE_ACTIVE=1 maint postinst configure 0.0.1)
  [ -z "$actions" ] || fail "postinst restarts a running daemon on a config that fails -check: $actions"
  say "fresh install, config failing -check: enabled, not started"
fi

# 3. The installed config passes -check once the key files it names exist (a fresh install has
#    none: README.Debian's first step makes them).
say "== knockdaemon -check"
keygen=; /usr/bin/knockclient -h 2>&1 | grep -q -- -keygen && keygen=1
# `keyfile = PATH` or `keyfile PATH`, in a <client NAME> block or not, quoted or not; a relative
# PATH is read next to the config.
for key in $(sed -n 's/^[[:space:]]*keyfile[[:space:]]*=\{0,1\}[[:space:]]*"\{0,1\}\([^[:space:]#"]*\).*/\1/p' "$conf" | sort -u); do
  [[ $key == /* ]] || key=/etc/portknock/$key
  mkdir -p -m 0700 "$(dirname "$key")"
  if [ -n "$keygen" ]; then
    /usr/bin/knockclient -keygen "$key" || fail "knockclient -keygen $key"
  else
    (umask 077; head -c 24 /dev/urandom | base64 >"$key")
  fi
  say "key file made: $key"
done
/usr/sbin/knockdaemon -check -conf "$conf" || fail "the installed config does not pass -check"
actions=$(maint postinst configure)
[ "$actions" = "start knockdaemon.service " ] || fail "postinst, fresh install, config OK: '$actions', not start"
[ "$(getent passwd portknock | cut -d: -f3)" = "$wuid" ] || fail "postinst run again changed the user portknock"
actions=$(FAKE_ACTIVE=1 maint postinst configure 0.0.1)
[ "$actions" = "restart knockdaemon.service " ] || fail "postinst, upgrade of a running daemon: '$actions', not restart"
actions=$(maint prerm remove)
[ "$actions" = "stop knockdaemon.service " ] || fail "prerm remove: '$actions', not stop"
actions=$(maint prerm upgrade 0.1.0)
[ -z "$actions" ] || fail "prerm upgrade stops the daemon: $actions"
say "config passing -check: postinst starts it (restarts it on upgrade), prerm stops it on remove"

# 4. The unit: systemd-analyze needs no running systemd.
say "== systemd-analyze verify"
unit=/lib/systemd/system/knockdaemon.service
systemd-analyze verify "$unit" >"$tmp/verify" 2>&1 || fail "systemd-analyze verify: $(cat "$tmp/verify")"
if [ -s "$tmp/verify" ]; then cat "$tmp/verify"; else say "no complaints"; fi
say "== systemd-analyze security"
systemd-analyze security --offline=true --no-pager "$unit" >"$tmp/security" 2>&1 || true
grep -q 'Overall exposure level' "$tmp/security" || fail "systemd-analyze security: $(cat "$tmp/security")"
grep -v '^✓' "$tmp/security"
say "security score: $(grep 'Overall exposure level' "$tmp/security" | sed 's/.*: //')"

# 5. Remove keeps the user (the configuration may name it); purge takes it, and leaves nothing.
say "== remove"
apt-get remove -y -qq -o DPkg::Lock::Timeout=300 portknock >"$tmp/remove.log" 2>&1 || fail "apt-get remove: $(cat "$tmp/remove.log")"
[ -n "$(getent passwd portknock)" ] || fail "remove (not purge) took the user portknock"

say "== purge"
apt-get purge -y -qq -o DPkg::Lock::Timeout=300 portknock >"$tmp/purge.log" 2>&1 || fail "apt-get purge: $(cat "$tmp/purge.log")"
installed=
status=$(dpkg-query -W -f='${db:Status-Status}' portknock 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] || fail "still known to dpkg after purge: $status"
[ -z "$(dpkg -L portknock 2>/dev/null)" ] || fail "dpkg -L portknock still lists files"
for db in passwd group; do
  [ -z "$(getent $db portknock)" ] || fail "left behind after purge: the $db entry $(getent $db portknock)"
done
for f in /etc/portknock /var/lib/portknock "$unit" /usr/sbin/knockdaemon /usr/bin/knockclient \
         /usr/lib/tmpfiles.d/portknock.conf \
         /etc/systemd/system/multi-user.target.wants/knockdaemon.service \
         /var/lib/systemd/deb-systemd-helper-enabled/knockdaemon.service.dsh-also \
         /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/knockdaemon.service; do
  [ ! -e "$f" ] && [ ! -L "$f" ] || fail "left behind after purge: $f"
done
echo PASS
