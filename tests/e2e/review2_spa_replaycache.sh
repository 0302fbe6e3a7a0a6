#!/usr/bin/env bash
# review2: `spareplaycache = N` is read and checked (spa::settings) but never reaches the rules
# engine (Daemon::load does not set EngineOptions::replay_capacity): the replay cache always has
# 65536 entries. The documented "full: refuse, fail closed" bound cannot be set, and with
# replaykeep = 30d an iv = yes deployment is refused wholesale after 65536 knocks in 30 days,
# with no setting to raise it. Here: spareplaycache = 16 and 20 distinct, valid SPA datagrams;
# at most 16 may be accepted.
source "$(dirname "$0")/common.bash"
D="$BIN_DIR/knockdaemon"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
T=1795507260
cat >"$tmp/daemon.conf" <<CONF
runmode        = network
knock          = IP,PORT,CHECKSUM
portspan       = 20000-20255
spareplaycache = 16
<client alice>
  key = $KEY
</client>
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
chmod 600 "$tmp/daemon.conf"
args=()
for i in $(seq 1 20); do
  hex=$("$BIN_DIR/knockclient" -test -proto spa -key "$KEY" -client 198.18.0.2 -port 22 -knock IP,PORT,CHECKSUM \
        -spatime "$T" 2>/dev/null | head -1)
  args+=(--datagram "198.18.0.2@$T.$((10 + i)):62202:$hex")
done
"$BIN_DIR/pcapgen" "$tmp/spa.pcap" "${args[@]}"
err=$("$D" -conf "$tmp/daemon.conf" -pcap "$tmp/spa.pcap" 2>&1 >/dev/null) || fail "daemon failed: $err"
opened=$(grep -c "knock from .*: action open$" <<<"$err" || true)
echo "accepted: $opened of 20 with spareplaycache = 16"
[ "$opened" -ge 1 ] || fail "no knock accepted at all: $err"
[ "$opened" -le 16 ] || fail "spareplaycache = 16 ignored: $opened distinct messages accepted (the cache holds 65536)"
echo ok
