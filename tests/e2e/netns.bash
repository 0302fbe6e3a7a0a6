# Shared helpers for tests that build their own network namespaces. Source it; then call
# netns_setup. Everything it creates is removed on exit, even when a test fails.
# Addresses: 198.18.0.0/15 only.
#   server  198.18.1.1 (to client)  198.18.2.1 (to other)
#   client  198.18.1.2
#   other   198.18.2.2
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

E2E_ID=${E2E_ID:-pk$$}
NS_SERVER=$E2E_ID-srv
NS_CLIENT=$E2E_ID-cli
NS_OTHER=$E2E_ID-oth
SERVER_IP=198.18.1.1
SERVER_IP_OTHER=198.18.2.1
CLIENT_IP=198.18.1.2
OTHER_IP=198.18.2.2
E2E_TMP=$(mktemp -d /tmp/portknock-e2e.XXXXXX)
E2E_PIDS=()


netns_cleanup() {
  local pid
  for pid in "${E2E_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${E2E_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$NS_SERVER" "$NS_CLIENT" "$NS_OTHER"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ "${E2E_KEEP_TMP:-}" = 1 ]; then echo "kept $E2E_TMP"; else rm -rf "$E2E_TMP"; fi
}

netns_setup() {
  trap netns_cleanup EXIT
  trap 'exit 130' INT TERM
  ip netns add "$NS_SERVER"
  ip netns add "$NS_CLIENT"
  ip netns add "$NS_OTHER"
  ip link add "$E2E_ID-s1" netns "$NS_SERVER" type veth peer name "$E2E_ID-c1" netns "$NS_CLIENT"
  ip link add "$E2E_ID-s2" netns "$NS_SERVER" type veth peer name "$E2E_ID-o2" netns "$NS_OTHER"
  ip -n "$NS_SERVER" addr add $SERVER_IP/24 dev "$E2E_ID-s1"
  ip -n "$NS_SERVER" addr add $SERVER_IP_OTHER/24 dev "$E2E_ID-s2"
  ip -n "$NS_CLIENT" addr add $CLIENT_IP/24 dev "$E2E_ID-c1"
  ip -n "$NS_OTHER" addr add $OTHER_IP/24 dev "$E2E_ID-o2"
  for ns in "$NS_SERVER" "$NS_CLIENT" "$NS_OTHER"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_SERVER" link set "$E2E_ID-s1" up
  ip -n "$NS_SERVER" link set "$E2E_ID-s2" up
  ip -n "$NS_CLIENT" link set "$E2E_ID-c1" up
  ip -n "$NS_OTHER" link set "$E2E_ID-o2" up
  ip netns exec "$NS_SERVER" sysctl -qw net.ipv4.ip_forward=0
}

# in_ns NS CMD...: run CMD in a namespace.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# bg_in_ns NS LOGFILE CMD...: start CMD in the background, remembered for cleanup.
bg_in_ns() {
  local ns=$1 log=$2; shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 &
  E2E_PIDS+=($!)
}


# can_connect NS ADDR PORT: a TCP connect from NS succeeds within 1 s.
can_connect() {
  ip netns exec "$1" timeout 1 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}
cannot_connect() { ! can_connect "$@"; }

# start_service PORT: a TCP listener in the server namespace that accepts and closes.
start_service() {
  bg_in_ns "$NS_SERVER" "$E2E_TMP/service.log" socat TCP-LISTEN:"$1",fork,reuseaddr SYSTEM:true
  wait_for 5 "service on port $1" in_ns "$NS_SERVER" bash -c "ss -ltn | grep -q ':$1 '"
}

# send_ports NS ADDR PORTS: one TCP SYN to each port (comma-separated), in order, from NS.
send_ports() {
  in_ns "$1" bash -c 'for p in ${2//,/ }; do timeout 0.5 bash -c "exec 3<>/dev/tcp/$1/$p" 2>/dev/null || true; done' \
    _ "$2" "$3"
}

# send_syns NS ADDR PORTS: the same as send_ports, without a process per port: each SYN leaves
# DELAY_MS (default 5) after the one before, in order; the answers are not waited for.
send_syns() {
  in_ns "$1" python3 -c 'import socket, sys, time
socks = []
for p in sys.argv[2].split(","):
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((sys.argv[1], int(p)))
    socks.append(s)
    time.sleep(float(sys.argv[3]) / 1000)' "$2" "$3" "${4:-5}"
}

# send_datagram NS ADDR PORT HEX: one UDP datagram whose payload is the bytes HEX, from NS.
send_datagram() {
  in_ns "$1" python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))' "$2" "$3" "$4"
}

# udp_payloads PCAP: the UDP payload of each IPv4 packet of an Ethernet capture (tcpdump -w on a
# veth), in hex, one a line; a packet still being written is left out.
udp_payloads() {
  python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], 'rb').read()
if len(d) < 24: sys.exit(0)
e = '<' if d[:4] in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1') else '>'
assert struct.unpack(e + 'I', d[20:24])[0] == 1, 'not an Ethernet capture'
off = 24
while off + 16 <= len(d):
    incl = struct.unpack(e + 'I', d[off + 8:off + 12])[0]
    p = d[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(p) < incl or p[12:14] != b'\x08\x00': continue
    ihl = (p[14] & 15) * 4
    print(p[14 + ihl + 8:].hex())
PY
}
# has_udp_payload PCAP: the capture holds at least one whole UDP packet (for wait_for).
has_udp_payload() { [ -n "$(udp_payloads "$1")" ]; }

# socket_kinds PID: one word per socket descriptor of PID (netlink, packet, udp, tcp, other).
socket_kinds() {
  local pid=$1 link inode
  for link in /proc/"$pid"/fd/*; do
    link=$(readlink "$link" 2>/dev/null) || continue
    [[ $link == socket:\[*\] ]] || continue
    inode=${link#socket:[}; inode=${inode%]}
    if awk -v i="$inode" 'NR > 1 && $NF == i { found = 1 } END { exit !found }' /proc/"$pid"/net/netlink; then
      echo netlink
    elif awk -v i="$inode" 'NR > 1 && $9 == i { found = 1 } END { exit !found }' /proc/"$pid"/net/packet; then
      echo packet
    elif awk -v i="$inode" 'NR > 1 && $10 == i { found = 1 } END { exit !found }' /proc/"$pid"/net/udp /proc/"$pid"/net/udp6; then
      echo udp
    else
      echo other
    fi
  done
}
