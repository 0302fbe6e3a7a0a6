#!/usr/bin/env bash
# The authenticated single-packet knock (SPA, doc/PROTOCOL.md section 6) end to end, in network
# namespaces (netns.bash): server 198.18.1.1/198.18.2.1, client "alice" 198.18.1.2, other host
# "bob" 198.18.2.2. knockdaemon in runmode = network (libpcap sees the datagram to 62202 that the
# firewall DROPs; nothing listens), proto = spa (the port form too), two <client> blocks, an
# iptables command template whose rule names CLIENTNAME, a close after CLOSE_AFTER seconds.
#  1. A datagram knock opens port 22 for the client only (before: closed; after: the client
#     connects, the other host does not; the door closes again after the delay). The same for the
#     port form (61 SYNs over the span) and for bob's key from the other host.
#  2. From the client and from the other host: the client's captured datagram replayed (tcpdump
#     -w in the server namespace), its port knock replayed (the same ports), a message with one
#     bit flipped, one sent with a clock 5 minutes behind, one under bob's key after bob's block
#     was removed and the daemon got SIGHUP. Nothing opens, and the summary names each reason
#     with its exact count. The untouched twin of the bit-flipped message then opens.
#  3. A restart between a knock and its replay: the replay is still refused (the replay cache
#     was saved); a fresh knock still opens.
#  4. Summaries while only datagrams arrive (summaryinterval = 1): the refusals must be logged
#     within a few seconds, not only when a port of the span is seen or at the stop.
# Assertions of daemon bugs (bug ...) do not stop the test; it fails at the end, naming them.
# The UDP socket source (listen =) and the in-process nft element: netns_spa_nft_listen.sh.
E2E_ID=pkspa$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
command -v tcpdump >/dev/null || fail "tcpdump is not installed"
started=$SECONDS

CLOSE_AFTER=3   # seconds between open and close
SPAPORT=62202
netns_setup
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport $SPAPORT -j DROP

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
"$BIN/knockclient" -keygen "$E2E_TMP/bob.key" 2>/dev/null
mkdir -m 700 "$E2E_TMP/state"

