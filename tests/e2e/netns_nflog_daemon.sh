#!/usr/bin/env bash
# Issue 15 end to end: knockdaemon with its other sources, through real firewalls, in namespaces
# made here (netns.bash); knockclient knocks from the client namespace.
#   1. runmode = nflog: the firewall logs the span's SYNs to NFLOG group 7 and drops them; a
#      knock opens port 22 for the client only, then a delayed action closes it. Once with
#      iptables (-j NFLOG --nflog-group 7), once with nftables (`log group 7`, the open and close
#      adding and removing a set element). The daemon holds a netlink socket and no packet
#      socket (/proc/PID/fd against /proc/PID/net/{netlink,packet}), follows no log file (no
#      descriptor beyond stdin/stdout/stderr is a file), and says it watches the group.
#   2. runmode = network with `interface = S1 S2`: two pcap captures (two packet sockets), one
#      per veth link; a knock from the client (on S1) opens port 22 for the client, a knock
#      from the other host (on S2) for the other host, each knock seen once.
#   3. A spoofed SYN flood (synflood, bounded in count and time, only to the server's own
#      address in its namespace) through NFLOG (raw PREROUTING, before reverse-path filtering)
#      while the client knocks twice: each knock opens port 22 (one resend allowed, as in
#      netns_flood.sh), the summaries count the flood, and the peak RSS (VmHWM) stays under
#      rss_bound_kib (not checked in a sanitizer build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?BIN_DIR must name the build directory}" && pwd)
E2E_ID=pknf$$
source "$here/netns.bash"

GROUP=7
CLOSE_AFTER=2
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
netns_setup
start_service 22
knock_conf "$KEY" >"$E2E_TMP/knockclient.conf"
chmod 600 "$E2E_TMP/knockclient.conf"

# write_conf SOURCE-LINES OPEN CLOSE: the daemon's configuration.
write_conf() {
  cat >"$E2E_TMP/knockdaemon.conf" <<CONF
$1
$(knock_conf "$KEY")
summaryinterval = 1
<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_open
  </action>
  <action close>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
  </action>
</actions>
<template fw_open>
  system = "$2"
</template>
<template fw_close>
  system = "$3"
</template>
CONF
  chmod 600 "$E2E_TMP/knockdaemon.conf"
  "$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >"$E2E_TMP/check.out" 2>&1 ||
    fail "config check failed: $(cat "$E2E_TMP/check.out")"
}
IPT_OPEN='/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT'
IPT_CLOSE='/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT'
NFT_OPEN='/usr/sbin/nft add element inet pknf allowed { IP . PORT }'
NFT_CLOSE='/usr/sbin/nft delete element inet pknf allowed { IP . PORT }'

start_daemon() {  # start_daemon NAME: sets LOG and DAEMON_PID
  LOG=$E2E_TMP/daemon-$1.log
  bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
  DAEMON_PID=${E2E_PIDS[-1]}
  wait_for 10 "daemon ($1) ready" grep -q "watching" "$LOG"
  sleep 0.2
}
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local status=0; wait "$DAEMON_PID" || status=$?
  [ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
}
# knock NS DEST FLAG: knockclient's knock for port 22.
knock() {
  in_ns "$1" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote "$2" -port 22 -flag0 "$3" >>"$E2E_TMP/knockclient.out" 2>&1 ||
    fail "knockclient: $(tail -3 "$E2E_TMP/knockclient.out")"
}
# door NAME NS DEST OTHER-NS OTHER-DEST FLAG: closed before; the knock from NS opens port 22 for
# NS only; closed again after the delay.
door() {
  local name=$1 ns=$2 dest=$3 ons=$4 odest=$5 flag=$6
  cannot_connect "$ns" "$dest" 22 || fail "$name: port 22 open before the knock"
  knock "$ns" "$dest" "$flag"
  wait_for 5 "$name: the knock opens port 22" can_connect "$ns" "$dest" 22
  cannot_connect "$ons" "$odest" 22 || fail "$name: port 22 opened for the other host as well"
  grep -q "FLAG0=$flag" "$LOG" || fail "$name: knock not logged: $(grep 'knock from' "$LOG")"
  wait_for $((CLOSE_AFTER + 10)) "$name: port 22 closed again" cannot_connect "$ns" "$dest" 22
}
# files_open PID: the descriptors beyond 0-2 that are files or directories (a followed log file
# would be one); pipes, sockets and anonymous inodes are not, nor files this script inherited
# and so passed on (ctest's own log, for one).
files_open() {
  local fd link
  local -A ours=()
  for fd in /proc/$$/fd/*; do link=$(readlink "$fd" 2>/dev/null) && ours[${fd##*/}]=$link; done
  for fd in /proc/"$1"/fd/*; do
    [ "${fd##*/}" -gt 2 ] || continue
    link=$(readlink "$fd" 2>/dev/null) || continue
    [ "${ours[${fd##*/}]:-}" != "$link" ] || continue
    [[ $link == /* && $link != /dev/null ]] && echo "${fd##*/} -> $link"
  done
  return 0
}
# nflog_checks NAME: the running daemon watches NFLOG and nothing else.
nflog_checks() {
  local name=$1 kinds files
  grep -q "watching NFLOG group $GROUP for knocks" "$LOG" || fail "$name: $(grep watching "$LOG")"
  ! grep -q "watching interface\|watching log file" "$LOG" || fail "$name: $(grep watching "$LOG")"
  kinds=$(socket_kinds "$DAEMON_PID" | sort | tr '\n' ' ')
  [[ $kinds == *netlink* ]] || fail "$name: no netlink socket in /proc/$DAEMON_PID/fd ($kinds)"
  [[ $kinds != *packet* ]] || fail "$name: the daemon holds a packet socket ($kinds)"
  files=$(files_open "$DAEMON_PID")
  [ -z "$files" ] || fail "$name: the daemon holds files open: $files"
  say "-- $name: sockets: $kinds; no file open"
}

