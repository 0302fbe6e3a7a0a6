#!/usr/bin/env bash
# The authenticated single-packet knock (doc/PROTOCOL.md section 6) opening port 22 through the
# in-process nftables action (template key nft: a set element with a kernel timeout, no close
# action, no process), in network namespaces (netns.bash), from two sources of the daemon:
#  1. runmode = network: libpcap sees the client's datagram to spaport, which the firewall drops
#     (nothing listens on it).
#  2. listen = 0.0.0.0:PORT: the daemon's own UDP socket receives it (the firewall accepts the
#     port; libpcap watches lo only, so the socket alone can see the datagram).
# Each time: closed before the knock; the client connects after it, the other host does not; the
# kernel removes the element after the timeout. Over the socket, the datagram replayed from the
# other host and from the client opens nothing and is counted as replayed.
# The element goes through the netlink fast path (rules/nft_element.hpp), not libnftables: the
# daemon runs with -debug, which logs the way each nft command went.
# The iptables template, the port form and every refusal: netns_spa.sh.
E2E_ID=pkspa$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
started=$SECONDS

CLOSE_AFTER=3   # the set element's timeout, seconds
SPAPORT=62202
netns_setup
start_service 22
in_ns "$NS_SERVER" nft -f - <<NFT
table inet pkspa {
  set allowed { type ipv4_addr . inet_service; flags timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ip saddr . tcp dport @allowed accept
    tcp dport 22 drop
    udp dport $SPAPORT drop comment "spa-drop"
  }
}
NFT
"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
printf '%s\n' "remote   = $SERVER_IP" 'port     = 22' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'proto    = spa' \
  "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/alice.key" >"$E2E_TMP/alice.conf"

# daemon_conf SOURCE_LINES: the daemon's configuration, the sources given as config lines.
daemon_conf() {
  cat <<CONF
$1
knock     = IP,PORT,FLAG0,CHECKSUM
portspan  = 2000-2255
proto     = spa
spaport   = $SPAPORT
statecache = $E2E_TMP/state/state.cache
usecache   = yes
summaryinterval = 1
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<actions>
  <action open>
    condition = PORT == 22 && CLIENTNAME eq 'alice'
    template  = fw_open
    use       = yes
  </action>
</actions>
<template fw_open>
  nft = "add element inet pkspa allowed { IP . PORT timeout ${CLOSE_AFTER}s }"
</template>
CONF
}
mkdir -m 700 "$E2E_TMP/state"

DAEMON_PID=
LOG=
# start_daemon NAME READY: knockdaemon with $E2E_TMP/NAME.conf, logging to NAME.log, until READY is logged.
start_daemon() {
  chmod 600 "$E2E_TMP/$1.conf"
  "$BIN/knockdaemon" -check -conf "$E2E_TMP/$1.conf" >/dev/null || fail "$1.conf: config check failed"
  LOG=$E2E_TMP/$1.log
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -debug -conf "$E2E_TMP/$1.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "daemon $1 ready" grep -q "$2" "$LOG"
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0
  wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}
elements() { in_ns "$NS_SERVER" nft list set inet pkspa allowed; }

# knock_opens WHAT: alice's datagram opens port 22 for the client only; the kernel closes it.
knock_opens() {
  cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "$1: port 22 open before the knock"
  in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" 2>/dev/null
  wait_for 5 "$1: port 22 open for the client" can_connect "$NS_CLIENT" $SERVER_IP 22
  grep -q "knock from $CLIENT_IP (client alice, datagram): IP=$CLIENT_IP PORT=22" "$LOG" ||
    fail "$1: no accepted datagram knock logged: $(grep 'knock from' "$LOG")"
  grep -q "$CLIENT_IP . 22 timeout ${CLOSE_AFTER}s" <<<"$(elements)" || fail "$1: no element with a timeout: $(elements)"
  grep -q "nft: netlink fast path: add element inet pkspa allowed { $CLIENT_IP . 22 timeout" "$LOG" ||
    fail "$1: the element did not take the netlink fast path: $(grep 'nft' "$LOG")"
  cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "$1: the client's knock opened port 22 for the other host"
  wait_for $((CLOSE_AFTER + 10)) "$1: port 22 closed by the kernel's timeout" cannot_connect "$NS_CLIENT" $SERVER_IP 22
  grep -q "$CLIENT_IP" <<<"$(elements)" && fail "$1: the element outlived its timeout: $(elements)"
  return 0
}

