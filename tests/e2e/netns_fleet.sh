#!/usr/bin/env bash
# Three gateways sharing one memory through Redis (<store redis>, doc/FLEET.md), end to end: a
# real redis-server this test starts on a Unix socket in its temporary folder (network
# namespaces share the file system), three knockdaemons in three namespaces (gwA 198.18.1.1,
# gwB 198.18.3.1, gwC 198.18.4.1), one client namespace linked to each. Knocks are
# authenticated single packets (proto = spa) made by knockclient -test and sent as datagrams.
#  1. A knock accepted at gwA and replayed to gwB is refused at gwB (logged as a replay of a
#     knock accepted at gwA).
#  2. One fresh knock sent to gwA, gwB and gwC at the same moment opens exactly once.
#  3. "Open only twice per IP" (state(IP,n) < 2; state(IP,n)++): six fresh knocks spread over
#     the three gateways open twice in all, not six times.
#  4. Redis stopped: a fresh knock is refused (fail closed) with a log line naming the store;
#     every daemon keeps running and runs its pending closes. Redis started again: knocks open
#     again without a restart of any daemon.
# FLEET_NO_STORE=1 runs the same test without the <store> block: every claim above then fails
# (what shows the test can fail); the test reports each failed claim and fails at the end.
E2E_ID=pkflt$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
command -v redis-server >/dev/null || fail "redis-server is not installed (scripts/install-deps.sh)"
command -v redis-cli >/dev/null || fail "redis-cli is not installed (scripts/install-deps.sh)"

SPAPORT=62202
CLOSE_AFTER=4
NS_CLI=$E2E_ID-cli
GWS=(A B C)
declare -A NS=([A]=$E2E_ID-gA [B]=$E2E_ID-gB [C]=$E2E_ID-gC)
declare -A GW_IP=([A]=198.18.1.1 [B]=198.18.3.1 [C]=198.18.4.1)
declare -A CL_IP=([A]=198.18.1.2 [B]=198.18.3.2 [C]=198.18.4.2)
declare -A PID=() LOGF=()
REDIS_SOCK=$E2E_TMP/redis.sock
REDIS_PID=
CLIENT_IP=198.18.1.2  # the address every message asks to open for

failures=()
claim() {  # claim DESCRIPTION CMD...: record a failed claim (the test goes on, fails at the end)
  local what=$1; shift
  if "$@"; then say "ok: $what"; else say "CLAIM FAILED: $what"; failures+=("$what"); fi
}

fleet_cleanup() {
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  for g in "${GWS[@]}"; do
    ip netns pids "${NS[$g]}" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "${NS[$g]}" 2>/dev/null || true
  done
  ip netns pids "$NS_CLI" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  netns_cleanup
}
trap fleet_cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_CLI"
ip -n "$NS_CLI" link set lo up
n=1
for g in "${GWS[@]}"; do
  ip netns add "${NS[$g]}"
  ip -n "${NS[$g]}" link set lo up
  ip link add "$E2E_ID-g$g" netns "${NS[$g]}" type veth peer name "$E2E_ID-c$g" netns "$NS_CLI"
  ip -n "${NS[$g]}" addr add "${GW_IP[$g]}/24" dev "$E2E_ID-g$g"
  ip -n "$NS_CLI" addr add "${CL_IP[$g]}/24" dev "$E2E_ID-c$g"
  ip -n "${NS[$g]}" link set "$E2E_ID-g$g" up
  ip -n "$NS_CLI" link set "$E2E_ID-c$g" up
  n=$((n + 1))
done

start_redis() {
  redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$E2E_TMP" --logfile "$E2E_TMP/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!
  wait_for 10 "redis-server answering on $REDIS_SOCK" redis-cli -s "$REDIS_SOCK" ping
}
stop_redis() {
  kill -TERM "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  REDIS_PID=
}
start_redis

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
# daemon_conf GW: the configuration of gateway GW. Opens and closes are lines in GW's files.
daemon_conf() {
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
stateexpire = 1h
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
CONF
  if [ "${FLEET_NO_STORE:-}" != 1 ]; then
    printf '<store redis>\n  address = %s\n  name = gw%s\n  timeout = 200\n</store>\n' "$REDIS_SOCK" "$1"
  fi
  cat <<CONF
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
  <action full>
    condition = PORT == 23 && state(IP,n) >= 2
    template  = nothing
  </action>
  <action twice>
    condition = PORT == 23 && state(IP,n) < 2
    template  = count
    template  = open
  </action>
</actions>
<template open>
  system = "/bin/sh -c 'echo IP PORT >> $E2E_TMP/gw$1.opens'"
</template>
<template close>
  system = "/bin/sh -c 'echo IP PORT >> $E2E_TMP/gw$1.closes'"
</template>
<template nothing>
  system = "/bin/true"
</template>
<template count>
  state = state(IP,n)++
</template>
CONF
}
for g in "${GWS[@]}"; do
  daemon_conf "$g" >"$E2E_TMP/gw$g.conf"
  chmod 600 "$E2E_TMP/gw$g.conf"
  : >"$E2E_TMP/gw$g.opens"
  : >"$E2E_TMP/gw$g.closes"
  LOGF[$g]=$E2E_TMP/gw$g.log
  bg_in_ns "${NS[$g]}" "${LOGF[$g]}" "$BIN/knockdaemon" -conf "$E2E_TMP/gw$g.conf"
  PID[$g]=${E2E_PIDS[-1]}
