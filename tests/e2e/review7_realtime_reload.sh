#!/usr/bin/env bash
# Review 7 (attack on `realtime = N`): a reload whose new `realtime` cannot be applied must not
# leave the SCHED_FIFO of the old one without its guard. With privsep = no and user = nobody the
# daemon set SCHED_FIFO 11 as root, then dropped CAP_SYS_NICE; a reload to realtime = 20 fails
# (no privilege to raise) and switched the guard off while the process kept SCHED_FIFO 11: a
# flood then spins it at real-time priority with nothing to take it away (on one CPU, sshd
# starves). Lowering needs no privilege: the daemon must go back to normal scheduling.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?}" && pwd)
source "$here/netns.bash"

netns_setup
"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
daemon_conf() {  # REALTIME
  cat <<CONF
runmode      = network
interface    = any
knock        = IP,PORT,FLAG0
portspan     = 2000-2255
privsep      = no
user         = nobody
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
realtime     = $1
<actions>
  <action open>
    condition = PORT == 22
    template  = fw_open
  </action>
</actions>
<template fw_open>
  system = "/bin/true IP"
</template>
CONF
}
daemon_conf 10 >"$E2E_TMP/knockdaemon.conf"
# The dropped user reads the config (and the key) on SIGHUP, through its group.
chmod 755 "$E2E_TMP"; chmod 640 "$E2E_TMP/knockdaemon.conf" "$E2E_TMP/alice.key"
chgrp "$(id -gn nobody)" "$E2E_TMP/knockdaemon.conf" "$E2E_TMP/alice.key"
policy() { chrt -p "$1" 2>/dev/null | sed -n 's/.*scheduling policy: \(SCHED_[A-Z]*\).*/\1/p'; }

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "daemon ready" grep -q "watching" "$LOG"
grep -q "running as nobody" "$LOG" || fail "no drop to nobody: $(cat "$LOG")"
[ "$(policy "$DAEMON_PID")" = SCHED_FIFO ] || fail "not SCHED_FIFO at start: $(chrt -p "$DAEMON_PID"); $(cat "$LOG")"

daemon_conf 20 >"$E2E_TMP/knockdaemon.conf.new"
cat "$E2E_TMP/knockdaemon.conf.new" >"$E2E_TMP/knockdaemon.conf"
kill -HUP "$DAEMON_PID"
wait_for 10 "the reload" grep -q "configuration reloaded" "$LOG"
wait_for 10 "realtime = 20 refused" grep -q "realtime = 20: cannot use SCHED_FIFO" "$LOG"
p=$(policy "$DAEMON_PID")
[ "$p" = SCHED_OTHER ] || fail "after the failed change the daemon runs $p without its guard: $(chrt -p "$DAEMON_PID")"
kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status; log: $(tail -5 "$LOG")"
say "PASS: a realtime change that cannot be applied leaves normal scheduling, not an unguarded SCHED_FIFO"
