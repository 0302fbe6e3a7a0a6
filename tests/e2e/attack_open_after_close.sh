#!/usr/bin/env bash
# Review attack (failed before the fix): an OPEN still running when the daemon stops (stopwait
# passed) was not tracked anywhere. The daemon leaves the child running; the restarted daemon
# runs the overdue close at once, and the orphaned open finishes AFTER it: the firewall ends
# open with no close pending. (Within one process the one-child runner keeps open before close;
# across a restart nothing does.) A slow open is exactly the case where stopwait runs out:
# iptables -w waiting for the xtables lock, an nft ruleset under load, ssh to a remote firewall.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkopenafter.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

knock_conf attack-key >"$tmp/client.conf"
{ cat "$tmp/client.conf"; cat <<CONF
runmode      = file
logfile      = $tmp/firewall.log
fileinterval = 0.1
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
statecache   = $tmp/state.cache
usecache     = yes
stopwait     = 1s
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 1s
  </action>
</actions>
<template open>
  system = "echo start-open >> $tmp/record; sleep 4; echo open >> $tmp/record"
</template>
<template close>
  system = "echo close >> $tmp/record"
</template>
CONF
} >"$tmp/daemon.conf"
chmod 600 "$tmp"/*.conf
: >"$tmp/firewall.log"; : >"$tmp/record"

start() {
  : >"$tmp/daemon.log"
  "$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" >>"$tmp/daemon.out" 2>>"$tmp/daemon.log" &
  pid=$!
  wait_for 10 "daemon ready" grep -q "watching log file" "$tmp/daemon.log"
}
start
"$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
  -logfile "$tmp/firewall.log" -quiet
wait_for 10 "the open running" grep -qx "start-open" "$tmp/record"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
grep -qx open "$tmp/record" && fail "the open finished before the stop; the test proves nothing"
grep -q "killing them" "$tmp/daemon.log" || fail "no word about the commands killed at exit: $(cat "$tmp/daemon.log")"
start  # e.g. systemd Restart=, or an admin's restart
wait_for 10 "the close after the restart" grep -qx close "$tmp/record"
# The open, had it survived the stop, finishes within its own 4 s: give it that long, then look.
sleep 5
kill -TERM "$pid"; wait "$pid" || true; pid=
say "record: $(tr '\n' ' ' <"$tmp/record")"
[ "$(tail -n1 "$tmp/record")" = close ] ||
  fail "the open ran after its close: the port stays open with nothing pending ($(tr '\n' ' ' <"$tmp/record"))"
say "PASS: no open outlives its close across a restart"
