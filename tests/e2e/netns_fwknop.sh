#!/usr/bin/env bash
# Issue 16 end to end: Debian's real fwknop client (package fwknop-client) knocks on knockdaemon
# through a real iptables firewall, in namespaces made here (netns.bash).
#   1. runmode = network (libpcap; the BPF filter takes `udp dst port 62201`, the firewall
#      DROPs that port): `fwknop -A tcp/22 -a CLIENT -D SERVER --use-hmac ...` opens port 22 for
#      the client (connect fails before, works after), the rules see CLIENTNAME, USER, PROTO and
#      CLIENT_TIMEOUT (the stanza's fw_access_timeout); a delayed action closes it again. Then
#      each of these is refused, the door staying closed: the same datagram again (saved by the
#      client with --save-packet, resent byte for byte from the client and from another host), a
#      wrong HMAC key, a packet without HMAC (no --use-hmac), the client's clock 5 minutes slow
#      (faketime -5m). The summary line `fwknop packets: ...` names each reason with its count.
#   2. runmode = nflog with `listen = 0.0.0.0:62201` (the daemon's own UDP socket; no packet
#      socket): the client opens the door again, a resent datagram is a replay, and a client
#      5 minutes fast is refused as too new.
# The client runs with HOME in a temporary folder and --no-rc-file (as tests/oracle/fwknop_client.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?BIN_DIR must name the build directory}" && pwd)
E2E_ID=pkfw$$
source "$here/netns.bash"
command -v fwknop >/dev/null || fail "the fwknop client is missing (scripts/install-deps.sh: fwknop-client)"
command -v faketime >/dev/null || fail "faketime is missing (scripts/install-deps.sh)"

CLOSE_AFTER=3   # the stanza's fw_access_timeout, and the close action's delay
netns_setup
mkdir -m 700 "$E2E_TMP/home"
export HOME=$E2E_TMP/home

keys() {  # keys NAME: fwknop --key-gen; sets K and H
  fwknop --key-gen --no-rc-file -K "$E2E_TMP/$1.keys" >/dev/null
  K=$(awk '$1 == "KEY_BASE64:" {print $2}' "$E2E_TMP/$1.keys")
  H=$(awk '$1 == "HMAC_KEY_BASE64:" {print $2}' "$E2E_TMP/$1.keys")
  [ -n "$K" ] && [ -n "$H" ] || fail "fwknop --key-gen wrote no keys: $(cat "$E2E_TMP/$1.keys")"
}
keys alice; KA=$K; HA=$H
keys other; HO=$H
[ "$HA" != "$HO" ] || fail "fwknop --key-gen gave the same HMAC key twice"

n=0
# spa NS DEST [faketime SPEC --] FWKNOP-ARGS...: the real client sends one packet from NS to
# DEST:62201; the packet is also saved, its file named in $PKT.
spa() {
  local ns=$1 dest=$2 pre=(); shift 2
  if [ "$1" = faketime ]; then pre=(faketime -f "$2"); shift 3; fi
  n=$((n + 1)); PKT=$E2E_TMP/pkt$n
  in_ns "$ns" env HOME="$HOME" "${pre[@]}" fwknop -D "$dest" --no-rc-file --no-save-args -B "$PKT" "$@" \
    >"$E2E_TMP/client$n.out" 2>&1 || fail "fwknop $*: $(tail -3 "$E2E_TMP/client$n.out")"
  [ -s "$PKT" ] || fail "fwknop $* saved no packet"
}
alice=(-A tcp/22 -a $CLIENT_IP -U alice --use-hmac --key-base64-rijndael "$KA" --key-base64-hmac "$HA")
# resend NS DEST FILE: the saved datagram again, byte for byte (one write: one datagram).
resend() {
  in_ns "$1" bash -c 'printf %s "$(tr -d "\n" <"$3")" >/dev/udp/$2/62201' _ "$1" "$2" "$3"
}

