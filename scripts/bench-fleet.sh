#!/usr/bin/env bash
# bench-fleet.sh [BUILD_DIR] [N]: the cost <store redis> adds per knock (doc/FLEET.md). N distinct
# authenticated knocks (each with a state read and write) go through knockdaemon -pcap three
# times: without a store, with a redis-server on a Unix socket, and on 127.0.0.1 TCP; the
# difference of the wall times divided by N is the added cost per knock (one EVALSHA round trip
# plus one GET per state key read).
set -euo pipefail
build=$(cd "${1:-build}" && pwd); n=${2:-2000}
tmp=$(mktemp -d); port=$((20000 + RANDOM % 20000))
cleanup() { [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --save '' \
  --appendonly no --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
until redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1; do sleep 0.05; done
"$build/knockclient" -keygen "$tmp/k.key" 2>/dev/null
T=$(date +%s)
args=()
for i in $(seq 1 "$n"); do
  ip=198.18.$(( (i / 250) % 250 )).$(( i % 250 + 1 ))
  hex=$("$build/knockclient" -test -proto spa -keyfile "$tmp/k.key" -client "$ip" -port 22 \
        -knock IP,PORT,CHECKSUM -portspan 20000-20255 -spatime "$T" 2>/dev/null | head -1)
  args+=(--datagram "$ip@$T.$((100000 + i)):62202:$hex")
done
"$build/pcapgen" "$tmp/k.pcap" "${args[@]}"
conf() {
  printf '%s\n' 'runmode = network' 'knock = IP,PORT,CHECKSUM' 'portspan = 20000-20255' \
    "<client c>" "  keyfile = $tmp/k.key" "</client>" \
    '<actions>' '<action count>' 'condition = PORT == 22 && state(IP,n) < 5' 'template = count' '</action>' '</actions>' \
    '<template count>' 'state = state(IP,n)++' '</template>'
  [ -n "${1:-}" ] && printf '<store redis>\n address = %s\n timeout = 1000\n</store>\n' "$1"
  return 0
}
run() {  # run NAME [ADDRESS]
  conf "${2:-}" >"$tmp/d.conf"; chmod 600 "$tmp/d.conf"
  redis-cli -s "$tmp/redis.sock" flushall >/dev/null
  local s e accepted
  s=$(date +%s%N)
  accepted=$("$build/knockdaemon" -conf "$tmp/d.conf" -pcap "$tmp/k.pcap" 2>&1 | grep -c ": action count$" || true)
  e=$(date +%s%N)
  echo "$1: $accepted of $n knocks accepted in $(( (e - s) / 1000000 )) ms: $(( (e - s) / n / 1000 )) us per knock"
}
run "no store      "
run "unix socket   " "$tmp/redis.sock"
run "127.0.0.1 tcp " "127.0.0.1:$port"
