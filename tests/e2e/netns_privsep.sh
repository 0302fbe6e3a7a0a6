#!/usr/bin/env bash
# Privilege separation (doc/SECURITY.md, "Two processes") end to end, with user = nobody and
# root-only keys, config, log and state (#11 item 7, #13):
#  1. The worker (the process that reads packets) runs as nobody with no capability in any set,
#     NoNewPrivs 1 and a seccomp filter (Seccomp 2), and holds no descriptor of the state cache.
#  2. A knock opens; the worker is killed with SIGSYS (what its filter does on a forbidden call):
#     the monitor says so and starts a new one; the pending close still runs; a knock after the
#     restart opens again (the new worker has a fresh capture).
#  3. SIGHUP after the client's key file (root's, mode 0600) was replaced: the new key opens,
#     the old one no longer does.
#  4. SIGTERM with a close pending, then a restart: the close runs; the cache is root's.
#  5. File mode: a root-only log (0600) read by a worker that is nobody, through a rotation by
#     rename to a new root-only file (the monitor opens it and passes the descriptor).
E2E_ID=pkps$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
id nobody >/dev/null 2>&1 || fail "no user nobody"

CLOSE_AFTER=4
SPAPORT=62202
netns_setup
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport $SPAPORT -j DROP

umask 077
mkdir "$E2E_TMP/keys" "$E2E_TMP/state"
"$BIN/knockclient" -keygen "$E2E_TMP/keys/alice.key" 2>/dev/null
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
knock        = IP,PORT,FLAG0,CHECKSUM
portspan     = 2000-2255
spaport      = $SPAPORT
statecache   = $E2E_TMP/state/state.cache
usecache     = yes
summaryinterval = 1
user         = nobody
<client alice>
  keyfile = $E2E_TMP/keys/alice.key
</client>
<actions>
  <action open>
    condition = PORT == 22
    template  = fw_open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
    use       = yes
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
CONF
printf '%s\n' "remote   = $SERVER_IP" 'port     = 22' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' \
  'proto    = spa' "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/keys/alice.key" >"$E2E_TMP/alice.conf"
[ "$(stat -c %a "$E2E_TMP/keys/alice.key")" = 600 ] || fail "the key should be 0600"

DAEMON_PID=
LOG=
start_daemon() {
  LOG=$1
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "worker started ($LOG)" grep -q "worker [0-9]* started" "$LOG"
  wait_for 10 "daemon watching ($LOG)" grep -q "watching interface" "$LOG"
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0
  wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}
# worker_pid: the newest worker the log names (a child of the daemon).
worker_pid() { sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1; }
knock() { in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -quiet "$@"; }
opens_then_closes() {
  wait_for 5 "port 22 open after $1" can_connect "$NS_CLIENT" $SERVER_IP 22
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again after $1" cannot_connect "$NS_CLIENT" $SERVER_IP 22
}
status_of() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" | sed "s/[[:space:]]*$//"; }

say "-- 1. the worker holds nothing"
start_daemon "$E2E_TMP/daemon1.log"
W=$(worker_pid)
[ -n "$W" ] && [ -d "/proc/$W" ] || fail "no worker process: $(cat "$LOG")"
[ "$(awk '/^PPid:/ {print $2}' "/proc/$W/status")" = "$DAEMON_PID" ] || fail "worker $W is not the daemon's child"
nobody_uid=$(id -u nobody)
[ "$(status_of "$W" Uid)" = "$nobody_uid	$nobody_uid	$nobody_uid	$nobody_uid" ] || fail "worker uid: $(status_of "$W" Uid)"
[ "$(status_of "$W" Gid | cut -f1)" = "$(id -g nobody)" ] || fail "worker gid: $(status_of "$W" Gid)"
[ "$(status_of "$W" Groups)" = "$(id -g nobody)" ] || fail "worker groups: '$(status_of "$W" Groups)'"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
  [ "$(status_of "$W" $cap)" = 0000000000000000 ] || fail "worker $cap = $(status_of "$W" $cap)"
done
[ "$(status_of "$W" NoNewPrivs)" = 1 ] || fail "worker NoNewPrivs = $(status_of "$W" NoNewPrivs)"
[ "$(status_of "$W" Seccomp)" = 2 ] || fail "worker Seccomp = $(status_of "$W" Seccomp)"
# The monitor keeps root (it runs the firewall commands); the worker holds none of its files.
[ "$(status_of "$DAEMON_PID" Uid | cut -f1)" = 0 ] || fail "the monitor should stay root"
if ls -l "/proc/$W/fd" | grep -Eq "state|keys|\.conf|\.lock|journal"; then fail "the worker holds a file of the monitor: $(ls -l /proc/$W/fd)"; fi
ls -l "/proc/$DAEMON_PID/fd" | grep -q "state.cache" || fail "the monitor should hold the cache (is the check above blind?)"

