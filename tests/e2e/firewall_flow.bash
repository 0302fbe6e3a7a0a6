#!/usr/bin/env bash
# firewall_flow.bash BIN_DIR MODE FIREWALL [demo]
#   MODE: network | file       FIREWALL: iptables | nftables | nft-native
# nft-native: the daemon adds the set element itself through libnftables (template key nft),
# with a kernel-side timeout that closes the port: no process, no close action.
# The whole story through a real firewall, in namespaces made here: a TCP service behind a DROP
# rule; before the knock a connect fails; knockclient knocks from the client namespace; the
# daemon opens the port for the client's address only; a third namespace still cannot connect;
# after the configured delay the rule is gone. Then SIGHUP (reload keeps the pending close) and
# SIGTERM (clean stop, state saved). With "demo", every step is told in words.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "$1" && pwd); MODE=$2; FW=$3; DEMO=${4:-}
# DAEMON_USER=NAME: the daemon drops root for NAME once its capture is open (config key user).
DAEMON_USER=${DAEMON_USER:-}
source "$here/netns.bash"

step() { if [ -n "$DEMO" ]; then printf '\n\033[1m==> %s\033[0m\n' "$*"; else say "-- $*"; fi; }
tell() { [ -z "$DEMO" ] || printf '    %s\n' "$*"; }

CLOSE_AFTER=4   # seconds between open and close
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

netns_setup
step "Three hosts in network namespaces: server $SERVER_IP, client $CLIENT_IP, other $OTHER_IP"
start_service 22
tell "The server runs a TCP service on port 22."

case $FW in
  iptables)
    in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
    in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
    [ "$MODE" = file ] && in_ns "$NS_SERVER" iptables -I INPUT -p tcp --dport 2000:2255 \
      -j NFLOG --nflog-group 5 --nflog-prefix portknock
    OPEN='/sbin/iptables -I INPUT -p tcp -s IP/32 -d 0/0 --dport PORT --syn -j ACCEPT'
    CLOSE='/sbin/iptables -D INPUT -p tcp -s IP/32 -d 0/0 --dport PORT --syn -j ACCEPT'
    show_rules() { in_ns "$NS_SERVER" iptables -S INPUT; }
    ;;
  nftables|nft-native)
    in_ns "$NS_SERVER" nft -f - <<NFT
table inet pk {
  set allowed { type ipv4_addr . inet_service; flags timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ip saddr . tcp dport @allowed accept
    tcp dport 22 drop
  }
}
NFT
    [ "$MODE" = file ] && in_ns "$NS_SERVER" nft insert rule inet pk input tcp dport 2000-2255 log group 5 prefix portknock
    OPEN='/usr/sbin/nft add element inet pk allowed { IP . PORT }'
    CLOSE='/usr/sbin/nft delete element inet pk allowed { IP . PORT }'
    if [ "$FW" = nft-native ]; then
      OPEN="add element inet pk allowed { IP . PORT timeout ${CLOSE_AFTER}s }"
    fi
    show_rules() { in_ns "$NS_SERVER" nft list set inet pk allowed; }
    ;;
  *) fail "unknown firewall $FW" ;;
esac
tell "Its $FW firewall drops every connection to port 22:"
[ -z "$DEMO" ] || show_rules | sed 's/^/      /'

step "Before the knock, the client cannot connect to port 22"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock"
tell "connect to $SERVER_IP:22 from $CLIENT_IP: timed out (dropped)"

if [ "$MODE" = file ]; then
  cat >"$E2E_TMP/ulogd.conf" <<ULOG
[global]
logfile="$E2E_TMP/ulogd-self.log"
loglevel=5
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_inppkt_NFLOG.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_raw2packet_BASE.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IFINDEX.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_IP2STR.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_filter_PRINTPKT.so"
plugin="/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU
[log1]
group=5
[emu1]
file="$E2E_TMP/firewall.log"
sync=1
ULOG
  bg_in_ns "$NS_SERVER" "$E2E_TMP/ulogd.out" /usr/sbin/ulogd -c "$E2E_TMP/ulogd.conf"
  wait_for 5 "ulogd running" test -f "$E2E_TMP/firewall.log"
  tell "ulogd2 writes the firewall's NFLOG messages for ports 2000-2255 to $E2E_TMP/firewall.log"
fi

cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = $MODE
interface    = any
snapshotsize = 1500
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
logfile      = $E2E_TMP/firewall.log
fileinterval = 0.2
uselogformat = ulogd
<<include $SOURCE_DIR/etc/logformats.conf>>

$(knock_conf "$KEY")

statecache = $E2E_TMP/state/state.cache
usecache   = yes
summaryinterval = 1
${DAEMON_USER:+user = $DAEMON_USER}

<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_open
    template  = count
    use       = yes
  </action>
$( [ "$FW" = nft-native ] || cat <<CLOSE
  <action close>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
    use       = yes
  </action>
CLOSE
)
</actions>
<template fw_open>
  $( [ "$FW" = nft-native ] && echo nft || echo system ) = "$OPEN"
</template>
<template fw_close>
  system = "$CLOSE"
</template>
<template count>
  state = state(IP,visits,num)++