done
for g in "${GWS[@]}"; do wait_for 10 "gw$g ready" grep -q "watching interface" "${LOGF[$g]}"; done

# message PORT: a fresh message (new nonce) asking to open PORT for CLIENT_IP.
message() {
  "$BIN/knockclient" -test -proto spa -keyfile "$E2E_TMP/alice.key" -client "$CLIENT_IP" -port "$1" \
    -knock IP,PORT,FLAG0,CHECKSUM -portspan 2000-2255 -remote 198.18.1.1 -spaport $SPAPORT 2>/dev/null | head -1
}
# send GW... HEX: the datagram to each gateway named, back to back from one process.
send() {
  local hex=${*: -1} targets=()
  for g in "${@:1:$#-1}"; do targets+=("${GW_IP[$g]}"); done
  in_ns "$NS_CLI" python3 -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
p = bytes.fromhex(sys.argv[1])
for a in sys.argv[2:]: s.sendto(p, (a, int('"$SPAPORT"')))' "$hex" "${targets[@]}"
}
# verdicts GW: knocks GW has decided (an open, the "full" action, or a refusal).
verdicts() { grep -cE "knock from .*: action (open|twice|full)$|refused, nothing run" "${LOGF[$1]}" || true; }
# decided GW N: GW has decided at least N knocks.
decided() { [ "$(verdicts "$1")" -ge "$2" ]; }
# opened [GW]: knocks accepted with an open (all gateways without GW).
opened() {
  local files=("$E2E_TMP"/gw?.log)
  [ -n "${1:-}" ] && files=("${LOGF[$1]}")
  cat "${files[@]}" | grep -cE "knock from .*: action (open|twice)$" || true
}
# knock_at GW... HEX: send, then wait until each gateway named has decided it.
knock_at() {
  local g hex=${*: -1}
  declare -A was=()
  for g in "${@:1:$#-1}"; do was[$g]=$(verdicts "$g"); done
  send "$@"
  for g in "${@:1:$#-1}"; do wait_for 10 "gw$g decides" decided "$g" $((was[$g] + 1)); done
}
wait_for_ok() { local d=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -lt $d ] || return 1; sleep 0.1; done; }

say "-- 1. accepted at gwA, replayed to gwB"
hex=$(message 22)
knock_at A "$hex"
claim "gwA opens" test "$(opened A)" -eq 1
knock_at B "$hex"
claim "the replay at gwB opens nothing" test "$(opened B)" -eq 0
claim "gwB logs it as a replay of a knock accepted at gwA" grep -q "a replay of a knock accepted at gateway gwA" "${LOGF[B]}"

say "-- 2. one knock at gwA, gwB and gwC at the same moment"
base=$(opened)
knock_at A B C "$(message 22)"
claim "the same knock sent to three gateways at once opens exactly once ($(($(opened) - base)) opens)" \
  test "$(opened)" -eq $((base + 1))

say "-- 3. twice per IP across the fleet"
base=$(opened)
for i in 1 2 3 4 5 6; do knock_at "${GWS[$(( (i - 1) % 3 ))]}" "$(message 23)"; done
claim "six knocks on three gateways open twice, not six times ($(($(opened) - base)) opens)" \
  test "$(opened)" -eq $((base + 2))

say "-- 4. Redis stopped, then started again"
# A knock at gwC whose close falls due while the store is away.
knock_at C "$(message 22)"
stop_redis
before=$(opened)
knock_at A "$(message 22)"
claim "with the store down the knock is refused (fail closed)" test "$(opened)" -eq "$before"
claim "and the refusal names the store" grep -q "refused, nothing run: the shared store is unavailable (redis $REDIS_SOCK" "${LOGF[A]}"
for g in "${GWS[@]}"; do claim "gw$g still runs" kill -0 "${PID[$g]}"; done
closes_done() {
  for g in "${GWS[@]}"; do [ "$(wc -l <"$E2E_TMP/gw$g.closes")" -ge "$(grep -c ' 22$' "$E2E_TMP/gw$g.opens")" ] || return 1; done
}
claim "every pending close runs while the store is down" wait_for_ok $((CLOSE_AFTER + 10)) closes_done
claim "(and there were closes to run: $(cat "$E2E_TMP"/gw?.closes | wc -l))" test "$(cat "$E2E_TMP"/gw?.closes | wc -l)" -ge 1
start_redis
reopened() { local n; n=$(opened A); knock_at A "$(message 22)"; [ "$(opened A)" -gt "$n" ]; }
claim "with the store back, knocks open again without a restart" wait_for_ok 20 reopened
claim "gwA says the store is back" grep -q "connected again" "${LOGF[A]}"

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