# ---- 1a. NFLOG through iptables
t0=$SECONDS
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 2000:2255 --syn -j NFLOG --nflog-group $GROUP --nflog-prefix "portknock "
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 2000:2255 -j DROP
write_conf "runmode = nflog
nflog_group = $GROUP" "$IPT_OPEN" "$IPT_CLOSE"
start_daemon nflog-iptables
nflog_checks "nflog/iptables"
door "nflog/iptables" "$NS_CLIENT" $SERVER_IP "$NS_OTHER" $SERVER_IP_OTHER 1
wait_for 5 "nflog/iptables: NFLOG summary line" grep -q "NFLOG group $GROUP: received" "$LOG"
nflog_checks "nflog/iptables after the knock"
stop_daemon
say "-- 1a. NFLOG (iptables): the knock opened and closed port 22 ($((SECONDS - t0)) s; $(grep -m1 -o "NFLOG group $GROUP: received.*" "$LOG"))"
in_ns "$NS_SERVER" iptables -F INPUT

# ---- 1b. NFLOG through nftables
t0=$SECONDS
in_ns "$NS_SERVER" nft -f - <<NFT
table inet pknf {
  set allowed { type ipv4_addr . inet_service; }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ip saddr . tcp dport @allowed accept
    tcp dport 22 drop
    tcp dport 2000-2255 tcp flags & (syn | ack) == syn log group $GROUP prefix "portknock "
    tcp dport 2000-2255 drop
  }
}
NFT
write_conf "runmode = nflog
nflog_group = $GROUP" "$NFT_OPEN" "$NFT_CLOSE"
start_daemon nflog-nft
nflog_checks "nflog/nft"
door "nflog/nft" "$NS_CLIENT" $SERVER_IP "$NS_OTHER" $SERVER_IP_OTHER 2
stop_daemon
say "-- 1b. NFLOG (nftables): the knock opened and closed port 22 ($((SECONDS - t0)) s)"
in_ns "$NS_SERVER" nft delete table inet pknf

# ---- 2. two interfaces, two pcap captures
t0=$SECONDS
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 2000:2255 -j DROP
write_conf "runmode = network
interface = $E2E_ID-s1 $E2E_ID-s2
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>" "$IPT_OPEN" "$IPT_CLOSE"
start_daemon two-interfaces
for i in s1 s2; do
  wait_for 5 "watching $E2E_ID-$i" grep -q "watching interface $E2E_ID-$i for knocks" "$LOG"
done
kinds=$(socket_kinds "$DAEMON_PID" | sort | tr '\n' ' ')
[[ $kinds == *"packet packet "* ]] || fail "two interfaces: want two packet sockets, have: $kinds"
door "interface $E2E_ID-s1" "$NS_CLIENT" $SERVER_IP "$NS_OTHER" $SERVER_IP_OTHER 3
door "interface $E2E_ID-s2" "$NS_OTHER" $SERVER_IP_OTHER "$NS_CLIENT" $SERVER_IP 4
[ "$(grep -c "knock from $CLIENT_IP: .*FLAG0=3" "$LOG")" -eq 1 ] || fail "the client's knock: $(grep 'knock from' "$LOG")"
[ "$(grep -c "knock from $OTHER_IP: .*FLAG0=4" "$LOG")" -eq 1 ] || fail "the other host's knock: $(grep 'knock from' "$LOG")"
[ "$(grep -c "knock from [^ ]*: IP=" "$LOG")" -eq 2 ] || fail "two interfaces: knocks logged: $(grep 'knock from' "$LOG")"
stop_daemon
say "-- 2. two interfaces ($kinds): a knock on each opened port 22 for its sender ($((SECONDS - t0)) s)"
in_ns "$NS_SERVER" iptables -F INPUT

