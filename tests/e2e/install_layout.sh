#!/usr/bin/env bash
# `cmake --install` lays out what a package needs: both programs, the three configs under
# /etc/portknock, both man pages, the systemd unit, the bash completions; the installed
# programs run, -man prints the installed page, and the installed daemon config passes -check
# once its key file exists.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
DESTDIR="$tmp/root" cmake --install "$BIN_DIR" >"$tmp/install.log" 2>&1 || fail "$(cat "$tmp/install.log")"
r="$tmp/root"
prefix=$(sed -n "s/^CMAKE_INSTALL_PREFIX:PATH=//p" "$BIN_DIR/CMakeCache.txt")
p=${prefix#/}
for f in $p/sbin/knockdaemon $p/bin/knockclient $p/sbin/knockctl $p/share/man/man1/knockctl.1 etc/portknock/knockdaemon.conf etc/portknock/knockclient.conf \
         etc/portknock/logformats.conf $p/share/man/man1/knockdaemon.1 $p/share/man/man1/knockclient.1 \
         $p/lib/systemd/system/knockdaemon.service $p/lib/tmpfiles.d/portknock.conf \
         $p/share/doc/portknock/PROTOCOL.md $p/share/doc/portknock/examples/knockdaemon.service.d/realtime.conf \
         $p/share/bash-completion/completions/knockdaemon $p/share/bash-completion/completions/knockclient \
         $p/share/bash-completion/completions/knockctl; do
  [ -e "$r/$f" ] || fail "not installed: /$f"
done
"$r/$p/sbin/knockdaemon" -man | cmp -s - "$r/$p/share/man/man1/knockdaemon.1" || fail "knockdaemon -man differs from its page"
"$r/$p/bin/knockclient" -man | cmp -s - "$r/$p/share/man/man1/knockclient.1" || fail "knockclient -man differs from its page"
grep -q "^ExecStartPre=$prefix/sbin/knockdaemon -check" "$r/$p/lib/systemd/system/knockdaemon.service" || fail "unit does not check the config"

# The shipped daemon config, pointed at key files and a state directory of the test's own: every
# key file it names (`keyfile = PATH`, in a <client NAME> block or not) made with
# knockclient -keygen, as README.Debian's first step does.
conf="$r/etc/portknock/knockdaemon.conf"
mkdir -p "$r/var/lib/portknock"
sed -i "s|/etc/portknock/|$r/etc/portknock/|g; s|/var/lib/portknock/|$r/var/lib/portknock/|" "$conf"
find "$r/etc/portknock" -type f -exec chmod 600 {} +
keys=$(sed -n 's/^[[:space:]]*keyfile[[:space:]]*=\{0,1\}[[:space:]]*"\{0,1\}\([^[:space:]#"]*\).*/\1/p' "$conf" | sort -u)
[ -n "$keys" ] || fail "the shipped config names no key file"
for key in $keys; do
  mkdir -p -m 0700 "$(dirname "$key")"
  "$r/$p/bin/knockclient" -keygen "$key" 2>/dev/null || fail "knockclient -keygen $key"
done
"$r/$p/sbin/knockdaemon" -check -conf "$conf" >/dev/null || fail "the shipped config does not pass -check"
# knockclient with the shipped client config and the first client's key builds its knock.
client_key=$(head -1 <<<"$keys")
sed -i "s|^\([[:space:]]*keyfile[[:space:]]*=[[:space:]]*\)/etc/portknock/.*|\1$client_key|" "$r/etc/portknock/knockclient.conf"
out=$("$r/$p/bin/knockclient" -conf "$r/etc/portknock/knockclient.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -test) ||
  fail "client: $out"
[ -n "$out" ] || fail "client: no knock printed"
echo PASS
