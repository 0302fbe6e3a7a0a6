#!/usr/bin/env bash
# Fleet sharing (`fleet = NAME` in <store redis>, doc/FLEET.md), end to end: a real redis-server
# this test starts on a Unix socket, three knockdaemons in three namespaces (gwA 198.18.1.1,
# gwB 198.18.1.3, gwC 198.18.1.4) on one LAN with the client (198.18.1.2, a bridge in the client
# namespace), each gateway with its own nftables firewall (TCP 22 dropped unless the client is in
# its set) and its own state cache.
#  1. One knock sent to gwA only opens the door at gwA, gwB and gwC (a TCP connect to port 22
#     of each succeeds), and each closes again after its delay (connects fail again).
#  2. gwB's daemon restarted: it does not run the shared knock's actions again, and it still
#     follows the fleet: a second knock at gwA opens gwB once more (two opens at gwB, not three),
#     past hostile entries written into the stream by hand (skipped, logged as malformed).
# FLEET_NO_SHARE=1 runs it without the fleet line: the claims about gwB and gwC then fail
# (what shows the test can fail); the test reports each failed claim and fails at the end.
E2E_ID=pkfls$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
for tool in redis-server redis-cli nft socat; do
  command -v $tool >/dev/null || fail "$tool is not installed (scripts/install-deps.sh)"
done

SPAPORT=62203
CLOSE_AFTER=6
NS_CLI=$E2E_ID-cli
GWS=(A B C)
declare -A NS=([A]=$E2E_ID-gA [B]=$E2E_ID-gB [C]=$E2E_ID-gC)
declare -A GW_IP=([A]=198.18.1.1 [B]=198.18.1.3 [C]=198.18.1.4)
declare -A PID=() LOGF=()
REDIS_SOCK=$E2E_TMP/redis.sock
REDIS_PID=
CLIENT_IP=198.18.1.2

failures=()
claim() {  # claim DESCRIPTION CMD...: record a failed claim (the test goes on, fails at the end)
  local what=$1; shift
  if "$@"; then say "ok: $what"; else say "CLAIM FAILED: $what"; failures+=("$what"); fi
}

share_cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  for g in "${GWS[@]}"; do
    ip netns pids "${NS[$g]}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "${NS[$g]}" 2>/dev/null || true
  done
  ip netns pids "$NS_CLI" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  netns_cleanup
}
trap share_cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_CLI"
ip -n "$NS_CLI" link set lo up
ip -n "$NS_CLI" link add br0 type bridge
ip -n "$NS_CLI" addr add "$CLIENT_IP/24" dev br0
ip -n "$NS_CLI" link set br0 up
for g in "${GWS[@]}"; do
  ip netns add "${NS[$g]}"
  ip -n "${NS[$g]}" link set lo up
  ip link add "$E2E_ID-g$g" netns "${NS[$g]}" type veth peer name "$E2E_ID-c$g" netns "$NS_CLI"
  ip -n "${NS[$g]}" addr add "${GW_IP[$g]}/24" dev "$E2E_ID-g$g"
  ip -n "$NS_CLI" link set "$E2E_ID-c$g" master br0
  ip -n "${NS[$g]}" link set "$E2E_ID-g$g" up
  ip -n "$NS_CLI" link set "$E2E_ID-c$g" up
  in_ns "${NS[$g]}" nft -f - <<NFT
table inet pk {
  set allowed { type ipv4_addr . inet_service; }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    ip saddr . tcp dport @allowed accept
    tcp dport 22 drop
  }
}
NFT
  bg_in_ns "${NS[$g]}" "$E2E_TMP/ssh$g.log" socat TCP-LISTEN:22,fork,reuseaddr SYSTEM:true
done
for g in "${GWS[@]}"; do
  wait_for 5 "service on gw$g" in_ns "${NS[$g]}" bash -c "ss -ltn | grep -q ':22 '"
done

redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --save '' --appendonly no \
  --dir "$E2E_TMP" --logfile "$E2E_TMP/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!
wait_for 10 "redis-server answering on $REDIS_SOCK" redis-cli -s "$REDIS_SOCK" ping

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
"$BIN/knockclient" -keygen "$E2E_TMP/fleet.key" 2>/dev/null  # fleetkeyfile: the same at every gateway
daemon_conf() {  # daemon_conf GW
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
summaryinterval = 1
usecache   = yes
statecache = $E2E_TMP/gw$1.cache
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<store redis>
  address = $REDIS_SOCK
  name    = gw$1
  timeout = 200
$( [ "${FLEET_NO_SHARE:-}" = 1 ] || printf '  fleet   = site\n  fleetkeyfile = %s\n' "$E2E_TMP/fleet.key" )
</store>
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = ${CLOSE_AFTER}s
  </action>
</actions>
<template open>
  system = "/usr/sbin/nft add element inet pk allowed { IP . PORT }"
  system = "/bin/sh -c 'echo IP PORT TIME >> $E2E_TMP/gw$1.opens'"
</template>
<template close>
  system = "/usr/sbin/nft delete element inet pk allowed { IP . PORT }"
  system = "/bin/sh -c 'echo IP PORT >> $E2E_TMP/gw$1.closes'"
</template>
CONF
}
start_gw() {  # start_gw GW
  : >"${LOGF[$1]}"
  bg_in_ns "${NS[$1]}" "${LOGF[$1]}" "$BIN/knockdaemon" -conf "$E2E_TMP/gw$1.conf"
  PID[$1]=${E2E_PIDS[-1]}
  wait_for 10 "gw$1 ready" grep -q "watching interface" "${LOGF[$1]}"
}
for g in "${GWS[@]}"; do
  daemon_conf "$g" >"$E2E_TMP/gw$g.conf"
  chmod 600 "$E2E_TMP/gw$g.conf"
  : >"$E2E_TMP/gw$g.opens"
  : >"$E2E_TMP/gw$g.closes"
  LOGF[$g]=$E2E_TMP/gw$g.log
  start_gw "$g"
