#!/usr/bin/env bash
# The NFLOG and UDP socket sources against the kernel, without pcap: the firewall in the server
# namespace logs the span to NFLOG group 5 (iptables -j NFLOG, then nftables `log group 5`, IPv4
# and IPv6) and tests/tools/source_watch, opened through capture::Source, prints the SYNs a
# client namespace sends. The watcher holds a netlink socket and no packet socket
# (/proc/PID/fd against /proc/PID/net/{netlink,packet}). Kernel drops are counted exactly;
# messages forged by a local user are ignored; a busy group is refused. Then UDP datagrams to
# the single-packet port through UdpSocketSource.
source "$(dirname "$0")/netns.bash"
BIN_DIR=${BIN_DIR:?BIN_DIR}
WATCH=$BIN_DIR/source_watch
[ -x "$WATCH" ] || fail "no $WATCH (build the source_watch target)"
netns_setup

SERVER_IP6=2001:db8:51::1
CLIENT_IP6=2001:db8:51::2
ip -n "$NS_SERVER" addr add $SERVER_IP6/64 dev "$E2E_ID-s1" nodad
ip -n "$NS_CLIENT" addr add $CLIENT_IP6/64 dev "$E2E_ID-c1" nodad

# knock_syns ADDR PORT...: one connection attempt per port from the client (nothing listens:
# the SYN is logged, a RST comes back).
knock_syns() {
  local addr=$1 port; shift
  for port in "$@"; do
    in_ns "$NS_CLIENT" timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null || true
  done
}