# daemon_conf CLIENTS...: the daemon's configuration with a <client> block for each name.
daemon_conf() {
  local name
  cat <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
knock     = IP,PORT,FLAG0,CHECKSUM
portspan  = 2000-2255
proto     = spa
spaport   = $SPAPORT
spawindow = 60
statecache = $E2E_TMP/state/state.cache
usecache   = yes
summaryinterval = 1
CONF
  for name in "$@"; do printf '<client %s>\n  keyfile = %s\n</client>\n' "$name" "$E2E_TMP/$name.key"; done
  # No "IP eq LOGIP": a replay from the other host that got through would open the door for the
  # client's address (the knock's IP field), which the client's connect would show.
  cat <<'CONF'
<actions>
  <action open>
    condition = PORT == 22
    template  = fw_open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22
    template  = fw_close
CONF
  cat <<CONF
    delay     = ${CLOSE_AFTER}s
    use       = yes
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -m comment --comment pkspa-CLIENTNAME -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -m comment --comment pkspa-CLIENTNAME -j ACCEPT"
</template>
CONF
}
# client_conf NAME REMOTE: knockclient's configuration for NAME's key.
client_conf() {
  printf '%s\n' "remote   = $2" 'port     = 22' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' \
    'proto    = spa' "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/$1.key"
}
daemon_conf alice bob >"$E2E_TMP/knockdaemon.conf"
client_conf alice $SERVER_IP >"$E2E_TMP/alice.conf"
client_conf bob $SERVER_IP_OTHER >"$E2E_TMP/bob.conf"
chmod 600 "$E2E_TMP"/*.conf

DAEMON_PID=
LOG=
# start_daemon LOG: start knockdaemon in the server namespace, logging to LOG; wait until it watches.
start_daemon() {
  LOG=$1
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "daemon ready ($LOG)" grep -q "watching interface" "$LOG"
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0
  wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}

# knock NAME NS [OPTIONS...]: NAME's knockclient sends its message from NS.
knock() { local name=$1 ns=$2; shift 2; in_ns "$ns" "$BIN/knockclient" -conf "$E2E_TMP/$name.conf" "$@"; }
# message NAME NS [OPTIONS...]: the hex message (first line of -test) NAME's knockclient would send from NS.
message() { knock "$@" -test | head -1; }
# flip_bit HEX BYTE: HEX with the lowest bit of byte BYTE (from 0) inverted.
flip_bit() { python3 -c 'import sys; b = bytearray.fromhex(sys.argv[1]); b[int(sys.argv[2])] ^= 1; print(b.hex())' "$1" "$2"; }
# accepted_knocks NAME: how many "knock from ... (client NAME, ...)" lines the daemon logged.
accepted_knocks() { grep -c "knock from .* (client $1, " "$LOG" || true; }
last_summary() { grep "single-packet knocks:" "$LOG" | tail -1 | sed 's/^.*info: //'; }
# summary_within SECONDS EXPECTED: the last single-packet summary line becomes EXPECTED (a grep -E
# pattern) within SECONDS.
summary_within() {
  local deadline=$((SECONDS + $1))
  until last_summary | grep -Eq "$2"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}
wait_summary() {
  summary_within "$@" || fail "after $1 s the last single-packet summary is '$(last_summary)', expected /$2/"
}
# bug WHAT: a failed assertion that does not stop the test (a daemon bug, reported at the end).
BUGS=()
bug() { printf 'FAIL: %s\n' "$*" >&2; BUGS+=("$*"); }
# stays_closed SECONDS WHAT: port 22 stays closed for the client and the other host for SECONDS
# (a refused knock runs nothing; an accepted one would run the open within this bound).
stays_closed() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "$2 opened port 22 for the client"
    cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "$2 opened port 22 for the other host"
  done
}
# opens_then_closes NS ADDR WHAT: WHAT opens port 22 for NS (reached at ADDR), then it closes again.
opens_then_closes() {
  wait_for 5 "port 22 open after $3" can_connect "$1" "$2" 22
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again after $3" cannot_connect "$1" "$2" 22
}

say "-- 1. a datagram knock, captured by libpcap, opens port 22 for the client only"
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >/dev/null || fail "config check failed"
start_daemon "$E2E_TMP/daemon.log"
grep -q "udp dst port $SPAPORT" "$LOG" || fail "the capture filter lacks the SPA port: $(grep watching "$LOG")"
# proto = spa: the tracker waits for the 61 ports of the message (the port form below works), and
# the start line should say so.
grep -q "info: knock (authenticated message): 61 bytes in 61 ports of a 256-port span" "$LOG" ||
  bug "the start line gives the length of the original knock, not of the SPA port form: $(grep -m1 'info: knock:' "$LOG")"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "port 22 open for the other host before any knock"
# The client's datagram as it crossed the wire, for the replays below.
bg_in_ns "$NS_SERVER" "$E2E_TMP/tcpdump.log" tcpdump -Z root -i "$E2E_ID-s1" -n -U -w "$E2E_TMP/alice.pcap" \
  "udp dst port $SPAPORT"
TCPDUMP_PID=${E2E_PIDS[-1]}
wait_for 5 "tcpdump listening" grep -q "listening on" "$E2E_TMP/tcpdump.log"
knock alice "$NS_CLIENT"
wait_for 5 "port 22 open for the client after its datagram" can_connect "$NS_CLIENT" $SERVER_IP 22
grep -q "knock from $CLIENT_IP (client alice, datagram): IP=$CLIENT_IP PORT=22" "$LOG" ||
  fail "no accepted datagram knock logged: $(grep 'knock from' "$LOG")"
grep -q -- "-s $CLIENT_IP/32 .*pkspa-alice" <<<"$(in_ns "$NS_SERVER" iptables -S INPUT)" ||
  fail "the open rule does not name CLIENTNAME alice: $(in_ns "$NS_SERVER" iptables -S INPUT)"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "the client's knock opened port 22 for the other host"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed after ${CLOSE_AFTER}s" cannot_connect "$NS_CLIENT" $SERVER_IP 22
wait_for 5 "the client's datagram in the capture" has_udp_payload "$E2E_TMP/alice.pcap"
kill "$TCPDUMP_PID"
D1=$(udp_payloads "$E2E_TMP/alice.pcap")
[ "$(wc -l <<<"$D1")" -eq 1 ] && [ ${#D1} -eq 122 ] || fail "expected one 61-byte datagram in the capture, got: $D1"
[ "${D1:0:2}" = a1 ] || fail "the captured datagram is not an XChaCha20-Poly1305 SPA message: $D1"

say "-- the port form: the message spelled as 61 SYNs over the span opens it too"
P1=$(knock alice "$NS_CLIENT" -spaform ports -test | sed -n 2p)
[ "$(tr ',' '\n' <<<"$P1" | wc -l)" -eq 61 ] || fail "expected 61 ports, got $P1"
send_syns "$NS_CLIENT" $SERVER_IP "$P1"
opens_then_closes "$NS_CLIENT" $SERVER_IP "the client's port knock"
grep -q "knock from $CLIENT_IP (client alice, port knock)" "$LOG" || fail "no accepted port knock logged"

say "-- bob's key, from the other host, opens it for the other host"
knock bob "$NS_OTHER"
wait_for 5 "port 22 open for the other host after bob's knock" can_connect "$NS_OTHER" $SERVER_IP_OTHER 22
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "bob's knock opened port 22 for the client"
grep -q -- "-s $OTHER_IP/32 .*pkspa-bob" <<<"$(in_ns "$NS_SERVER" iptables -S INPUT)" ||
  fail "the open rule does not name CLIENTNAME bob: $(in_ns "$NS_SERVER" iptables -S INPUT)"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed for the other host" cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22
[ "$(accepted_knocks alice)" -eq 2 ] && [ "$(accepted_knocks bob)" -eq 1 ] ||
  fail "expected 2 knocks of alice and 1 of bob: $(grep 'knock from' "$LOG")"

say "-- 2. bob is revoked: his block removed, SIGHUP"
daemon_conf alice >"$E2E_TMP/knockdaemon.conf"
kill -HUP "$DAEMON_PID"
wait_for 5 "reload logged" grep -q "configuration reloaded" "$LOG"

say "-- replays, a flipped bit, a clock 5 minutes behind, the revoked key: from the client and the other host"
# Made before anything is sent: the untouched twin of the client's flipped message, kept for later.
M=$(message alice "$NS_CLIENT")
# Datagrams first, port knocks last: see part 4 (the summary waits for a port of the span).
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$D1"                       # replay
send_datagram "$NS_OTHER" $SERVER_IP_OTHER $SPAPORT "$D1"                  # replay
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$(flip_bit "$M" 40)"       # a ciphertext bit
send_datagram "$NS_OTHER" $SERVER_IP_OTHER $SPAPORT \
  "$(flip_bit "$(message alice "$NS_CLIENT" -client $OTHER_IP)" 12)"       # a bit of the send time
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$(message alice "$NS_CLIENT" -spatime $(($(date +%s) - 300)))"
send_datagram "$NS_OTHER" $SERVER_IP_OTHER $SPAPORT "$(message alice "$NS_CLIENT" -client $OTHER_IP -spatime $(($(date +%s) - 300)))"
knock bob "$NS_OTHER"                                                       # revoked, with knockclient
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$(message bob "$NS_OTHER" -client $CLIENT_IP)"  # revoked
send_syns "$NS_CLIENT" $SERVER_IP "$P1"                                    # replayed port knock
send_syns "$NS_OTHER" $SERVER_IP_OTHER "$P1"                               # replayed port knock
wait_summary 10 "^single-packet knocks: 3 accepted; refused: unknown key id 2 authentication failed 2 too old 2 replayed 4; clock offsets of refused senders from -30[0-9]s to \+0s "
stays_closed 2 "a refused message"
[ "$(accepted_knocks alice)" -eq 2 ] && [ "$(accepted_knocks bob)" -eq 1 ] ||
  fail "a refused message was logged as a knock: $(grep 'knock from' "$LOG")"
grep -q pkspa- <<<"$(in_ns "$NS_SERVER" iptables -S INPUT)" && fail "an open rule is left: $(in_ns "$NS_SERVER" iptables -S INPUT)"
say "   $(last_summary)"

say "-- the untouched twin of the flipped message opens (only the flip was refused)"
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$M"
opens_then_closes "$NS_CLIENT" $SERVER_IP "the unflipped message"
[ "$(accepted_knocks alice)" -eq 3 ] || fail "the unflipped message was not logged as a knock"

say "-- 3. a restart between a knock and its replay: still refused"
D2=$(message alice "$NS_CLIENT")
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$D2"
wait_for 5 "port 22 open after the knock before the restart" can_connect "$NS_CLIENT" $SERVER_IP 22
stop_daemon
grep -Eq "^R [0-9a-f]{32} " "$E2E_TMP/state/state.cache" || fail "no replay record in the state cache"
start_daemon "$E2E_TMP/daemon2.log"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed after the restart" cannot_connect "$NS_CLIENT" $SERVER_IP 22
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$D2"
send_datagram "$NS_OTHER" $SERVER_IP_OTHER $SPAPORT "$D2"
stays_closed 2 "the replay after the restart"
[ "$(accepted_knocks alice)" -eq 0 ] || fail "the replay after the restart was accepted: $(grep 'knock from' "$LOG")"
# The restarted daemon still accepts a fresh knock.
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$(message alice "$NS_CLIENT")"
opens_then_closes "$NS_CLIENT" $SERVER_IP "a fresh knock after the restart"
stop_daemon   # its last summary, at the stop, counts the replays
grep -q "single-packet knocks: 1 accepted; refused: replayed 2$" "$LOG" ||
  fail "the restarted daemon did not count the two replays: '$(last_summary)'"

say "-- 4. the periodic summary while only datagrams arrive"
# Only a datagram reaches this daemon (no port of the span): with summaryinterval = 1 its
# refusal must be reported within a few seconds, not only at the stop.
start_daemon "$E2E_TMP/daemon3.log"
send_datagram "$NS_CLIENT" $SERVER_IP $SPAPORT "$(flip_bit "$(message alice "$NS_CLIENT")" 40)"
summary_within 5 "^single-packet knocks: 0 accepted; refused: authentication failed 1$" ||
  bug "no single-packet summary 5 s after a refused datagram (summaryinterval = 1); last: '$(last_summary)'"
stop_daemon
grep -q "single-packet knocks: 0 accepted; refused: authentication failed 1$" "$LOG" ||
  fail "the refused datagram was not counted, even at the stop: '$(last_summary)'"
[ ${#BUGS[@]} -eq 0 ] || fail "${#BUGS[@]} failed assertion(s) above, the first: ${BUGS[0]}"
say "PASS: single-packet knocks (iptables, network mode) in $((SECONDS - started))s"