say "-- 2. a worker killed by its filter is replaced; the pending close still runs"
knock
wait_for 5 "port 22 open" can_connect "$NS_CLIENT" $SERVER_IP 22
kill -SYS "$W"
wait_for 5 "the monitor saw the worker die" grep -q "worker $W killed by signal 31 .*seccomp filter forbids" "$LOG"
wait_for 5 "a new worker" bash -c "[ \$(grep -c 'worker [0-9]* started' '$LOG') -ge 2 ]"
W2=$(worker_pid)
[ "$W2" != "$W" ] || fail "same worker pid"
[ "$(status_of "$W2" Seccomp)" = 2 ] || fail "the new worker is not confined"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed after the worker died" cannot_connect "$NS_CLIENT" $SERVER_IP 22
knock
opens_then_closes "a knock seen by the new worker"

say "-- 3. SIGHUP re-reads the root-only key"
cp "$E2E_TMP/keys/alice.key" "$E2E_TMP/old.key"
rm "$E2E_TMP/keys/alice.key"
"$BIN/knockclient" -keygen "$E2E_TMP/keys/alice.key" 2>/dev/null
kill -HUP "$DAEMON_PID"
wait_for 10 "reloaded" grep -q "configuration reloaded" "$LOG"
grep -q "reload failed" "$LOG" && fail "reload failed: $(grep 'reload failed' "$LOG")"
wait_for 5 "a worker for the new configuration" bash -c "[ \$(grep -c 'worker [0-9]* started' '$LOG') -ge 3 ]"
knock -keyfile "$E2E_TMP/old.key"
sleep 1.5
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "the revoked key still opens"
knock
opens_then_closes "the new key"

say "-- 4. a close pending at SIGTERM runs after the restart"
knock
wait_for 5 "port 22 open" can_connect "$NS_CLIENT" $SERVER_IP 22
stop_daemon
[ "$(stat -c %u "$E2E_TMP/state/state.cache")" = 0 ] || fail "the cache should be root's"
can_connect "$NS_CLIENT" $SERVER_IP 22 || fail "the door closed at SIGTERM before its time (unexpected)"
start_daemon "$E2E_TMP/daemon2.log"
grep -q "owned by another user\|cannot" "$LOG" && fail "restart complained: $(cat "$LOG")"
wait_for $((CLOSE_AFTER + 10)) "the close that was pending at SIGTERM" cannot_connect "$NS_CLIENT" $SERVER_IP 22
stop_daemon

say "-- 5. file mode: a root-only log, rotated, read by a worker that is nobody"
mkdir -m 700 "$E2E_TMP/log"
knock_conf privsep-key >"$E2E_TMP/file-client.conf"
{ cat "$E2E_TMP/file-client.conf"; cat <<CONF
runmode      = file
logfile      = $E2E_TMP/log/firewall.log
fileinterval = 0.2
uselogformat = iptables
user         = nobody
<<include $SOURCE_DIR/etc/logformats.conf>>
<actions>
  <action mark>
    condition = PORT == 22
    template = mark
    use      = yes
  </action>
</actions>
<template mark>
  system = "touch $E2E_TMP/seen-FLAG0"
</template>
CONF
} >"$E2E_TMP/file-daemon.conf"
: >"$E2E_TMP/log/firewall.log"
chmod 600 "$E2E_TMP/log/firewall.log"
file_knock() {
  "$BIN/knockclient" -conf "$E2E_TMP/file-client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$1" -logfile "$E2E_TMP/log/firewall.log" -quiet
  chmod 600 "$E2E_TMP/log/firewall.log"
}
"$BIN/knockdaemon" -conf "$E2E_TMP/file-daemon.conf" >"$E2E_TMP/file.log" 2>&1 &
FILE_PID=$!
E2E_PIDS+=($FILE_PID)
LOG=$E2E_TMP/file.log
wait_for 10 "file-mode worker" grep -q "worker [0-9]* started" "$LOG"
W=$(worker_pid)
[ "$(status_of "$W" Uid | cut -f1)" = "$nobody_uid" ] || fail "file-mode worker is not nobody"
file_knock 1
wait_for 10 "knock 1 from a root-only log" test -e "$E2E_TMP/seen-1"
mv "$E2E_TMP/log/firewall.log" "$E2E_TMP/log/firewall.log.1"
: >"$E2E_TMP/log/firewall.log"
chmod 600 "$E2E_TMP/log/firewall.log"
file_knock 2
wait_for 10 "knock 2 after the rotation" test -e "$E2E_TMP/seen-2"
[ "$(worker_pid)" = "$W" ] || fail "the worker was restarted during the rotation: $(cat "$LOG")"
kill -TERM "$FILE_PID"
wait "$FILE_PID" || fail "file-mode daemon exit status $?"
say PASS