# The summary's fwknop line: "fwknop packets: N accepted; refused: REASON N ... replayed N[; clock...]"
last_line() { grep 'fwknop packets:' "$LOG" | tail -1 || true; }
accepted() { last_line | sed -n 's/.*fwknop packets: \([0-9]*\) accepted.*/\1/p'; }
count_of() {  # count_of REASON: its count in the last summary line (0 when absent)
  local l rest
  l=$(last_line); l=${l#*; refused:}; l=" ${l%%; clock*} "
  if [[ $l == *" $1 "[0-9]* ]]; then rest=${l#*" $1 "}; echo "${rest%% *}"; else echo 0; fi
}
counts_are() {  # counts_are ACCEPTED REASON=N...: the last summary says these counts
  nudge
  [ "$(accepted)" = "$1" ] || return 1; shift
  local pair
  for pair in "$@"; do [ "$(count_of "${pair%=*}")" = "${pair##*=}" ] || return 1; done
}
# The periodic summary must carry the fwknop line whenever its counts changed. If it does not
# (a daemon bug: the line comes only with a tracker summary, and fwknop packets never reach the
# tracker), the test records the failure once and from then on sends one SYN a second into the
# span from the other host ("nudge") so that the rest can still be checked; it fails at the end.
BUGS=()
NUDGE=0
last_nudge=0
nudge() {
  [ "$NUDGE" = 1 ] && [ $SECONDS -gt $last_nudge ] || return 0
  last_nudge=$SECONDS
  in_ns "$NS_OTHER" timeout 0.3 bash -c "exec 3<>/dev/tcp/$SERVER_IP_OTHER/2000" 2>/dev/null || true
}
wait_quiet() {  # like wait_for, but returns 1 on timeout
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}
# periodic WHAT ACCEPTED REASON=N...: the summary (summaryinterval = 1) reports these within 4 s.
periodic() {
  local what=$1; shift
  if [ "$NUDGE" = 0 ] && ! wait_quiet 4 counts_are "$@"; then
    BUGS+=("$what: no periodic 'fwknop packets:' summary line within 4 s of the packet (summaryinterval = 1); last: '$(last_line)'")
    say "BUG: ${BUGS[-1]}"
    NUDGE=1
  fi
  wait_for 10 "$what: summary with $*" counts_are "$@"
}
HMAC='HMAC failed (forged, corrupted, another key, or no HMAC)'
TOOOLD='too old'
TOONEW='too new (sender'"'"'s clock ahead)'

# write_conf MODE EXTRA: the daemon's configuration (one <fwknop alice> stanza; the open action
# records the fields the rules see).
write_conf() {
  cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = $1
$2
interface    = any
snapshotsize = 1500
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
$(knock_conf "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')")
summaryinterval = 1
fwknopwindow    = 120
statecache      = $E2E_TMP/state/state.cache
usecache        = yes
<fwknop alice>
  key_base64        = $KA
  hmac_key_base64   = $HA
  source            = 198.18.0.0/15
  open_ports        = tcp/22
  require_user      = alice
  fw_access_timeout = $CLOSE_AFTER
</fwknop>
<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP && CLIENTNAME eq 'alice' && USER eq 'alice' && PROTO eq 'tcp'
    template  = fw_open
    template  = record
  </action>
  <action close>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
<template record>
  system = "echo CLIENTNAME USER PROTO CLIENT_TIMEOUT IP PORT LOGIP >>$E2E_TMP/events/opened"
</template>
CONF
  chmod 600 "$E2E_TMP/knockdaemon.conf"
  "$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >"$E2E_TMP/check.out" 2>&1 ||
    fail "config check failed: $(cat "$E2E_TMP/check.out")"
}

# start_daemon NAME: starts it in the server namespace; sets LOG and DAEMON_PID.
start_daemon() {
  LOG=$E2E_TMP/daemon-$1.log
  : >"$E2E_TMP/events/opened"
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "daemon ($1) ready" grep -q "watching\|listening" "$LOG"
  sleep 0.3  # the capture is open once it says so; let the first summary tick pass
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0; wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}

# refused WHAT ACCEPTED REASON=N...: the summary comes to these counts and port 22 stays closed,
# for the client and for the other host.
refused() {
  local what=$1; shift
  periodic "$what" "$@"
  cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "$what opened port 22 for the client"
  cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "$what opened port 22 for the other host"
  [ "$(wc -l <"$E2E_TMP/events/opened")" -eq "$OPENS" ] || fail "$what ran the open action: $(cat "$E2E_TMP/events/opened")"
  say "-- $what: refused, port 22 closed ($(last_line | sed 's/^.*fwknop packets/fwknop packets/'))"
}

mkdir -m 700 "$E2E_TMP/events" "$E2E_TMP/state"
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62201 -j DROP

# ---- 1. libpcap
started=$SECONDS
write_conf network ""
start_daemon network
grep -q "watching interface any for knocks (filter: .*udp dst port 62201" "$LOG" ||
  fail "the capture filter does not take fwknop's port: $(grep watching "$LOG")"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock"

spa "$NS_CLIENT" $SERVER_IP "${alice[@]}"; ACCEPTED_PKT=$PKT; FIRST_PKT=$PKT
wait_for 5 "fwknop's packet opens port 22 for the client" can_connect "$NS_CLIENT" $SERVER_IP 22
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "port 22 open for the other host"
OPENS=1
wait_for 5 "the open action recorded" test -s "$E2E_TMP/events/opened"
[ "$(cat "$E2E_TMP/events/opened")" = "alice alice tcp $CLOSE_AFTER $CLIENT_IP 22 $CLIENT_IP" ] ||
  fail "the rules saw CLIENTNAME USER PROTO CLIENT_TIMEOUT IP PORT LOGIP = $(cat "$E2E_TMP/events/opened")"
grep -q "knock from $CLIENT_IP (fwknop alice, user alice): IP=$CLIENT_IP PORT=22" "$LOG" ||
  fail "no knock line: $(grep 'knock from' "$LOG")"
periodic "the accepted packet" 1 "$HMAC=0" "replayed=0"
say "-- fwknop opened port 22 for $CLIENT_IP (rules saw: $(cat "$E2E_TMP/events/opened"))"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed again" cannot_connect "$NS_CLIENT" $SERVER_IP 22

resend "$NS_CLIENT" $SERVER_IP "$ACCEPTED_PKT"
refused "the same datagram again from the client" 1 "replayed=1" "$HMAC=0"
resend "$NS_OTHER" $SERVER_IP_OTHER "$ACCEPTED_PKT"
refused "the same datagram from the other host" 1 "replayed=2" "$HMAC=0"

spa "$NS_CLIENT" $SERVER_IP -A tcp/22 -a $CLIENT_IP -U alice --use-hmac --key-base64-rijndael "$KA" --key-base64-hmac "$HO"
refused "a wrong HMAC key" 1 "$HMAC=1" "replayed=2"

spa "$NS_CLIENT" $SERVER_IP -A tcp/22 -a $CLIENT_IP -U alice --key-base64-rijndael "$KA"
# Without an HMAC the last 43 characters are not one: refused as failing the HMAC, or earlier
# as not base64 (its split no longer canonical) or of the wrong size.
nohmac_refused() {
  nudge; [ "$(accepted)" = 1 ] && [ "$(count_of replayed)" = 2 ] &&
    [ $(($(count_of "$HMAC") + $(count_of "not base64") + $(count_of "wrong size"))) -eq 2 ]
}
wait_for 10 "a packet without HMAC counted as a refusal" nohmac_refused
refused "a packet without HMAC" 1 "replayed=2"

spa "$NS_CLIENT" $SERVER_IP faketime -5m -- "${alice[@]}"
refused "the client's clock 5 minutes slow" 1 "$TOOOLD=1" "replayed=2"
line=$(last_line)
[[ $line == *"clock offsets of refused senders from -3"[0-9][0-9]"s to +0s"* ]] ||
  [[ $line == *"clock offsets of refused senders from -29"[5-9]"s to +0s"* ]] ||
  fail "the summary does not give the clock offset (about -300 s): $line"
# Every reason named, each with its count, in one line.
for reason in "$TOOOLD 1" "replayed 2"; do
  [[ $line == *" $reason"* ]] || fail "the summary does not name '$reason': $line"
done
[[ $line == *"$HMAC "[12]* ]] || fail "the summary does not name the HMAC failures: $line"
[ "$(wc -l <"$E2E_TMP/events/opened")" -eq 1 ] || fail "opened more than once: $(cat "$E2E_TMP/events/opened")"
grep -qi "error" "$LOG" && fail "the daemon logged an error: $(grep -i error "$LOG")"
stop_daemon
say "-- libpcap: ok in $((SECONDS - started)) s; $line"

# udp_path NAME R: with the daemon configured and the firewall set: the client opens the door,
# the same datagram again is a replay, a client 5 minutes fast is too new (R replays counted before).
udp_path() {
  local name=$1 r=$2
  cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock ($name)"
  spa "$NS_CLIENT" $SERVER_IP "${alice[@]}"; ACCEPTED_PKT=$PKT
  wait_for 5 "fwknop's packet ($name) opens port 22 for the client" can_connect "$NS_CLIENT" $SERVER_IP 22
  OPENS=1
  periodic "the accepted packet ($name)" 1 "replayed=$r"
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again ($name)" cannot_connect "$NS_CLIENT" $SERVER_IP 22
  resend "$NS_CLIENT" $SERVER_IP "$ACCEPTED_PKT"
  refused "the same datagram again ($name)" 1 "replayed=$((r + 1))"
  spa "$NS_CLIENT" $SERVER_IP faketime +5m -- "${alice[@]}"
  refused "the client's clock 5 minutes fast ($name)" 1 "$TOONEW=1" "replayed=$((r + 1))"
}
# For the nudge (above) in runmode = nflog: SYNs into the span reach the tracker through NFLOG.
in_ns "$NS_SERVER" iptables -I INPUT -p tcp --dport 2000:2255 --syn -j NFLOG --nflog-group 47

# ---- 2. the daemon's own UDP socket (runmode = nflog; nothing logs fwknop's port to the group)
started=$SECONDS
in_ns "$NS_SERVER" iptables -D INPUT -p udp --dport 62201 -j DROP
write_conf nflog "nflog_group = 47
listen = 0.0.0.0:62201"
start_daemon listen
wait_for 5 "listening on UDP" grep -q "listening for single-packet knocks on UDP 0.0.0.0:62201" "$LOG"
kinds=$(socket_kinds "$DAEMON_PID" | sort | tr '\n' ' ')
[[ $kinds == *udp* && $kinds != *packet* ]] || fail "listen daemon sockets: $kinds (want a UDP socket, no packet socket)"
# The replay cache is kept in the state cache: part 1's packet, still within its window, is a
# replay after the restart too.
OPENS=0
resend "$NS_CLIENT" $SERVER_IP "$FIRST_PKT"
refused "part 1's accepted datagram after a restart (UDP socket)" 0 "replayed=1"
udp_path "UDP socket" 1
stop_daemon
say "-- UDP socket: ok in $((SECONDS - started)) s; sockets: $kinds; $(last_line | sed 's/^.*fwknop packets/fwknop packets/')"

# ---- 3. NFLOG: the firewall logs fwknop's datagram (its payload copied) and drops it
started=$SECONDS
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62201 -j NFLOG --nflog-group 47
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62201 -j DROP
write_conf nflog "nflog_group = 47"
start_daemon nflog
kinds=$(socket_kinds "$DAEMON_PID" | sort | tr '\n' ' ')
[[ $kinds == *netlink* && $kinds != *packet* && $kinds != *udp* ]] || fail "nflog daemon sockets: $kinds (want netlink only)"
udp_path "NFLOG" 0
stop_daemon
say "-- NFLOG: ok in $((SECONDS - started)) s; sockets: $kinds; $(last_line | sed 's/^.*fwknop packets/fwknop packets/')"
if [ ${#BUGS[@]} -gt 0 ]; then
  printf 'FAIL: %s\n' "${BUGS[@]}" >&2
  exit 1
fi
say "PASS: netns_fwknop"
