#!/usr/bin/env bash
# IPv6 end to end, file mode, the original format (encrypt = yes, iv = yes, knock = IP,IP6,PORT,
# FLAG0,CHECKSUM), in namespaces on 2001:db8::/32 (netns_ipv6.bash). The kernel's firewall logs
# the span: ip6tables and iptables NFLOG -> ulogd2 (LOGEMU) -> the file the daemon follows
# (uselogformat = ulogd), as the IPv4 file-mode tests do.
#  1. The IPv6-only client knocks (TCP SYNs over IPv6): port 22 opens by ip6tables for its
#     address only (the other host, IPv6 too, cannot connect); it closes after the delay.
#  2. Mixed: the other host knocks over IPv4 into the same log: iptables opens for it.
#  3. The log really holds the kernel's IPv6 lines (SRC=2001:db8:1::2 ... PROTO=TCP).
E2E_ID=pkv6f$$
source "$(dirname "$0")/netns_ipv6.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
command -v ulogd >/dev/null || [ -x /usr/sbin/ulogd ] || fail "ulogd2 is not installed"

CLOSE_AFTER=3
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
netns_ipv6_setup
start_service6 22
for t in iptables ip6tables; do
  in_ns "$NS_SERVER" $t -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
  in_ns "$NS_SERVER" $t -A INPUT -p tcp --dport 22 -j DROP
  in_ns "$NS_SERVER" $t -I INPUT -p tcp --dport 2000:2255 -j NFLOG --nflog-group 5 --nflog-prefix portknock
done

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

knock_conf6() {
  printf '%s\n' 'knock    = IP,IP6,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' 'encrypt  = yes' \
    'cipher   = Blowfish' 'iv       = yes' "key      = $KEY"
}
mkdir -m 700 "$E2E_TMP/state"
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = file
logfile      = $E2E_TMP/firewall.log
fileinterval = 0.2
uselogformat = ulogd
<<include $SOURCE_DIR/etc/logformats.conf>>
$(knock_conf6)
statecache = $E2E_TMP/state/state.cache
usecache   = yes
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
knock_conf6 >"$E2E_TMP/knockclient.conf"
chmod 600 "$E2E_TMP"/*.conf
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >/dev/null || fail "config check failed"
LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "daemon ready" grep -q "watching" "$LOG"

knock() {  # knock NS REMOTE
  in_ns "$1" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote "$2" -port 22 -flag0 1
}

say "-- 1. the IPv6-only client's port knock, read from the firewall log, opens port 22 for it only"
cannot_connect "$NS_CLIENT" $SERVER6 22 || fail "port 22 open before the knock"
knock "$NS_CLIENT" $SERVER6 2>"$E2E_TMP/knock.err" || fail "knockclient failed: $(cat "$E2E_TMP/knock.err")"
wait_for 10 "port 22 open for the client over IPv6" can_connect "$NS_CLIENT" $SERVER6 22
cannot_connect "$NS_OTHER" $SERVER6_OTHER 22 || fail "port 22 open for the other host over IPv6"
cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22 || fail "port 22 open for the other host over IPv4"
grep -q "knock from $CLIENT6: IP=0.0.0.0 IP6=$CLIENT6 PORT=22 FLAG0=1" "$LOG" ||
  fail "the knock's fields were not logged: $(grep 'knock from' "$LOG")"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed again" cannot_connect "$NS_CLIENT" $SERVER6 22

say "-- 2. mixed: the other host knocks over IPv4 into the same log"
knock "$NS_OTHER" $SERVER_IP_OTHER 2>/dev/null || fail "the other host's knock failed"
wait_for 10 "port 22 open for the other host over IPv4" can_connect "$NS_OTHER" $SERVER_IP_OTHER 22
cannot_connect "$NS_OTHER" $SERVER6_OTHER 22 || fail "an IPv4 knock opened IPv6"
cannot_connect "$NS_CLIENT" $SERVER6 22 || fail "the other host's knock opened port 22 for the client"
grep -q "knock from $OTHER_IP: IP=$OTHER_IP IP6=:: PORT=22 FLAG0=1" "$LOG" ||
  fail "the IPv4 knock's fields were not logged: $(grep 'knock from' "$LOG")"
wait_for $((CLOSE_AFTER + 10)) "port 22 closed again for the other host" cannot_connect "$NS_OTHER" $SERVER_IP_OTHER 22

say "-- 3. the log holds the kernel's IPv6 lines"
grep -q "portknock IN=$E2E_ID-s1 OUT= .*SRC=$CLIENT6 DST=$SERVER6 .*PROTO=TCP SPT=[0-9]* DPT=2" "$E2E_TMP/firewall.log" ||
  fail "no IPv6 line in the firewall log: $(head -2 "$E2E_TMP/firewall.log")"

kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status on SIGTERM: $(tail -5 "$LOG")"
say "ok: IPv6 file mode (ip6tables NFLOG -> ulogd -> file), mixed with IPv4"