say "-- 1. network mode: libpcap sees the dropped datagram; the nft element opens the door"
daemon_conf $'runmode   = network\ninterface = any' >"$E2E_TMP/pcap.conf"
start_daemon pcap "watching interface any"
knock_opens "network mode"
stop_daemon
grep -q "single-packet knocks: 1 accepted; refused: none" "$LOG" || fail "network mode: summary: $(grep single-packet "$LOG")"

say "-- 2. the daemon's UDP socket (listen = 0.0.0.0:$SPAPORT) receives it"
in_ns "$NS_SERVER" nft delete rule inet pkspa input handle \
  "$(in_ns "$NS_SERVER" nft -a list chain inet pkspa input | sed -n 's/.*"spa-drop" # handle \([0-9]*\).*/\1/p')"
grep -q "udp dport" <<<"$(in_ns "$NS_SERVER" nft list chain inet pkspa input)" && fail "the drop of port $SPAPORT is still there"
daemon_conf $'runmode   = network\ninterface = lo\nlisten    = 0.0.0.0:'$SPAPORT >"$E2E_TMP/socket.conf"
start_daemon socket "listening for single-packet knocks on UDP 0.0.0.0:$SPAPORT"
wait_for 5 "daemon socket on $SPAPORT" in_ns "$NS_SERVER" bash -c "ss -lun | grep -q ':$SPAPORT '"
# The client's datagram, captured on the way, for the replays.
bg_in_ns "$NS_SERVER" "$E2E_TMP/tcpdump.log" tcpdump -Z root -i "$E2E_ID-s1" -n -U -w "$E2E_TMP/alice.pcap" \
  "udp dst port $SPAPORT"
TCPDUMP_PID=${E2E_PIDS[-1]}
wait_for 5 "tcpdump listening" grep -q "listening on" "$E2E_TMP/tcpdump.log"
knock_opens "listen socket"
wait_for 5 "the client's datagram in the capture" has_udp_payload "$E2E_TMP/alice.pcap"
kill "$TCPDUMP_PID"
D=$(udp_payloads "$E2E_TMP/alice.pcap")
[ "$(wc -l <<<"$D")" -eq 1 ] && [ ${#D} -eq 122 ] || fail "expected one 61-byte datagram in the capture, got: $D"
in_ns "$NS_SERVER" bash -c "ss -lun | grep -q ':$SPAPORT '" || fail "the socket is gone"
send_datagram "$NS_OTHER" $SERVER_IP_OTHER $SPAPORT "$D"
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$D"
deadline=$((SECONDS + 2))
while [ $SECONDS -lt $deadline ]; do  # a replay accepted would add the element within this bound
  cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "a replay over the socket opened port 22 for the client"
  cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "a replay over the socket opened port 22 for the other host"
done
# SIGHUP with the same listen address keeps the socket (the review found a reload closed it):
# a new knock still opens the door after the reload.
kill -HUP "$DAEMON_PID"
wait_for 5 "reloaded" grep -q "configuration reloaded" "$LOG"
grep -q "cannot open a source" "$LOG" && fail "the reload reopened the socket: $(grep 'source' "$LOG")"
wait_for $((CLOSE_AFTER + 5)) "the door closed again" cannot_connect "$NS_CLIENT" $SERVER_IP 22
in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" 2>/dev/null
wait_for 5 "port 22 open after the reload" can_connect "$NS_CLIENT" $SERVER_IP 22
stop_daemon
grep -q "single-packet knocks: 2 accepted; refused: replayed 2" "$LOG" ||
  fail "listen socket: the replays were not counted: $(grep single-packet "$LOG")"
say "PASS: single-packet knocks (nft elements; libpcap and UDP socket) in $((SECONDS - started))s"
