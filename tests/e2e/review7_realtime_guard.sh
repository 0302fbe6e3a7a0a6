#!/usr/bin/env bash
# Review 7 (attacks on `realtime = N`, daemon/priority.hpp). Policies from the kernel (chrt -p).
#  1. The monitor's own guard withdraws its SCHED_FIFO (a local user hammering the control
#     socket, or knocks, make it busy): the worker must lose SCHED_FIFO too. A worker at FIFO
#     above a monitor at SCHED_OTHER keeps the monitor (its guard) off a CPU while it spins: on
#     one CPU nothing but the kernel's RT throttling (none with sched_rt_runtime_us = -1) lets
#     the monitor, or sshd, run again.
#  2. A worker withdrawn under a flood that ends (killed, crashed, broke the protocol, or a
#     compromised worker that simply exits) must not come back at SCHED_FIFO at once: the new
#     worker waits for the same calm minute.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?}" && pwd)
source "$here/netns.bash"

netns_setup
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62202 -j DROP
"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
SOCK=$E2E_TMP/run/ctl.sock
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode       = network
interface     = any
knock         = IP,PORT,FLAG0
portspan      = 2000-2255
controlsocket = $SOCK
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
realtime      = 10
realtimecpu   = 2
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
cat >"$E2E_TMP/knockclient.conf" <<CONF
knock    = IP,PORT,FLAG0
portspan = 2000-2255
proto    = spa
keyfile  = $E2E_TMP/alice.key
CONF
chmod 600 "$E2E_TMP"/*.conf
policy() { chrt -p "$1" 2>/dev/null | sed -n 's/.*scheduling policy: \(SCHED_[A-Z]*\).*/\1/p'; }
is_policy() { [ "$(policy "$1")" = "$2" ]; }
worker() { sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1; }

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "worker started" grep -q "worker [0-9]* started" "$LOG"
wait_for 10 "control socket" test -S "$SOCK"
WORKER=$(worker)
wait_for 5 "the monitor under SCHED_FIFO" is_policy "$DAEMON_PID" SCHED_FIFO
wait_for 5 "the worker under SCHED_FIFO" is_policy "$WORKER" SCHED_FIFO

# 1. Keep the monitor busy through its control socket until its guard withdraws it.
hammer() { local end=$((SECONDS + 40)); while [ $SECONDS -lt $end ]; do "$BIN/knockctl" -socket "$SOCK" status >/dev/null 2>&1 || true; done; }
HAMMERS=()
for _ in 1 2 3; do hammer & HAMMERS+=($!); done
wait_for 30 "the monitor's real-time priority withdrawn (busy)" is_policy "$DAEMON_PID" SCHED_OTHER
# Its guard's next half second at the latest, the worker follows.
wait_for 2 "the worker no longer above the monitor" is_policy "$WORKER" SCHED_OTHER
kill "${HAMMERS[@]}" 2>/dev/null || true; wait "${HAMMERS[@]}" 2>/dev/null || true
say "-- monitor withdrawn, worker too: $(grep -i "withdrawn" "$LOG" | head -2 | tr '\n' ' ')"

# 2. The worker, withdrawn, ends (SIGKILL stands for a crash or a compromised worker's exit):
# its successor starts at normal priority and stays there (calm has not lasted a minute).
kill -KILL "$WORKER"
new_worker() { [ "$(worker)" != "$WORKER" ]; }
wait_for 10 "a new worker" new_worker
NEW=$(worker)
end=$((SECONDS + 3))
while [ $SECONDS -lt $end ]; do
  p=$(policy "$NEW")
  [ "$p" != SCHED_FIFO ] || fail "the new worker $NEW got SCHED_FIFO back at once: $(grep -i "real-time\|worker" "$LOG" | tail -5)"
  sleep 0.05
done
kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status; log: $(tail -5 "$LOG")"
say "PASS: the worker never outranks a withdrawn monitor, and a new worker inherits the withdrawal"
