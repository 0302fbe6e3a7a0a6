#!/usr/bin/env bash
# review2: with usecache absent (its default, no), the replay identities live in memory only.
# An original-format knock with iv = yes carries no time, so after any restart (upgrade, reboot,
# crash) EVERY knock ever captured is accepted once more; SPA and fwknop messages within their
# window likewise. No warning says so. Expected: the second run refuses the same knock, or the
# daemon warns at start that replays are refused only until it restarts (usecache = no).
source "$(dirname "$0")/common.bash"
D="$BIN_DIR/knockdaemon"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
knock_conf review2-restart-key >"$tmp/client.conf"
cat "$tmp/client.conf" - >"$tmp/daemon.conf" <<CONF
runmode = network
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
</actions>
<template open>
  system = "/bin/true IP"
</template>
CONF
chmod 600 "$tmp"/*.conf
ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -flag0 1 -test)
"$BIN_DIR/pcapgen" "$tmp/knock.pcap" --knock "198.18.0.2@1795507260:0.01:$ports"
first=$("$D" -conf "$tmp/daemon.conf" -pcap "$tmp/knock.pcap" 2>&1 >/dev/null) || fail "first run: $first"
grep -q "action open" <<<"$first" || fail "the honest knock was not accepted: $first"
# The daemon restarts; an observer sends the captured knock again (a year later would do too).
second=$("$D" -conf "$tmp/daemon.conf" -pcap "$tmp/knock.pcap" 2>&1 >/dev/null) || fail "second run: $second"
if grep -q "action open" <<<"$second" && ! grep -qi "usecache" <<<"$first$second"; then
  fail "the same iv = yes knock was accepted again after a restart, with no warning about usecache = no"
fi
echo ok