</template>
CONF
knock_conf "$KEY" >"$E2E_TMP/knockclient.conf"
chmod 600 "$E2E_TMP"/*.conf
mkdir -m 700 "$E2E_TMP/state"
if [ -n "$DAEMON_USER" ]; then
  # The dropped user reads the config on SIGHUP and writes the state cache.
  # Through its group: a config holding the key must not be readable by every user.
  chmod 755 "$E2E_TMP"; chmod 640 "$E2E_TMP/knockdaemon.conf"; chown "$DAEMON_USER" "$E2E_TMP/state"
  chgrp "$(id -gn "$DAEMON_USER")" "$E2E_TMP/knockdaemon.conf"
fi

step "Start knockdaemon on the server ($MODE mode)"
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" || fail "config check failed"
bg_in_ns "$NS_SERVER" "$E2E_TMP/daemon.log" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "daemon ready" grep -q "watching" "$E2E_TMP/daemon.log"
tell "$(grep -m1 watching "$E2E_TMP/daemon.log" | sed 's/^.*info: //')"

knock() {
  in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 "$1"
}
step "The client knocks: an encrypted knock (its IP, port 22, flag 1) spelled as SYNs to closed ports"
tell "ports: $(in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 1 -test)"
tell "(each knock looks different: the IV is random)"
knock 1

step "The daemon decodes it and opens port 22 for $CLIENT_IP"
wait_for 5 "port 22 open for the client" can_connect "$NS_CLIENT" $SERVER_IP 22
[ -z "$DEMO" ] || grep -E "knock from|run" "$E2E_TMP/daemon.log" | sed 's/^.*: \(knock\|run\)/\1/; s/^/    /' | head -5
tell "connect to $SERVER_IP:22 from $CLIENT_IP: connected"
[ -z "$DEMO" ] || show_rules | sed 's/^/      /'

step "Nobody else gets in: the other host still cannot connect"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "port 22 open for the other host"
tell "connect to $SERVER_IP_OTHER:22 from $OTHER_IP: timed out (dropped)"

step "After ${CLOSE_AFTER}s the port closes again ($([ "$FW" = nft-native ] && echo "the kernel expires the set element" || echo "a delayed action"))"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed again" cannot_connect "$NS_CLIENT" $SERVER_IP 22
tell "connect to $SERVER_IP:22 from $CLIENT_IP: timed out (dropped)"
[ -z "$DEMO" ] || show_rules | sed 's/^/      /'

step "A replay, from another host or from the client, opens nothing"
ports=$(in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 3 -test)
tell "the client's next knock: ports $ports"
send_ports "$NS_CLIENT" $SERVER_IP "$ports"
wait_for 5 "port 22 open after the client sent those ports" can_connect "$NS_CLIENT" $SERVER_IP 22
wait_for $((CLOSE_AFTER + 10)) "port 22 closed again" cannot_connect "$NS_CLIENT" $SERVER_IP 22
tell "the client sent them itself: port 22 opened for it, then closed"
# The same ciphertext after the IV again: refused before any condition (iv = yes keeps every
# accepted knock's ciphertext; a replay, or the IV-rewriting forgery, is refused as seen).
replays_counted() {  # replays_counted N: the summary counts at least N refused replays
  local n
  n=$(sed -n 's/.*port knocks refused as replays (a ciphertext seen before): \([0-9]*\).*/\1/p' \
    "$E2E_TMP/daemon.log" | tail -1)
  [ -n "$n" ] && [ "$n" -ge "$1" ]
}
send_ports "$NS_OTHER" $SERVER_IP_OTHER "$ports"
wait_for 10 "the daemon refused the replay from $OTHER_IP" replays_counted 1
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "the replay from $OTHER_IP opened port 22 for it"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "the replay from $OTHER_IP opened port 22 for the client"
tell "$OTHER_IP sent the same ports: refused as a replay; nothing opened"
send_ports "$NS_CLIENT" $SERVER_IP "$ports"
wait_for 10 "the daemon refused the replay from the client" replays_counted 2
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "the client's own replay opened port 22 again"
tell "$CLIENT_IP sent the same ports again: refused as a replay; nothing opened"

step "SIGHUP reloads the configuration and keeps a pending close"
knock 2
wait_for 5 "port 22 open after the second knock" can_connect "$NS_CLIENT" $SERVER_IP 22
kill -HUP "$DAEMON_PID"
wait_for 5 "reload logged" grep -q "reloaded" "$E2E_TMP/daemon.log"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed after the reload" cannot_connect "$NS_CLIENT" $SERVER_IP 22
tell "reloaded; the close still came on time"

step "SIGTERM stops the daemon cleanly with its state saved"
kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM; log: $(tail -5 "$E2E_TMP/daemon.log")"
grep -q "visits" "$E2E_TMP/state/state.cache" || fail "state cache lacks the visit counter"
tell "exit status 0; state cache: $E2E_TMP/state/state.cache"
if [ -n "$DEMO" ]; then
  printf '\nThe daemon said:\n'; sed 's/^/    /' "$E2E_TMP/daemon.log"
fi
say "PASS: $MODE mode with $FW"
