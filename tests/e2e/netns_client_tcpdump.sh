#!/bin/bash
# knockclient on the wire: in a pair of network namespaces, tcpdump on the server side must see
# exactly the ports `knockclient -test` prints, one TCP SYN each, in order (and one UDP datagram
# each with -proto udp), and the client must leave no half-open socket behind to retransmit.
set -euo pipefail
BIN_DIR=${BIN_DIR:?BIN_DIR must point at the build directory}
K="$BIN_DIR/knockclient"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (network namespaces)"
[ -x "$K" ] || fail "no knockclient at $K"
command -v tcpdump >/dev/null || fail "tcpdump is not installed"

SRV=pkc-srv-$$ CLI=pkc-cli-$$ VS=pkcs$$ VC=pkcc$$
WORK=$(mktemp -d /tmp/netns_client.XXXXXX)
TCPDUMP_PID=
cleanup() {
  [ -n "$TCPDUMP_PID" ] && kill "$TCPDUMP_PID" 2>/dev/null && wait "$TCPDUMP_PID" 2>/dev/null || true
  ip netns del "$SRV" 2>/dev/null || true
  ip netns del "$CLI" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$SRV"
ip netns add "$CLI"
ip link add "$VS" type veth peer name "$VC"
ip link set "$VS" netns "$SRV"
ip link set "$VC" netns "$CLI"
ip -n "$SRV" addr add 198.18.0.1/24 dev "$VS"
ip -n "$CLI" addr add 198.18.0.2/24 dev "$VC"
ip -n "$SRV" link set "$VS" up
ip -n "$CLI" link set "$VC" up
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
# The server answers nothing (no RST), so a retransmitted SYN could not be masked by a reply.
ip netns exec "$SRV" iptables -A INPUT -j DROP 2>/dev/null || ip netns exec "$SRV" nft add table inet t \; \
  add chain inet t in '{ type filter hook input priority 0; policy drop; }'

printf 'password\n' > "$WORK/key"; chmod 600 "$WORK/key"  # a key file every user can read is refused
cat > "$WORK/knockclient.conf" <<CONF
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 2000-2127,3000-3127
encrypt  = yes
cipher   = Blowfish
iv       = no
keyfile  = $WORK/key
CONF

ip netns exec "$SRV" tcpdump -i "$VS" -n -U -w "$WORK/cap.pcap" 'dst host 198.18.0.1 and (tcp or udp)' \
  2> "$WORK/tcpdump.err" &
TCPDUMP_PID=$!
deadline=$((SECONDS + 20))
until grep -q "listening on" "$WORK/tcpdump.err"; do
  [ $SECONDS -lt $deadline ] || fail "tcpdump did not start: $(cat "$WORK/tcpdump.err")"
  kill -0 "$TCPDUMP_PID" 2>/dev/null || fail "tcpdump exited: $(cat "$WORK/tcpdump.err")"
  sleep 0.05
done

run_client() { ip netns exec "$CLI" "$K" -conf "$WORK/knockclient.conf" -remote 198.18.0.1 -port 22 -flag0 7 "$@"; }
expected=$(run_client -test)
[ -n "$expected" ] || fail "knockclient -test printed nothing"
n=$(echo "$expected" | tr ',' '\n' | wc -l)
# 8 bytes -> 16 encrypted bytes in 8-bit symbols = 16 ports.
[ "$n" = 16 ] || fail "expected 16 ports, -test printed $n: $expected"
[ "$(run_client -test -flag0 8)" != "$expected" ] || fail "a different FLAG0 gave the same knock"

run_client -quiet || fail "knockclient (tcp) exited $?"
half_open=$(ip netns exec "$CLI" ss -Htn state syn-sent | wc -l)
[ "$half_open" = 0 ] || fail "knockclient left $half_open half-open sockets that would retransmit"
run_client -quiet -proto udp -delay 1 || fail "knockclient (udp) exited $?"

# Wait (with a deadline) until tcpdump has written all 2n packets, then stop it.
deadline=$((SECONDS + 20))
while :; do
  got=$(tcpdump -n -r "$WORK/cap.pcap" 2>/dev/null | wc -l)
  [ "$got" -ge $((2 * n)) ] && break
  [ $SECONDS -lt $deadline ] || fail "tcpdump saw only $got of $((2 * n)) packets"
  sleep 0.05
done
kill -INT "$TCPDUMP_PID"; wait "$TCPDUMP_PID" 2>/dev/null || true; TCPDUMP_PID=
tcpdump -n -r "$WORK/cap.pcap" 2>/dev/null > "$WORK/cap.txt"

# "IP 198.18.0.2.41234 > 198.18.0.1.2071: Flags [S], ..." / "... > 198.18.0.1.2071: UDP, length 1"
tcp_ports=$(awk '$0 ~ /Flags/ { split($5, a, "."); sub(":", "", a[5]); print a[5] }' "$WORK/cap.txt" | paste -sd,)
tcp_other=$(grep Flags "$WORK/cap.txt" | grep -vc 'Flags \[S\],' || true)
udp_ports=$(awk '$0 ~ /UDP/ { split($5, a, "."); sub(":", "", a[5]); print a[5] }' "$WORK/cap.txt" | paste -sd,)
foreign=$(grep -E 'Flags|UDP' "$WORK/cap.txt" | grep -vc '^[0-9:.]* IP 198\.18\.0\.2\.' || true)
[ "$foreign" = 0 ] || fail "$foreign packets not from 198.18.0.2"
[ "$tcp_other" = 0 ] || fail "TCP packets other than a bare SYN were sent: $(grep Flags "$WORK/cap.txt" | grep -v 'Flags \[S\],' | head -3)"
[ "$tcp_ports" = "$expected" ] || fail "TCP SYNs seen: $tcp_ports; expected (one each, in order): $expected"
[ "$udp_ports" = "$expected" ] || fail "UDP datagrams seen: $udp_ports; expected: $expected"
echo "ok: $n ports, one SYN and one datagram each, in order: $expected"
