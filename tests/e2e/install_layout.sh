#!/usr/bin/env bash
# `cmake --install` lays out what a package needs: both programs, the three configs under
# /etc/portknock, both man pages, the systemd unit; the installed programs run, -man prints
# the installed page, and the installed daemon config passes -check once its key file exists.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
DESTDIR="$tmp/root" cmake --install "$BIN_DIR" >"$tmp/install.log" 2>&1 || fail "$(cat "$tmp/install.log")"
r="$tmp/root"
prefix=$(sed -n "s/^CMAKE_INSTALL_PREFIX:PATH=//p" "$BIN_DIR/CMakeCache.txt")
p=${prefix#/}
for f in $p/sbin/knockdaemon $p/bin/knockclient etc/portknock/knockdaemon.conf etc/portknock/knockclient.conf \
         etc/portknock/logformats.conf $p/share/man/man1/knockdaemon.1 $p/share/man/man1/knockclient.1 \
         $p/lib/systemd/system/knockdaemon.service $p/share/doc/portknock/PROTOCOL.md; do
  [ -e "$r/$f" ] || fail "not installed: /$f"
done
"$r/$p/sbin/knockdaemon" -man | cmp -s - "$r/$p/share/man/man1/knockdaemon.1" || fail "knockdaemon -man differs from its page"
"$r/$p/bin/knockclient" -man | cmp -s - "$r/$p/share/man/man1/knockclient.1" || fail "knockclient -man differs from its page"
grep -q "^ExecStartPre=$prefix/sbin/knockdaemon -check" "$r/$p/lib/systemd/system/knockdaemon.service" || fail "unit does not check the config"

# The shipped daemon config, pointed at a key file and a state directory of the test's own.
conf="$r/etc/portknock/knockdaemon.conf"
printf 'shipped-config-test-key\n' >"$r/etc/portknock/knock.key"
mkdir -p "$r/var/lib/portknock"
sed -i "s|/etc/portknock/|$r/etc/portknock/|g; s|/var/lib/portknock/|$r/var/lib/portknock/|" "$conf"
chmod 600 "$r"/etc/portknock/*
"$r/$p/sbin/knockdaemon" -check -conf "$conf" >/dev/null || fail "the shipped config does not pass -check"
# knockclient with the shipped client config and the same key agrees with the daemon's codec.
sed -i "s|/etc/portknock/knock.key|$r/etc/portknock/knock.key|" "$r/etc/portknock/knockclient.conf"
ports=$("$r/$p/bin/knockclient" -conf "$r/etc/portknock/knockclient.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -test)
[ "$(tr ',' '\n' <<<"$ports" | wc -l)" -ge 8 ] || fail "client: $ports"
echo PASS
