#!/usr/bin/env bash
# IPv6 end to end, network mode (libpcap), the authenticated knock (proto = spa), in namespaces on
# 2001:db8::/32 (netns_ipv6.bash): an IPv6-only client "alice" knocks with knock =
# IP,IP6,PORT,FLAG0,CHECKSUM (knockclient fills IP6 from its route to the server), the daemon's
# one template holds system4 (iptables) and system6 (ip6tables).
#  1. A datagram knock over IPv6 opens port 22 for the client's IPv6 address only: the other
#     host (IPv6 too) cannot connect; the door closes after the delay.
#  2. The same as a port knock: the message spelled over the span as IPv6 SYNs (spaform = ports).
#  3. Mixed families on the one daemon: the other host ("bob") knocks over IPv4, its door opens
#     by iptables for its IPv4 address, while alice's IPv6 knock opens hers by ip6tables.
#  4. A knock asking for the observed address (-client observed) is refused (observedsource = no).
#  5. A copy of alice's knock sent first from the other host opens nothing (IP6 eq LOGIP).
E2E_ID=pkv6n$$
source "$(dirname "$0")/netns_ipv6.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)

CLOSE_AFTER=3
SPAPORT=62202
netns_ipv6_setup
start_service6 22
for t in iptables ip6tables; do
  in_ns "$NS_SERVER" $t -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
  in_ns "$NS_SERVER" $t -A INPUT -p tcp --dport 22 -j DROP
  in_ns "$NS_SERVER" $t -A INPUT -p udp --dport $SPAPORT -j DROP
done

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
"$BIN/knockclient" -keygen "$E2E_TMP/bob.key" 2>/dev/null
mkdir -m 700 "$E2E_TMP/state"
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
knock     = IP,IP6,PORT,FLAG0,CHECKSUM
portspan  = 2000-2255
proto     = spa
spaport   = $SPAPORT
statecache = $E2E_TMP/state/state.cache
usecache   = yes
summaryinterval = 1
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<client bob>
  keyfile = $E2E_TMP/bob.key
</client>
<actions>
  <action open>
    condition = PORT == 22 && (IP eq LOGIP || IP6 eq LOGIP)
    template  = fw_open
  </action>
  <action close>
    condition = PORT == 22 && (IP eq LOGIP || IP6 eq LOGIP)
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
  </action>
</actions>
<template fw_open>
  system4 = "/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
  system6 = "/sbin/ip6tables -I INPUT -p tcp -s IP6/128 --dport PORT --syn -j ACCEPT"
</template>
<template fw_close>
  system4 = "/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
  system6 = "/sbin/ip6tables -D INPUT -p tcp -s IP6/128 --dport PORT --syn -j ACCEPT"
