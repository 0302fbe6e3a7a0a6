#!/usr/bin/env bash
# Knocks knockclient made, replayed with -pcap over every capture shape the daemon meets:
# Ethernet, Linux cooked v1 and v2 (`any`), raw IP; TCP and UDP; a VLAN tag; IPv4 options;
# malformed frames (truncated, bad IP version, 1-byte, non-IP) between the knock's ports.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

common='knock    = IP,PORT,FLAG0,FLAG1,CHECKSUM
portspan = 3000-3127,3200-3327
encrypt  = yes
cipher   = CAST5
iv       = yes
key      = linktype-key'
printf '%s\n' "$common" >"$tmp/client.conf"
for proto in tcp udp; do
  flags=SYN; [ $proto = udp ] && flags=
  cat >"$tmp/daemon-$proto.conf" <<CONF
$common
useethfilter = f
<ethfilter f>
  proto = IP_PROTO_${proto^^}
  flags = $flags
</ethfilter>
CONF
done
chmod 600 "$tmp"/*.conf

case_no=0
check() {  # check PROTO PCAPGEN-ARGS...
  local proto=$1; shift
  case_no=$((case_no + 1))
  local flag1=$((case_no + 10))
  local ports
  ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 2222 \
          -flag0 9 -flag1 "$flag1" -proto "$proto" -test)
  "$BIN_DIR/pcapgen" "$tmp/c.pcap" --proto "$proto" --knock "198.18.0.2@1795507260:0.01:$ports" "$@"
  "$BIN_DIR/knockdaemon" -conf "$tmp/daemon-$proto.conf" -pcap "$tmp/c.pcap" -test >"$tmp/out" 2>"$tmp/log" \
    || fail "$proto $*: daemon exited $?: $(tail -3 "$tmp/log")"
  grep -qx "knock from 198.18.0.2: IP=198.18.0.2 PORT=2222 FLAG0=9 FLAG1=$flag1 CHECKSUM=[0-9]*" "$tmp/out" \
    || fail "$proto $*: knock not found; out: $(cat "$tmp/out"); log: $(tail -4 "$tmp/log")"
  echo "ok: $proto $*"
}

for dlt in en10mb sll sll2 raw; do
  check tcp --dlt $dlt
  check udp --dlt $dlt
done
check tcp --dlt en10mb --vlan 42
check tcp --dlt sll --vlan 7
check tcp --dlt en10mb --ipopts yes
check udp --dlt raw --ipopts yes
check tcp --dlt en10mb --junk 2
check tcp --dlt sll2 --junk 2 --vlan 5
echo PASS
