#!/usr/bin/env bash
# Review 3: the worker's life cycle under privilege separation (doc/SECURITY.md, "Two processes").
# Every case runs; the failures are listed at the end.
#  1. A SIGHUP storm (10 reloads at once): a knock afterwards still opens.        (passes)
#  2. A knock that arrives while the worker has not read it yet (the worker stopped), then
#     SIGHUP: SECURITY.md says "A knock that arrives during the switch waits in the kernel's
#     queues". FAILS on 2e46783: the monitor replaces the pcap handle, and the packets in the
#     old ring are lost with it.
#  3. A reload to `user = NAME` where NAME does not exist: the running worker (or at least a
#     worker) must keep reading knocks, as for any other configuration that cannot work
#     ("a bad configuration never replaces a running one"). FAILS on 2e46783: the reload is
#     accepted, the worker stopped, and no new one can start (retried every 60 s): deaf.
#  4. The monitor killed with SIGKILL while its worker is stopped (or busy): the worker must
#     end (PR_SET_PDEATHSIG). FAILS on 2e46783: setresuid() cleared the parent-death signal;
#     the worker lives on as an orphan holding the keys and the capture socket.
#  5. Started with stdin, stdout and stderr closed: a worker runs, and holds no descriptor of
#     the monitor in 0-2 (it keeps 0-2 whatever they are, and may write to 1 and 2). FAILS on
#     2e46783: the runner's epoll, the signalfd, a source socket or the channel land there; with
#     the channel on 2 the monitor's log lines go to the worker, which takes them for the
#     monitor's end: a worker restarted forever, no knock seen.
E2E_ID=pkr3l$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
id nobody >/dev/null 2>&1 || fail "no user nobody"

SPAPORT=62202
netns_setup
umask 077
mkdir "$E2E_TMP/keys" "$E2E_TMP/events"
"$BIN/knockclient" -keygen "$E2E_TMP/keys/alice.key" 2>/dev/null
write_conf() {  # write_conf USER
  cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
knock        = IP,PORT,FLAG0,CHECKSUM
portspan     = 2000-2255
spaport      = $SPAPORT
user         = $1
<client alice>
  keyfile = $E2E_TMP/keys/alice.key
</client>
<actions>
  <action open>
    condition = PORT == 22
    template  = record
  </action>
</actions>
<template record>
  system = "touch $E2E_TMP/events/FLAG0"
</template>
CONF
}
write_conf nobody
printf '%s\n' "remote   = $SERVER_IP" 'port     = 22' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' \
  'proto    = spa' "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/keys/alice.key" >"$E2E_TMP/alice.conf"
knock() { in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -quiet -flag0 "$1"; }
workers() { grep -c "worker [0-9]* started" "$LOG" || true; }
worker_pid() { sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1; }
FAILURES=()
bug() { say "BUG: $*"; FAILURES+=("$*"); }
wait_quiet() {  # like wait_for, but returns 1 on timeout
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "worker started" grep -q "worker [0-9]* started" "$LOG"
knock 1
wait_for 10 "the first knock" test -e "$E2E_TMP/events/1"

say "-- 1. a SIGHUP storm"
before=$(workers)
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -HUP "$DAEMON_PID"; done
wait_for 20 "the reloads" bash -c "[ \$(grep -c 'configuration reloaded' '$LOG') -ge 1 ] && [ \$(grep -c 'worker [0-9]* started' '$LOG') -gt $before ]"
knock 2
wait_quiet 10 test -e "$E2E_TMP/events/2" || bug "1. no knock opens after a SIGHUP storm"

say "-- 2. a knock queued for a worker that has not read it, then SIGHUP"
# The old worker is slow (stopped, continued half a second into the reload): it must still read
# its capture dry and report before it ends. (A worker stopped for good loses what it had not
# read: doc/SECURITY.md.)
W=$(worker_pid)
kill -STOP "$W"
knock 3
before=$(workers)
(sleep 0.5; kill -CONT "$W" 2>/dev/null) &
kill -HUP "$DAEMON_PID"
wait_for 10 "a new worker after the reload" bash -c "[ \$(grep -c 'worker [0-9]* started' '$LOG') -gt $before ]"
wait_quiet 5 test -e "$E2E_TMP/events/3" || bug "2. a knock that arrived before the reload was lost with the old pcap handle"
knock 4
wait_for 10 "a knock after the reload" test -e "$E2E_TMP/events/4"

say "-- 3. a reload to a user that does not exist"
write_conf no-such-user-r3
before=$(workers)
kill -HUP "$DAEMON_PID"
wait_for 10 "the reload's verdict" grep -q "reload failed\|cannot start the worker" "$LOG"
knock 5
if ! wait_quiet 10 test -e "$E2E_TMP/events/5"; then
  bug "3. deaf after a reload to a missing user: $(grep -m1 'cannot start the worker\|reload failed' "$LOG" | cut -c1-160)"
fi
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || true
write_conf nobody

say "-- 4. the monitor killed with SIGKILL while its worker is stopped"
LOG=$E2E_TMP/daemon4.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "worker started (4)" grep -q "worker [0-9]* started" "$LOG"
W=$(worker_pid)
kill -STOP "$W"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
if ! wait_quiet 5 bash -c "! test -d /proc/$W || grep -q '^State:.*zombie' /proc/$W/status"; then
  bug "4. the worker $W outlived its monitor ($(grep '^State:' /proc/$W/status | tr -s '\t ' ' '))"
fi
kill -KILL "$W" 2>/dev/null || true

say "-- 5. started with stdin, stdout and stderr closed"
ip netns exec "$NS_SERVER" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf" <&- >&- 2>&- &
DAEMON_PID=$!
E2E_PIDS+=($DAEMON_PID)
confined_worker() {
  local w
  for w in $(pgrep -P "$DAEMON_PID"); do grep -q '^Seccomp:.*2' "/proc/$w/status" 2>/dev/null && echo "$w" && return 0; done
  return 1
}
if ! wait_quiet 10 confined_worker; then
  bug "5. with stdio closed no worker runs for 10 s (fds of the monitor: $(ls -l /proc/$DAEMON_PID/fd | awk 'NR>1 {printf "%s->%s ", $9, $11}'))"
else
  W=$(confined_worker)
  held=""
  for fd in 0 1 2; do
    target=$(readlink "/proc/$W/fd/$fd" 2>/dev/null || true)
    case "$target" in
      "" | /dev/null) ;;
      *) held+=" $fd->$target" ;;
    esac
  done
  [ -z "$held" ] || bug "5. with stdio closed the worker holds the monitor's descriptors as 0-2:$held"
fi
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || true

[ ${#FAILURES[@]} -eq 0 ] || fail "$(printf '%s; ' "${FAILURES[@]}")"
say PASS