</template>
CONF
client_conf() {  # client_conf NAME REMOTE [spaform]
  printf '%s\n' "remote   = $2" 'port     = 22' 'knock    = IP,IP6,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' \
    'proto    = spa' "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/$1.key" "spaform  = ${3:-udp}" 'delay    = 2'
}
client_conf alice $SERVER6 >"$E2E_TMP/alice.conf"
client_conf alice $SERVER6 ports >"$E2E_TMP/alice-ports.conf"
client_conf bob $SERVER_IP_OTHER >"$E2E_TMP/bob.conf"
chmod 600 "$E2E_TMP"/*.conf

"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >/dev/null || fail "config check failed"
LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "daemon ready" grep -q "watching interface" "$LOG"

knock() { local conf=$1 ns=$2; shift 2; in_ns "$ns" "$BIN/knockclient" -conf "$E2E_TMP/$conf.conf" "$@"; }
accepted() { grep -c "knock from $1 (client $2, " "$LOG" || true; }
# opens_then_closes NS ADDR WHAT: WHAT opens port 22 for NS (at ADDR), then it closes again.
opens_then_closes() {
  wait_for 5 "port 22 open after $3" can_connect "$1" "$2" 22
  cannot_connect "$NS_OTHER" $SERVER6_OTHER 22 || fail "$3 opened port 22 for the other host over IPv6"
  cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "$3 opened port 22 for the other host over IPv4"
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again after $3" cannot_connect "$1" "$2" 22
}

say "-- 1. an IPv6-only client's datagram knock opens port 22 for its IPv6 address only"
cannot_connect "$NS_CLIENT" $SERVER6 22 || fail "port 22 open before the knock"
knock alice "$NS_CLIENT" -test | head -1 >/dev/null || fail "knockclient -test failed"
knock alice "$NS_CLIENT" 2>"$E2E_TMP/knock.err" || fail "knockclient failed: $(cat "$E2E_TMP/knock.err")"
opens_then_closes "$NS_CLIENT" $SERVER6 "the IPv6 datagram knock"
grep -q "knock from $CLIENT6 (client alice, datagram): IP=0.0.0.0 IP6=$CLIENT6 PORT=22" "$LOG" ||
  fail "the daemon did not log the IPv6 knock's fields: $(grep 'knock from' "$LOG")"
grep -q "running action open, template fw_open: /sbin/ip6tables -I INPUT -p tcp -s $CLIENT6/128" "$LOG" ||
  fail "no ip6tables open: $(grep -i 'run' "$LOG" | head -3)"
! grep -q "/sbin/iptables .*$CLIENT6" "$LOG" || fail "the IPv4 template ran for an IPv6 knock"

say "-- 2. the same message as a port knock: IPv6 SYNs over the span"
knock alice-ports "$NS_CLIENT" 2>"$E2E_TMP/knock.err" || fail "knockclient (ports) failed: $(cat "$E2E_TMP/knock.err")"
opens_then_closes "$NS_CLIENT" $SERVER6 "the IPv6 port knock"
[ "$(accepted $CLIENT6 alice)" = 2 ] || fail "expected 2 accepted knocks from alice: $(grep 'knock from' "$LOG")"
grep -q "knock from $CLIENT6 (client alice, port knock)" "$LOG" || fail "the port form was not seen as such: $(grep 'knock from' "$LOG")"

say "-- 3. both families on one daemon: bob over IPv4, alice over IPv6"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "port 22 open for bob before its knock"
knock bob "$NS_OTHER" 2>/dev/null || fail "bob's knock failed"
knock alice "$NS_CLIENT" 2>/dev/null || fail "alice's knock failed"
wait_for 5 "port 22 open for bob over IPv4" can_connect "$NS_OTHER" $SERVER_IP_OTHER 22
wait_for 5 "port 22 open for alice over IPv6" can_connect "$NS_CLIENT" $SERVER6 22
cannot_connect "$NS_OTHER" $SERVER6_OTHER 22 || fail "bob's IPv4 knock opened port 22 for its IPv6 address"
grep -q "knock from $SERVER_IP_OTHER\|knock from $OTHER_IP (client bob, datagram): IP=$OTHER_IP IP6=:: PORT=22" "$LOG" ||
  fail "bob's IPv4 knock not logged as such: $(grep 'knock from' "$LOG")"
wait_for $((CLOSE_AFTER + 10)) "bob's door closed" cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22
wait_for $((CLOSE_AFTER + 10)) "alice's door closed" cannot_connect "$NS_CLIENT" $SERVER6 22

say "-- 4. a knock asking for its observed address is refused (observedsource = no)"
knock alice "$NS_CLIENT" -client observed 2>/dev/null || fail "knockclient -client observed failed"
wait_for 5 "the refusal" grep -q "knock from $CLIENT6 (client alice) refused, nothing run: the knock carries no address" "$LOG"
cannot_connect "$NS_CLIENT" $SERVER6 22 || fail "the observed-address knock opened port 22"

say "-- 5. alice's knock, sent first from the other host, opens nothing"
msg=$(knock alice "$NS_CLIENT" -test | head -1)
send_datagram "$NS_OTHER" $SERVER6_OTHER $SPAPORT "$msg"
wait_for 5 "the daemon saw the copy" grep -q "knock from $OTHER6 (client alice, datagram): IP=0.0.0.0 IP6=$CLIENT6" "$LOG"
cannot_connect "$NS_OTHER" $SERVER6_OTHER 22 || fail "the copy opened port 22 for the other host"
cannot_connect "$NS_CLIENT" $SERVER6 22 || fail "the copy opened port 22 for the client"

kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
say "ok: IPv6 network mode (datagram, port form, mixed families, observed refused, copy refused)"
