#!/usr/bin/env bash
# The in-process ipset action (template key ipset, libipset) for iptables firewalls, with the
# authenticated single-packet knock, in network namespaces (netns.bash), the daemon in its
# default two processes (monitor and worker). The server's iptables accepts the members of the
# set pk (hash:ip,port, `-m set --match-set pk src,dst`) before dropping ports 22, 2222, 2223.
#  1. A knock for 22 adds IP,tcp:22 with timeout 3: the client connects, the other host does
#     not; the kernel removes the element after its timeout (no close action).
#  2. A knock for 2222 adds an element with timeout 600 and a delayed action deletes it after
#     CLOSE_AFTER seconds: the door closes long before the kernel would close it.
#  3. A knock for 2223 adds to a set that does not exist: logged with libipset's message,
#     nothing opens.
#  4. A knock for 2222, then SIGTERM before its close is due: the close is saved as an `I`
#     record in the state cache, runs after the restart, and the door closes.
E2E_ID=pkips$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
command -v ipset >/dev/null || fail "ipset is not installed"
started=$SECONDS

CLOSE_AFTER=3   # seconds between the open of 2222 and its delayed del
SPAPORT=62202
netns_setup
for port in 22 2222 2223; do start_service $port; done
in_ns "$NS_SERVER" ipset create pk hash:ip,port timeout 0
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -m set --match-set pk src,dst -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp -m multiport --dports 22,2222,2223 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport $SPAPORT -j DROP

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
printf '%s\n' "remote   = $SERVER_IP" 'knock    = IP,PORT,FLAG0,CHECKSUM' 'proto    = spa' \
  "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/alice.key" >"$E2E_TMP/alice.conf"
mkdir -m 700 "$E2E_TMP/state"
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode    = network
interface  = any
knock      = IP,PORT,FLAG0,CHECKSUM
portspan   = 2000-2255
proto      = spa
spaport    = $SPAPORT
statecache = $E2E_TMP/state/state.cache
usecache   = yes
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<actions>
  <action expires>
    condition = PORT == 22 && IP eq LOGIP
    template  = add_short
  </action>
  <action open>
    condition = PORT == 2222 && IP eq LOGIP
    template  = add_long
  </action>
  <action close>
    condition = PORT == 2222 && IP eq LOGIP
    template  = del
    delay     = ${CLOSE_AFTER}s
  </action>
  <action missing>
    condition = PORT == 2223 && IP eq LOGIP
    template  = add_missing
  </action>
</actions>
<template add_short>
  ipset = "add pk IP,tcp:PORT timeout 3"
</template>
<template add_long>
  ipset = "add pk IP,tcp:PORT timeout 600"
</template>
<template del>
  ipset = "del pk IP,tcp:PORT"
</template>
<template add_missing>
  ipset = "add nosuchset IP,tcp:PORT timeout 30"
</template>
CONF
chmod 600 "$E2E_TMP"/*.conf
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >/dev/null || fail "config check failed"

DAEMON_PID=
LOG=
# start_daemon LOG: the daemon in the server namespace, logging to LOG, until it watches.
start_daemon() {
  LOG=$1
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "daemon ready ($LOG)" grep -q "watching interface" "$LOG"
  grep -q "privilege separation: packets and log lines are read by a confined worker" "$LOG" ||
    fail "the daemon does not run as monitor and worker: $(head -20 "$LOG")"
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0
  wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}
knock() { in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -port "$1" 2>/dev/null; }
in_set() { in_ns "$NS_SERVER" ipset test pk "$CLIENT_IP,tcp:$1" 2>/dev/null; }
not_in_set() { ! in_set "$@"; }

start_daemon "$E2E_TMP/daemon1.log"

say "-- 1. an element with a timeout opens 22 for the client only; the kernel removes it"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock"
knock 22
wait_for 5 "port 22 open for the client" can_connect "$NS_CLIENT" $SERVER_IP 22
in_set 22 || fail "no element for the client: $(in_ns "$NS_SERVER" ipset list pk)"
grep -q "'ipset add pk $CLIENT_IP,tcp:22 timeout 3' done" "$LOG" || fail "the add was not logged: $(grep ipset "$LOG")"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "the client's knock opened port 22 for the other host"
wait_for 15 "the kernel removed the element after its timeout" not_in_set 22
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 still open after the element expired"

say "-- 2. a delayed del closes 2222 long before the element's own timeout of 600 s"
knock 2222
wait_for 5 "port 2222 open for the client" can_connect "$NS_CLIENT" $SERVER_IP 2222
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 2222 || fail "the knock opened port 2222 for the other host"
wait_for $((CLOSE_AFTER + 10)) "the del removed the element" not_in_set 2222
grep -q "action close, template del (delayed): 'ipset del pk $CLIENT_IP,tcp:2222' done" "$LOG" ||
  fail "the del was not logged: $(grep ipset "$LOG")"
cannot_connect "$NS_CLIENT" $SERVER_IP 2222 || fail "port 2222 still open after the del"

say "-- 3. an add to a set that does not exist: libipset's message, nothing opens"
knock 2223
wait_for 5 "the failed add logged" grep -q \
  "'ipset add nosuchset $CLIENT_IP,tcp:2223 timeout 30' failed: The set with the given name does not exist" "$LOG"
not_in_set 2223 || fail "an element for 2223 in pk"
cannot_connect "$NS_CLIENT" $SERVER_IP 2223 || fail "port 2223 open after a failed add"

say "-- 4. a pending ipset close survives a restart"
knock 2222
wait_for 5 "port 2222 open again" can_connect "$NS_CLIENT" $SERVER_IP 2222
stop_daemon
grep -q "^I [0-9]* .*del%20pk%20$CLIENT_IP,tcp:2222" "$E2E_TMP/state/state.cache" ||
  fail "no I record for the pending del in the cache: $(cat "$E2E_TMP/state/state.cache")"
in_set 2222 || fail "the element went with the daemon"
start_daemon "$E2E_TMP/daemon2.log"
wait_for $((CLOSE_AFTER + 10)) "the close ran after the restart" not_in_set 2222
grep -q "'ipset del pk $CLIENT_IP,tcp:2222' done" "$LOG" || fail "the del after the restart was not logged: $(grep ipset "$LOG")"
cannot_connect "$NS_CLIENT" $SERVER_IP 2222 || fail "port 2222 still open after the restarted close"
stop_daemon
say "PASS: ipset elements through libipset (kernel timeout, delayed del, missing set, restart) in $((SECONDS - started))s"
