#!/usr/bin/env bash
# realtime = N (doc/PERFORMANCE.md, "Real-time priority"): the worker runs under SCHED_FIFO at
# N, the monitor at N + 1, the commands they start at normal priority (SCHED_RESET_ON_FORK); a
# worker flooded past realtimecpu loses its real-time priority (so it cannot starve sshd on its
# core) and gets it back after a minute of calm; a reload to realtime = 0 gives both back normal
# scheduling. Policies are read from the kernel (chrt -p), not from the daemon's log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?}" && pwd)
source "$here/netns.bash"

netns_setup
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62202 -j DROP

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
daemon_conf() {  # REALTIME
  cat <<CONF
runmode      = network
interface    = any
knock        = IP,PORT,FLAG0
portspan     = 2000-2255
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
realtime     = $1
realtimecpu  = 5
<actions>
  <action open>
    condition = PORT == 22 && CLIENTNAME eq 'alice'
    template  = fw_open
  </action>
</actions>
<template fw_open>
  system = "chrt -p \$\$ >$E2E_TMP/cmd.sched.tmp; mv $E2E_TMP/cmd.sched.tmp $E2E_TMP/cmd.sched; /sbin/iptables -w -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
CONF
}
daemon_conf 10 >"$E2E_TMP/knockdaemon.conf"
cat >"$E2E_TMP/knockclient.conf" <<CONF
knock    = IP,PORT,FLAG0
portspan = 2000-2255
proto    = spa
keyfile  = $E2E_TMP/alice.key
CONF
chmod 600 "$E2E_TMP"/*.conf
knock() { in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 "$1"; }
policy() { chrt -p "$1" | sed -n 's/.*scheduling policy: \(SCHED_[A-Z]*\).*/\1/p'; }
priority() { chrt -p "$1" | sed -n 's/.*scheduling priority: \([0-9]*\).*/\1/p'; }
is_policy() { [ "$(policy "$1")" = "$2" ]; }

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "daemon ready" grep -q "watching" "$LOG"
wait_for 10 "worker started" grep -q "worker [0-9]* started" "$LOG"
WORKER=$(sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1)

# 1. Both processes under SCHED_FIFO, the worker at 10 (the monitor raises it just after its
# fork), the monitor at 11 (so that a spinning worker cannot keep it off a CPU).
[ "$(policy "$DAEMON_PID")" = SCHED_FIFO ] || fail "monitor: $(chrt -p "$DAEMON_PID"); log: $(cat "$LOG")"
[ "$(priority "$DAEMON_PID")" = 11 ] || fail "monitor priority: $(chrt -p "$DAEMON_PID")"
wait_for 5 "the worker under SCHED_FIFO" is_policy "$WORKER" SCHED_FIFO
[ "$(priority "$WORKER")" = 10 ] || fail "worker priority: $(chrt -p "$WORKER")"
say "-- monitor $DAEMON_PID SCHED_FIFO 11, worker $WORKER SCHED_FIFO 10"

# 2. A command the knock runs: normal priority.
knock 1
wait_for 10 "knock opens port 22" can_connect "$NS_CLIENT" $SERVER_IP 22
wait_for 5 "the command's scheduling recorded" test -s "$E2E_TMP/cmd.sched"
grep -q "SCHED_OTHER" "$E2E_TMP/cmd.sched" || fail "the command ran with: $(cat "$E2E_TMP/cmd.sched")"
in_ns "$NS_SERVER" iptables -D INPUT -p tcp -s $CLIENT_IP/32 --dport 22 --syn -j ACCEPT
say "-- the command ran at normal priority: $(cat "$E2E_TMP/cmd.sched" | tr '\n' ' ')"

# 3. A flood of forged datagrams (a full tag check each) past realtimecpu = 5 %: the worker
# loses SCHED_FIFO (the kernel says so), the monitor keeps it, and a knock still opens.
prefix=$("$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -client $CLIENT_IP -port 22 -test |
  head -1 | cut -c1-10)
bytes=$(( $("$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -client $CLIENT_IP -port 22 -test |
  head -1 | tr -d '\n' | wc -c) / 2 ))
FLOOD_OUT=$E2E_TMP/flood.out
bg_in_ns "$NS_OTHER" "$FLOOD_OUT" "$BIN/synflood" --dst $SERVER_IP_OTHER --ports 62202 --udp "$bytes" \
  --prefix "$prefix" --count 100000000 --max-seconds 60 --progress 0.5
FLOOD_PID=${E2E_PIDS[-1]}
wait_for 30 "the worker's real-time priority withdrawn under the flood" is_policy "$WORKER" SCHED_OTHER
grep -q "worker $WORKER and the monitor used [0-9]*% of a CPU in the last half second (realtimecpu = 5): real-time priority withdrawn" "$LOG" ||
  fail "no withdrawal line: $(tail -5 "$LOG")"
[ "$(policy "$DAEMON_PID")" = SCHED_FIFO ] || fail "the monitor lost SCHED_FIFO too: $(grep -i "real-time" "$LOG")"
rm -f "$E2E_TMP/cmd.sched"
knock 2
wait_for 10 "knock opens port 22 during the flood" can_connect "$NS_CLIENT" $SERVER_IP 22
in_ns "$NS_SERVER" iptables -D INPUT -p tcp -s $CLIENT_IP/32 --dport 22 --syn -j ACCEPT
kill -TERM "$FLOOD_PID"; wait "$FLOOD_PID" || true
say "-- flood: $(grep "worker $WORKER and the monitor used" "$LOG" | head -1 | sed 's/.*worker/worker/')"

# 4. A minute of calm: the worker gets SCHED_FIFO back.
wait_for 90 "the worker's real-time priority restored after the flood" is_policy "$WORKER" SCHED_FIFO
grep -q "worker $WORKER: real-time priority 10 restored" "$LOG" || fail "no restore line: $(tail -3 "$LOG")"
say "-- restored after the flood: $(grep "restored" "$LOG" | tail -1 | sed 's/.*worker/worker/')"

# 5. A reload to realtime = 0: the monitor and the new worker run normally.
daemon_conf 0 >"$E2E_TMP/knockdaemon.conf"
kill -HUP "$DAEMON_PID"
wait_for 10 "the monitor back to normal scheduling" is_policy "$DAEMON_PID" SCHED_OTHER
wait_for 10 "a new worker" test "$(grep -c "worker [0-9]* started" "$LOG")" -ge 2
NEW_WORKER=$(sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1)
[ "$(policy "$NEW_WORKER")" = SCHED_OTHER ] || fail "the new worker: $(chrt -p "$NEW_WORKER")"
grep -q "realtime = 0: normal scheduling" "$LOG" || fail "no line for the change: $(tail -5 "$LOG")"
kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status; log: $(tail -5 "$LOG")"
say "PASS: SCHED_FIFO for the monitor and the worker, normal for commands; withdrawn from the flooded worker and restored; off after a reload"