# ---- 3. a spoofed SYN flood through NFLOG
t0=$SECONDS
FLOOD=300000
SANITIZED=0
RATE_ARGS=()
if nm -C "$BIN/knockdaemon" 2>/dev/null | grep -c __asan_init >/dev/null; then
  SANITIZED=1; FLOOD=100000; RATE_ARGS=(--rate 20000)
fi
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
# raw PREROUTING: logged and dropped before routing, so the spoofed sources (no route back)
# reach NFLOG, and the server answers none of them.
in_ns "$NS_SERVER" iptables -t raw -A PREROUTING -p tcp --dport 2000:2255 --syn -j NFLOG --nflog-group $GROUP --nflog-prefix "portknock "
in_ns "$NS_SERVER" iptables -t raw -A PREROUTING -p tcp --dport 2000:2255 -j DROP
write_conf "runmode = nflog
nflog_group = $GROUP" "$IPT_OPEN" "$IPT_CLOSE"
start_daemon nflog-flood
nflog_checks "nflog/flood"
bound=$(rss_bound_kib "$LOG")
FLOOD_OUT=$E2E_TMP/flood.out
bg_in_ns "$NS_OTHER" "$FLOOD_OUT" "$BIN/synflood" --dst $SERVER_IP_OTHER --ports 2000-2255 \
  --count $((FLOOD * 20)) --max-seconds 60 --progress 0.2 "${RATE_ARGS[@]}"
FLOOD_PID=${E2E_PIDS[-1]}
sent_so_far() { sed -n 's/^progress \([0-9]*\)$/\1/p' "$FLOOD_OUT" | tail -1; }
flood_past() { local n; n=$(sent_so_far); [ -n "$n" ] && [ "$n" -ge "$1" ]; }
wait_for 20 "the flood under way" flood_past 10000
wait_quiet() {  # like wait_for, but returns 1 on timeout
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}
RESENT=0
for k in 5 6; do
  kill -0 "$FLOOD_PID" 2>/dev/null || fail "the flood ended before knock $k: $(tail -2 "$FLOOD_OUT")"
  knock "$NS_CLIENT" $SERVER_IP $k
  if ! wait_quiet 6 can_connect "$NS_CLIENT" $SERVER_IP 22; then
    RESENT=$((RESENT + 1)); say "NOTE: knock $k lost under the flood (NFLOG drops?); sending it again"
    knock "$NS_CLIENT" $SERVER_IP $k
    wait_for 10 "knock $k (sent twice) opens port 22 during the flood" can_connect "$NS_CLIENT" $SERVER_IP 22
  fi
  grep -q "FLAG0=$k " "$LOG" || fail "knock $k not logged"
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again after knock $k" cannot_connect "$NS_CLIENT" $SERVER_IP 22
  say "-- knock $k opened and closed port 22 during the flood ($(sent_so_far) SYNs sent so far)"
done
[ "$RESENT" -le 1 ] || fail "$RESENT of 2 knocks were lost under the flood"
wait_for 60 "$FLOOD spoofed SYNs sent" flood_past "$FLOOD"
kill -TERM "$FLOOD_PID"
wait "$FLOOD_PID" || true
sent=$(sed -n 's/^sent \([0-9]*\) packets.*/\1/p' "$FLOOD_OUT")
[ -n "$sent" ] && [ "$sent" -ge "$FLOOD" ] || fail "the flood sent ${sent:-nothing}: $(tail -2 "$FLOOD_OUT")"
# The daemon saw the flood through NFLOG: the summaries count the messages received and the
# ports queued (the kernel may drop some: counted too).
nflog_received() { sed -n "s/.*NFLOG group $GROUP: received \([0-9]*\).*/\1/p" "$LOG" | tail -1; }
queued() { sed -n 's/.*s: \([0-9]*\) ports queued.*/\1/p' "$LOG" | awk '{s += $1} END {print s + 0}'; }
queued_enough() { [ "$(queued)" -ge $((FLOOD / 4)) ]; }
wait_for 20 "summary lines counting the flood" queued_enough
hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status")
if [ "$SANITIZED" = 0 ]; then
  [ "$hwm_kib" -le "$bound" ] || fail "peak RSS ${hwm_kib} KiB over the bound ${bound} KiB"
fi
nflog_checks "nflog/flood after the flood"
stop_daemon
say "-- 3. flood: $(sed -n 's/^sent //p' "$FLOOD_OUT"); daemon queued $(queued) ports; $(grep "NFLOG group $GROUP: received" "$LOG" | tail -1 | sed 's/^.*info: //'); peak RSS $hwm_kib KiB (bound $bound KiB$([ "$SANITIZED" = 0 ] || echo ', not checked under ASan')); $RESENT knocks resent ($((SECONDS - t0)) s)"
say "PASS: netns_nflog_daemon"