done

message() {  # message PORT: a fresh message asking to open PORT for CLIENT_IP
  "$BIN/knockclient" -test -proto spa -keyfile "$E2E_TMP/alice.key" -client "$CLIENT_IP" -port "$1" \
    -knock IP,PORT,FLAG0,CHECKSUM -portspan 2000-2255 -remote "${GW_IP[A]}" -spaport $SPAPORT 2>/dev/null | head -1
}
send_to_a() {
  in_ns "$NS_CLI" python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], int(sys.argv[3])))' "$1" "${GW_IP[A]}" $SPAPORT
}
wait_for_ok() { local d=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -lt $d ] || return 1; sleep 0.1; done; }
opens() { wc -l <"$E2E_TMP/gw$1.opens"; }
door_open() { can_connect "$NS_CLI" "${GW_IP[$1]}" 22; }
door_closed() { cannot_connect "$NS_CLI" "${GW_IP[$1]}" 22; }

say "-- 0. every door is closed"
for g in "${GWS[@]}"; do claim "gw$g port 22 is closed before any knock" door_closed "$g"; done

say "-- 1. one knock at gwA opens gwA, gwB and gwC; each closes after its delay"
send_to_a "$(message 22)"
for g in "${GWS[@]}"; do claim "gw$g opens port 22 for the client" wait_for_ok 10 door_open "$g"; done
for g in B C; do claim "gw$g logs the knock as shared by gwA" grep -q "(shared by gateway gwA): action open" "${LOGF[$g]}"; done
for g in "${GWS[@]}"; do claim "gw$g closes it again after ${CLOSE_AFTER}s" wait_for_ok $((CLOSE_AFTER + 10)) door_closed "$g"; done
for g in "${GWS[@]}"; do
  claim "gw$g ran the open once and the close once ($(opens "$g") opens, $(wc -l <"$E2E_TMP/gw$g.closes") closes)" \
    test "$(opens "$g")" -eq 1 -a "$(wc -l <"$E2E_TMP/gw$g.closes")" -eq 1
done

say "-- 2. gwB restarted: the shared knock is not run again; gwB still follows"
kill -TERM "${PID[B]}"
wait "${PID[B]}" 2>/dev/null || true
start_gw B
# Hostile entries in the stream (anyone who may write to Redis can add them): not one field k,
# a malformed knock, a 100 kB value. Each follower skips and counts them and goes on.
rc() { redis-cli -s "$REDIS_SOCK" "$@" >/dev/null; }
rc XADD portknock:fleet:site '*' a 1 b 2
rc XADD portknock:fleet:site '*' k "pk1 gw=gwX t=1 logip=198.18.1.2 PORT=22 act=open;reboot"
# A well-formed, current knock for alice's address asking for the open alone (no close), written
# by someone who can write to Redis but holds no fleet key: not authenticated, never run.
rc XADD portknock:fleet:site '*' k "pk1 gw=gwX t=$(date +%s%3N) logip=198.18.1.2 IP=3323068674 PORT=22 act=open"
head -c 100000 /dev/zero | tr '\0' x | redis-cli -s "$REDIS_SOCK" -x XADD portknock:fleet:site '*' k >/dev/null
send_to_a "$(message 22)"
a_opened_twice() { [ "$(opens A)" -ge 2 ]; }
claim "gwA opens the second knock" wait_for_ok 10 a_opened_twice
# The stream is handled in order: once gwB has run the second knock (its TIME as gwA logged it),
# a repeat of the first would already be in gwB's file.
second=$(tail -n 1 "$E2E_TMP/gwA.opens")
b_ran_second() { grep -qx "$second" "$E2E_TMP/gwB.opens"; }
claim "gwB opens the second knock after its restart" wait_for_ok 10 b_ran_second
claim "gwB ran the first knock's open once, not again after the restart ($(opens B) opens for 2 knocks)" test "$(opens B)" -eq 2
claim "gwB's door opened for the second knock" door_open B
for g in B C; do claim "gw$g logs the hostile stream entries as malformed and skips them" grep -q "skipped, malformed" "${LOGF[$g]}"; done
c_ran_second() { grep -qx "$second" "$E2E_TMP/gwC.opens"; }
claim "gwC runs the second knock too" wait_for_ok 10 c_ran_second
claim "gwC ran two opens for the two knocks, none for the hostile entries ($(opens C))" test "$(opens C)" -eq 2

for g in "${GWS[@]}"; do
  kill -TERM "${PID[$g]}"
  status=0
  wait "${PID[$g]}" || status=$?
  claim "gw$g stops cleanly on SIGTERM" test "$status" -eq 0
done
if [ ${#failures[@]} -ne 0 ]; then
  printf 'FAILED CLAIMS:\n' >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
say ok