# watch_nflog NAME DST SRC: runs source_watch on group 5, sends three SYNs to DST, checks them.
watch_nflog() {
  local name=$1 dst=$2 src=$3 out=$E2E_TMP/$1.out
  bg_in_ns "$NS_SERVER" "$out" "$WATCH" --nflog 5 --count 3 --seconds 20
  local pid=${E2E_PIDS[-1]}
  wait_for 5 "$name: source_watch ready" grep -q '^ready' "$out"
  local kinds
  kinds=$(socket_kinds "$pid" | sort | tr '\n' ' ')
  say "$name: watcher sockets: $kinds"
  [[ $kinds == *netlink* ]] || fail "$name: no netlink socket in /proc/$pid/fd ($kinds)"
  [[ $kinds != *packet* ]] || fail "$name: the watcher holds a packet socket ($kinds)"
  local fd flags
  for fd in /proc/"$pid"/fd/*; do
    [[ $(readlink "$fd") == socket:* ]] || continue
    flags=$(awk '/^flags:/ { print $2 }' /proc/"$pid"/fdinfo/"${fd##*/}")
    (( 8#$flags & 8#2000000 )) || fail "$name: socket fd ${fd##*/} is not close-on-exec (flags $flags)"
  done
  knock_syns "$dst" 2001 2002 2254
  wait "$pid" || fail "$name: source_watch did not see 3 SYNs: $(cat "$out")"
  local port
  for port in 2001 2002 2254; do
    grep -q "^nflog group 5 range 1500|tcp|$src|[0-9]*|$dst|$port|0x02|0\$" "$out" ||
      fail "$name: no SYN $src -> $dst:$port in: $(cat "$out")"
  done
  grep -q '^stats NFLOG group 5: received [0-9]*, delivered 3, dropped 0' "$out" ||
    fail "$name: unexpected stats: $(grep stats "$out")"
  say "$name: ok ($(grep stats "$out"))"
}

# 1. iptables -j NFLOG (iptables-nft or legacy, whichever this host has)
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 2000:2255 -j NFLOG --nflog-group 5 --nflog-prefix "portknock "
watch_nflog iptables $SERVER_IP $CLIENT_IP
in_ns "$NS_SERVER" iptables -D INPUT -p tcp --dport 2000:2255 -j NFLOG --nflog-group 5 --nflog-prefix "portknock "

# 2. nftables `log group 5` in an inet table: IPv4 and IPv6
in_ns "$NS_SERVER" nft -f - <<'EOF'
table inet portknock_e2e {
  chain input {
    type filter hook input priority 0;
    tcp dport 2000-2255 counter log group 5 prefix "portknock "
  }
}
EOF
watch_nflog nft-ipv4 $SERVER_IP $CLIENT_IP
watch_nflog nft-ipv6 $SERVER_IP6 $CLIENT_IP6

# 3. Kernel drops are counted: a tiny receive buffer, a watcher that does not read while 3000
# SYNs arrive, then one more SYN (a gap shows only once a later message arrives). Every logged
# packet is either received or counted as dropped.
logged_count() {
  in_ns "$NS_SERVER" nft list chain inet portknock_e2e input | sed -n 's/.*counter packets \([0-9]*\) .*/\1/p'
}
out=$E2E_TMP/drops.out
before=$(logged_count)
bg_in_ns "$NS_SERVER" "$out" "$WATCH" --rcvbuf 4096 --nflog 5 --pause 3 --seconds 7
pid=${E2E_PIDS[-1]}
wait_for 5 "drops: watcher ready" grep -q '^ready' "$out"
in_ns "$NS_OTHER" "$BIN_DIR/synflood" --dst $SERVER_IP_OTHER --ports 2000-2255 --count 3000 >"$E2E_TMP/flood.out" 2>&1 ||
  fail "synflood: $(cat "$E2E_TMP/flood.out")"
sleep 4
knock_syns $SERVER_IP 2100
wait "$pid" || fail "drops: watcher failed: $(tail -3 "$out")"
logged=$(($(logged_count) - before))
stats=$(grep '^stats' "$out")
received=$(sed -n 's/.*received \([0-9]*\),.*/\1/p' <<<"$stats")
dropped=$(sed -n 's/.*dropped \([0-9]*\),.*/\1/p' <<<"$stats")
say "drops: logged $logged; $stats"
[ "$dropped" -gt 0 ] || fail "drops: nothing dropped with a 4 KiB buffer: $stats"
[ $((received + dropped)) -eq "$logged" ] || fail "drops: received $received + dropped $dropped != logged $logged"

# 4. Forged messages: the kernel lets only CAP_NET_ADMIN send to another netlink socket's port id
# (an unprivileged user gets EPERM), but such a sender is not the firewall either: a perfect NFLOG
# SYN message from a root process is ignored (counted as foreign).
out=$E2E_TMP/forged.out
bg_in_ns "$NS_SERVER" "$out" "$WATCH" --nflog 5 --count 1 --seconds 3
pid=${E2E_PIDS[-1]}
wait_for 5 "forged: watcher ready" grep -q '^ready' "$out"
inode=$(readlink /proc/"$pid"/fd/* | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' | head -1)
portid=$(awk -v i="$inode" 'NR > 1 && $NF == i { print $3 }' /proc/"$pid"/net/netlink)
[ -n "$portid" ] || fail "forged: no netlink port id for the watcher"
forge() {  # forge PORTID [unprivileged]
  in_ns "$NS_SERVER" ${2:+setpriv --reuid=65534 --regid=65534 --clear-groups} /usr/bin/python3 - "$1" <<'EOF'
import socket, struct, sys
def attr(t, v):
    a = struct.pack('=HH', 4 + len(v), t) + v
    return a + b'\0' * ((-len(a)) % 4)
tcp = struct.pack('!HHIIBBHHH', 40000, 2001, 1, 0, 0x50, 0x02, 65535, 0, 0)
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([198, 18, 1, 2]), bytes([198, 18, 1, 1])) + tcp
body = struct.pack('!BBH', 2, 0, 5) + attr(1, struct.pack('!HBB', 0x0800, 1, 0)) + attr(9, ip)
msg = struct.pack('=IHHII', 16 + len(body), 0x0400, 0, 0, 0) + body
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.bind((0, 0))
try:
    s.sendto(msg, (int(sys.argv[1]), 0))
except PermissionError:
    sys.exit(3)
EOF
}
rc=0; forge "$portid" unprivileged || rc=$?
[ $rc -eq 3 ] || fail "forged: an unprivileged process could send to the watcher's netlink port (rc $rc)"
forge "$portid" || fail "forged: root could not send to the watcher's netlink port"
if wait "$pid"; then fail "forged: the watcher took a forged message: $(cat "$out")"; fi
grep -q '^stats NFLOG group 5: received 0, .*foreign 1' "$out" || fail "forged: $(cat "$out")"
say "forged: ignored ($(grep stats "$out"))"

# 5. A busy group is an error that says so.
bg_in_ns "$NS_SERVER" "$E2E_TMP/holder.out" "$WATCH" --nflog 5 --seconds 10
wait_for 5 "holder ready" grep -q '^ready' "$E2E_TMP/holder.out"
if in_ns "$NS_SERVER" "$WATCH" --nflog 5 --seconds 1 >"$E2E_TMP/busy.out" 2>&1; then
  fail "a second watcher bound group 5"
fi
grep -q 'cannot bind NFLOG group 5' "$E2E_TMP/busy.out" || fail "busy group: $(cat "$E2E_TMP/busy.out")"
kill "${E2E_PIDS[-1]}" 2>/dev/null || true

# 6. The single-packet port on a plain UDP socket (IPv4 and IPv6 listeners), no firewall needed.
out=$E2E_TMP/udp.out
bg_in_ns "$NS_SERVER" "$out" "$WATCH" --listen 0.0.0.0:62202 --listen "[::]:62202" --count 2 --seconds 20
pid=${E2E_PIDS[-1]}
wait_for 5 "udp watcher ready" grep -q '^ready' "$out"
kinds=$(socket_kinds "$pid" | sort | tr '\n' ' ')
[[ $kinds == "udp udp " ]] || fail "udp watcher sockets: $kinds"
in_ns "$NS_CLIENT" bash -c "printf 'knock-v4' >/dev/udp/$SERVER_IP/62202"
in_ns "$NS_CLIENT" bash -c "printf 'knock-v6!' >/dev/udp/$SERVER_IP6/62202"
wait "$pid" || fail "udp: source_watch did not see 2 datagrams: $(cat "$out")"
grep -q "^udp 0.0.0.0:62202 max 1500|udp|$CLIENT_IP|[0-9]*|$SERVER_IP|62202|0x00|8\$" "$out" ||
  fail "udp: no IPv4 datagram in: $(cat "$out")"
grep -q "^udp \[::\]:62202 max 1500|udp|$CLIENT_IP6|[0-9]*|$SERVER_IP6|62202|0x00|9\$" "$out" ||
  fail "udp: no IPv6 datagram in: $(cat "$out")"
say "udp: ok"
say "PASS netns_nflog_source"
