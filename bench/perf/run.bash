#!/usr/bin/env bash
# run.bash BUILD_DIR: the body of scripts/bench.sh (which installs, builds and calls it).
# Needs BUILD_DIR/knockdaemon, knockclient, pcapgen and knockperf (bench/perf/knockperf.c).
# Prints one Markdown table, knockd beside knockdaemon, measured in this run on the same
# namespaces and traffic; also writes it to BUILD_DIR/bench-result.md.
#
# Topology (198.18.0.0/15 only), on top of tests/e2e/netns.bash:
#   client 198.18.1.2 --veth--+
#                              +-- bridge in the server ns, 198.18.1.1 (both daemons watch it)
#   flood  198.18.1.3 --veth--+   (netns.bash's "other" namespace, used as the flood namespace)
# The flood namespace has no default route and forwarding is off everywhere; its spoofed sources
# are 198.18.4.0-198.19.255.255, for which the server has no route either, so nothing leaves.
set -euo pipefail
BIN=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
SOURCE_DIR=$(cd "$here/../.." && pwd)
KP=$BIN/knockperf
TRIALS=${BENCH_TRIALS:-50}
FLOOD_KNOCKS=${BENCH_FLOOD_KNOCKS:-10}
FLOOD_SECONDS=${BENCH_FLOOD_SECONDS:-16}
PCAP_PACKETS=${BENCH_PCAP_PACKETS:-1000000}
FILE_LINES=${BENCH_FILE_LINES:-300000}
E2E_ID=pkb$$
source "$SOURCE_DIR/tests/e2e/netns.bash"
T=$E2E_TMP
NS_FLOOD=$NS_OTHER
BR=$E2E_ID-br
FLOOD_IP=198.18.1.3
TARGET=22
SPAN_SMALL=2000-2255
SPAN_LARGE=2000-34767
KNOCKD_SEQ=7000,8000,9000
log() { printf '[bench] %s\n' "$*" >&2; }

# --- network ---------------------------------------------------------------------------------
netns_setup
ip link add "$E2E_ID-fs" netns "$NS_SERVER" type veth peer name "$E2E_ID-fo" netns "$NS_FLOOD"
in_ns "$NS_SERVER" ip link add "$BR" type bridge
in_ns "$NS_SERVER" ip addr del $SERVER_IP/24 dev "$E2E_ID-s1"
in_ns "$NS_SERVER" ip link set "$E2E_ID-s1" master "$BR"
in_ns "$NS_SERVER" ip link set "$E2E_ID-fs" master "$BR"
in_ns "$NS_SERVER" ip addr add $SERVER_IP/24 dev "$BR"
in_ns "$NS_SERVER" ip link set "$E2E_ID-fs" up
in_ns "$NS_SERVER" ip link set "$BR" up
in_ns "$NS_FLOOD" ip addr add $FLOOD_IP/24 dev "$E2E_ID-fo"
in_ns "$NS_FLOOD" ip link set "$E2E_ID-fo" up
for ns in "$NS_SERVER" "$NS_CLIENT" "$NS_FLOOD"; do
  in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0
  in_ns "$ns" ip route show | grep -q '^default' && fail "unexpected default route in $ns"
done
port_forwarding() { in_ns "$NS_SERVER" bridge link show dev "$1" | grep -q "state forwarding"; }
wait_for 10 "bridge port to the client" port_forwarding "$E2E_ID-s1"
wait_for 10 "bridge port to the flood namespace" port_forwarding "$E2E_ID-fs"

# Each real knock under the flood comes from its own address: a knock that a flooded daemon
# handles late cannot pass for the next one.
for i in $(seq 10 19); do in_ns "$NS_CLIENT" ip addr add 198.18.1.$i/24 dev "$E2E_ID-c1"; done
KNOCK_SRC=$CLIENT_IP
bg_in_ns "$NS_SERVER" "$T/listen.log" "$KP" listen $TARGET
wait_for 10 "the client reaches the service" can_connect "$NS_CLIENT" $SERVER_IP $TARGET
wait_for 10 "the flood namespace reaches the server" can_connect "$NS_FLOOD" $SERVER_IP $TARGET
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport $TARGET --syn -j DROP
OPEN_IPT="/usr/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
OPEN_NFT="/usr/sbin/nft add element inet pk allowed { IP . PORT }"
close_ipt() { while in_ns "$NS_SERVER" iptables -D INPUT -p tcp -s $KNOCK_SRC/32 --dport $TARGET --syn -j ACCEPT 2>/dev/null; do :; done; }
close_nft() { in_ns "$NS_SERVER" nft delete element inet pk allowed "{ $KNOCK_SRC . $TARGET }" 2>/dev/null || true; }
use_nft() {
  in_ns "$NS_SERVER" iptables -F INPUT
  in_ns "$NS_SERVER" nft -f - <<NFT
table inet pk {
  set allowed { type ipv4_addr . inet_service; }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr . tcp dport @allowed accept
    tcp dport $TARGET tcp flags & (syn|ack) == syn drop
  }
}
NFT
}

# --- helpers ---------------------------------------------------------------------------------
# stats FILE: "median p99 n" of the numbers in FILE (nearest rank).
stats() { sort -n "$1" | awk '{v[NR]=$1} END {if (!NR) {print "- - 0"; exit}
  m=int((NR+1)/2); p=int(NR*0.99+0.999); if (p>NR) p=NR; print v[m], v[p], NR}'; }
ms() { awk -v u="$1" 'BEGIN { if (u=="-") print "-"; else printf "%.2f ms", u/1000 }'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
rx() { in_ns "$NS_SERVER" cat "/sys/class/net/$E2E_ID-fs/statistics/rx_packets"; }
HZ=$(getconf CLK_TCK)

knock_ports_kd() {  # CONF: a fresh knock (random IV) for the client, port TARGET
  "$BIN/knockclient" -conf "$1" -remote $SERVER_IP -client $KNOCK_SRC -port $TARGET -flag0 1 -test
}
# trials NAME N PORTS_CMD CLOSE_CMD: latency trials; the latencies (us) go to $T/NAME.lat
trials() {
  local name=$1 n=$2 ports_cmd=$3 close_cmd=$4 i out fails=0
  : >"$T/$name.lat"
  for ((i = 0; i < n; i++)); do
    out=$(in_ns "$NS_CLIENT" "$KP" knock $SERVER_IP $TARGET 2000 200 "$($ports_cmd)" $KNOCK_SRC) || true
    case $out in
      OK*) echo "${out#OK }" | cut -d' ' -f1 >>"$T/$name.lat" ;;
      *) fails=$((fails + 1)) ;;
    esac
    $close_cmd
  done
  echo $fails >"$T/$name.fails"
  log "$name: $(stats "$T/$name.lat") (median p99 n, us); $fails not opened within 2 s"
}
lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
lines_over() { [ "$(lines_of "$1")" -gt "$2" ]; }
# share NAME N PORTS_CMD STAMPFILE: last knock packet -> template command started (us)
share() {
  local name=$1 n=$2 ports_cmd=$3 stampf=$4 i out last before
  : >"$T/$name.share"
  for ((i = 0; i < n; i++)); do
    before=$(lines_of "$stampf")
    out=$(in_ns "$NS_CLIENT" "$KP" knock $SERVER_IP $TARGET 0 200 "$($ports_cmd)" $KNOCK_SRC) || true
    last=${out#TIMEOUT }
    wait_for 5 "$name stamp" lines_over "$stampf" "$before"
    echo $((($(tail -1 "$stampf") - last) / 1000)) >>"$T/$name.share"
  done
  log "$name share: $(stats "$T/$name.share") (median p99 n, us)"
}
# cmdcost NAME CMD CLEANUP: wall time of `sh -c CMD` (us), 20 runs
cmdcost() {
  local name=$1 cmd=$2 cleanup=$3 i
  : >"$T/$name.cost"
  for ((i = 0; i < 20; i++)); do in_ns "$NS_SERVER" "$KP" run "$cmd" >>"$T/$name.cost"; $cleanup; done
  log "$name: $(stats "$T/$name.cost") (median p99 n, us)"
}
# flood NAME PID LOGFILE LO HI PORTS_CMD CLOSE_CMD: flood + real knocks; results in $T/NAME.flood.*
flood() {
  local name=$1 pid=$2 logf=$3 lo=$4 hi=$5 ports_cmd=$6 close_cmd=$7 ok=0 i out
  local lines0 ticks0 rx0 t0 t1
  lines0=$(wc -l <"$logf"); ticks0=$(cpu_ticks "$pid"); rx0=$(rx); t0=$(date +%s.%N)
  in_ns "$NS_FLOOD" "$KP" flood $SERVER_IP "$lo" "$hi" "$FLOOD_SECONDS" >"$T/$name.flood.sent" &
  local fpid=$!
  sleep 2
  : >"$T/$name.flood.lat"
  for ((i = 0; i < FLOOD_KNOCKS; i++)); do
    KNOCK_SRC=198.18.1.$((10 + i % 10))
    out=$(in_ns "$NS_CLIENT" "$KP" knock $SERVER_IP $TARGET 1000 200 "$($ports_cmd)" $KNOCK_SRC) || true
    case $out in OK*) ok=$((ok + 1)); echo "${out#OK }" | cut -d' ' -f1 >>"$T/$name.flood.lat" ;; esac
    $close_cmd
  done
  wait $fpid
  local late=0
  for ((i = 0; i < 10; i++)); do  # opens that came after the 1 s limit
    KNOCK_SRC=198.18.1.$((10 + i))
    if [ "$close_cmd" = close_ipt ]; then
      in_ns "$NS_SERVER" iptables -C INPUT -p tcp -s $KNOCK_SRC/32 --dport $TARGET --syn -j ACCEPT 2>/dev/null && late=$((late + 1))
    fi
    $close_cmd
  done
  KNOCK_SRC=$CLIENT_IP
  echo $late >"$T/$name.flood.late"
  t1=$(date +%s.%N)
  local rx1 ticks1 lines1
  rx1=$(rx); ticks1=$(cpu_ticks "$pid"); lines1=$(wc -l <"$logf")
  awk -v a="$rx0" -v b="$rx1" -v s="$FLOOD_SECONDS" 'BEGIN {printf "%d", (b-a)/s}' >"$T/$name.flood.rate"
  awk -v a="$ticks0" -v b="$ticks1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" \
    'BEGIN {printf "%d%%", 100*(b-a)/hz/(t1-t0)}' >"$T/$name.flood.cpu"
  echo "$ok/$FLOOD_KNOCKS" >"$T/$name.flood.ok"
  hwm_kib "$pid" >"$T/$name.flood.hwm"
  echo $((lines1 - lines0)) >"$T/$name.flood.lines"
  log "$name flood: $(cat "$T/$name.flood.rate") pkt/s received, sent $(cat "$T/$name.flood.sent");" \
    "$ok/$FLOOD_KNOCKS opened ($late more later); CPU $(cat "$T/$name.flood.cpu"); VmHWM $(cat "$T/$name.flood.hwm") KiB;" \
    "$(cat "$T/$name.flood.lines") log lines"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- reference costs ---------------------------------------------------------------------------
log "cost of the commands alone"
cmdcost ipt "$(echo "$OPEN_IPT" | sed "s/IP/$CLIENT_IP/; s/PORT/$TARGET/")" close_ipt
: >"$T/sh.spawn"
for ((i = 0; i < 20; i++)); do
  out=$(in_ns "$NS_SERVER" "$KP" run "$KP stamp $T/sh.stamp")
  echo $((($(tail -1 "$T/sh.stamp") - ${out#* }) / 1000)) >>"$T/sh.spawn"
done
log "sh -c stamp start: $(stats "$T/sh.spawn")"

# --- knockd --------------------------------------------------------------------------------------
knockd_conf() {  # COMMAND
  cat <<CONF
[options]
  LogFile = $T/knockd.log
[open]
  sequence    = $KNOCKD_SEQ
  seq_timeout = 5
  tcpflags    = syn
  command     = $1
CONF
}
knockd_ports() { echo $KNOCKD_SEQ; }
start_knockd() {  # CONF
  : >"$T/knockd.log"
  bg_in_ns "$NS_SERVER" "$T/knockd.out" /usr/sbin/knockd -i "$BR" -c "$1"
  KNOCKD_PID=${E2E_PIDS[-1]}
  wait_for 10 "knockd ready" grep -q "starting up" "$T/knockd.log"
  sleep 0.5  # knockd logs before pcap is live; give it a moment (no better signal exists)
}
log "knockd: latency"
knockd_conf "$(echo "$OPEN_IPT" | sed 's/IP/%IP%/; s/PORT/'$TARGET'/')" >"$T/knockd.conf"
start_knockd "$T/knockd.conf"
trials knockd "$TRIALS" knockd_ports close_ipt
log "knockd: flood"
flood knockd "$KNOCKD_PID" "$T/knockd.log" 7000 7000 knockd_ports close_ipt
stop_pid "$KNOCKD_PID"
log "knockd: own share"
knockd_conf "$KP stamp $T/knockd.stamp" >"$T/knockd-stamp.conf"
start_knockd "$T/knockd-stamp.conf"
share knockd "$TRIALS" knockd_ports "$T/knockd.stamp"
stop_pid "$KNOCKD_PID"

# --- knockdaemon ----------------------------------------------------------------------------------
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
kd_common() {  # SPAN
  cat <<CONF
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = $1
encrypt  = yes
cipher   = Blowfish
iv       = yes
key      = $KEY
CONF
}
kd_conf() {  # SPAN COMMAND [extra config] [template key: system (default) or nft]
  kd_common "$1"
  cat <<CONF
runmode      = network
interface    = $BR
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
<actions>
  <action open>
    condition = PORT == $TARGET && IP eq LOGIP
    template  = fw_open
    use       = yes
  </action>
</actions>
<template fw_open>
  ${4:-system} = "$2"
</template>
${3:-}
CONF
}
kd_common $SPAN_SMALL >"$T/client-small.conf"
kd_common $SPAN_LARGE >"$T/client-large.conf"
chmod 600 "$T"/*.conf
ports_small() { knock_ports_kd "$T/client-small.conf"; }
ports_large() { knock_ports_kd "$T/client-large.conf"; }
start_kd() {  # CONF LOG
  "$BIN/knockdaemon" -check -conf "$1" || fail "config check failed: $1"
  bg_in_ns "$NS_SERVER" "$2" "$BIN/knockdaemon" -conf "$1"
  KD_PID=${E2E_PIDS[-1]}
  wait_for 10 "knockdaemon ready" grep -q "watching" "$2"
}

log "knockdaemon (Blowfish, 256-port span, iptables): latency"
kd_conf $SPAN_SMALL "$OPEN_IPT" >"$T/kd-ipt.conf"; chmod 600 "$T/kd-ipt.conf"
start_kd "$T/kd-ipt.conf" "$T/kd-ipt.log"
trials kd_ipt "$TRIALS" ports_small close_ipt
log "knockdaemon: flood"
flood kd_ipt "$KD_PID" "$T/kd-ipt.log" 2000 2255 ports_small close_ipt
stop_pid "$KD_PID"
log "knockdaemon: own share"
kd_conf $SPAN_SMALL "$KP stamp $T/kd.stamp" >"$T/kd-stamp.conf"; chmod 600 "$T/kd-stamp.conf"
start_kd "$T/kd-stamp.conf" "$T/kd-stamp.log"
share kd "$TRIALS" ports_small "$T/kd.stamp"
stop_pid "$KD_PID"

log "knockdaemon other setup (Blowfish, 32768-port span, nftables set element in process): latency"
use_nft
cmdcost nft "$(echo "$OPEN_NFT" | sed "s/IP/$CLIENT_IP/; s/PORT/$TARGET/")" close_nft
# knockdaemon's fastest way: the same set element added in process (libnftables), no process.
kd_conf $SPAN_LARGE "${OPEN_NFT#/usr/sbin/nft }" "" nft >"$T/kd-nft.conf"; chmod 600 "$T/kd-nft.conf"
start_kd "$T/kd-nft.conf" "$T/kd-nft.log"
trials kd_nft "$TRIALS" ports_large close_nft
log "knockdaemon other setup: flood"
flood kd_nft "$KD_PID" "$T/kd-nft.log" 2000 34767 ports_large close_nft
stop_pid "$KD_PID"

# --- throughput on one core -------------------------------------------------------------------
log "throughput: pcap file"
kd_common $SPAN_SMALL >"$T/pcap.conf"
cat >>"$T/pcap.conf" <<CONF
runmode      = network
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
maxsources = 65536
CONF
chmod 600 "$T/pcap.conf"
knock_args=()
for ((i = 0; i < 20; i++)); do
  p=$("$BIN/knockclient" -conf "$T/client-small.conf" -remote 198.18.0.1 -client 198.18.0.$((10 + i)) -port 22 -flag0 1 -test)
  knock_args+=(--knock "198.18.0.$((10 + i))@$((i / 4)).$((i % 4 + 1)):0.001:$p")
done
half=$((PCAP_PACKETS / 2))
"$BIN/pcapgen" "$T/bench.pcap" "${knock_args[@]}" --flood "$half@0:100000" --noise "$half@0:100000" >/dev/null
pcap_total=$((PCAP_PACKETS + 20 * $(ports_small | tr ',' '\n' | wc -l)))
found=$("$BIN/knockdaemon" -conf "$T/pcap.conf" -pcap "$T/bench.pcap" -test -quiet 2>/dev/null | grep -c '^knock from' || true)
[ "$found" -eq 20 ] || log "WARNING: $found of 20 knocks found in the pcap"
: >"$T/pcap.times"
for ((i = 0; i < 3; i++)); do
  t0=$(date +%s%N)
  taskset -c 0 "$BIN/knockdaemon" -conf "$T/pcap.conf" -pcap "$T/bench.pcap" -quiet
  echo $((($(date +%s%N) - t0) / 1000)) >>"$T/pcap.times"
done
pcap_us=$(sort -n "$T/pcap.times" | sed -n 2p)
pcap_pps=$((pcap_total * 1000000 / pcap_us))
log "pcap: $pcap_total packets in $pcap_us us (median of 3): $pcap_pps packets/s; $found/20 knocks found"

log "throughput: file mode"
kd_common $SPAN_SMALL >"$T/file.conf"
cat >>"$T/file.conf" <<CONF
runmode      = file
logfile      = $T/fw.log
fileinterval = 0.05
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
maxsources   = 65536
<actions>
  <action stamp>
    condition = PORT == $TARGET && IP eq LOGIP
    template  = stamp
    use       = yes
  </action>
</actions>
<template stamp>
  system = "$KP stamp $T/file.stamp"
</template>
CONF
chmod 600 "$T/file.conf"
kports=$(ports_small)
awk -v n="$FILE_LINES" -v kp="$kports" -v cli="$CLIENT_IP" 'BEGIN {
  srand(7)
  fmt = "Jan  1 00:00:00 srv kernel: [1.0] portknock IN=eth0 OUT= MAC=00:00:00:00:00:01:00:00:00:00:00:02:08:00 SRC=%s DST=198.18.1.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=%d DPT=%d WINDOW=64240 RES=0x00 SYN URGP=0\n"
  for (i = 0; i < n; i++)
    printf fmt, sprintf("198.%d.%d.%d", 18 + int(rand()*2), 4 + int(rand()*250), int(rand()*256)), 1024 + int(rand()*60000), 2000 + int(rand()*256)
  k = split(kp, p, ",")
  for (i = 1; i <= k; i++) printf fmt, cli, 40000 + i, p[i]
}' >"$T/lines.txt"
file_total=$(wc -l <"$T/lines.txt")
: >"$T/fw.log"
taskset -c 0 "$BIN/knockdaemon" -conf "$T/file.conf" >"$T/file.log" 2>&1 &
FILE_PID=$!; E2E_PIDS+=($FILE_PID)
wait_for 10 "file mode ready" grep -q "watching" "$T/file.log"
ticks0=$(cpu_ticks $FILE_PID)
t0=$("$KP" stamp /dev/stdout)
cat "$T/lines.txt" >>"$T/fw.log"
wait_for 120 "file mode consumed the lines" test -s "$T/file.stamp"
file_us=$((($(head -1 "$T/file.stamp") - t0) / 1000))
file_cpu=$(( ($(cpu_ticks $FILE_PID) - ticks0) * 1000000 / HZ ))
file_lps=$((file_total * 1000000 / file_us))
log "file mode: $file_total lines in $file_us us: $file_lps lines/s (CPU $file_cpu us)"
stop_pid $FILE_PID

# --- the table ----------------------------------------------------------------------------------
row() { printf '| %s | %s | %s | %s |\n' "$@"; }
lat() { read -r m p n <<<"$(stats "$T/$1.lat")"; echo "$(ms "$m") / $(ms "$p") (n=$n, $(cat "$T/$1.fails") missed)"; }
shr() { read -r m p n <<<"$(stats "$T/$1.share")"; echo "$(ms "$m") / $(ms "$p")"; }
det() { awk -v a="$(stats "$T/$1.share" | cut -d' ' -f1)" -v b="$(stats "$T/sh.spawn" | cut -d' ' -f1)" \
  'BEGIN { printf "%.2f ms", (a-b)/1000 }'; }
cost() { read -r m p n <<<"$(stats "$T/$1")"; ms "$m"; }
fl() { cat "$T/$1.flood.$2"; }
flat() { read -r m p n <<<"$(stats "$T/$1.flood.lat")"; echo "$(ms "$m")"; }
read -r knockd_med _ _ <<<"$(stats "$T/knockd.lat")"
read -r ipt_med _ _ <<<"$(stats "$T/kd_ipt.lat")"
read -r nft_med _ _ <<<"$(stats "$T/kd_nft.lat")"
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  awk -v k="$knockd_med" -v a="$ipt_med" -v b="$nft_med" 'BEGIN {
    printf "**Knock to open: knockdaemon %.1fx faster than knockd with the same iptables command (median %.2f ms vs %.2f ms); %.1fx with its fastest way, an nft set element added in process (libnftables), 32768-port span (%.2f ms).**\n", k/a, a/1000, k/1000, k/b, b/1000 }'
  awk -v k="$(stats "$T/knockd.share" | cut -d' ' -f1)" -v a="$(stats "$T/kd.share" | cut -d' ' -f1)" 'BEGIN {
    printf "**Own share (last knock packet to command started): knockdaemon %.2f ms, knockd %.2f ms: %.1fx.**\n", a/1000, k/1000, k/a }'
  echo
  row "measure" "knockd 0.8 (3-port sequence, iptables)" "knockdaemon (Blowfish, iv, 256-port span: $(ports_small | tr ',' '\n' | wc -l) SYNs, iptables)" "knockdaemon, other setup (Blowfish, iv, 32768-port span: $(ports_large | tr ',' '\n' | wc -l) SYNs, nft set element added in process)"
  row "---" "---" "---" "---"
  row "knock to open, median / p99 ($TRIALS trials)" "$(lat knockd)" "$(lat kd_ipt)" "$(lat kd_nft)"
  row "own share: last packet to command started (sh -c stamp), median / p99" "$(shr knockd)" "$(shr kd)" "same code path as left"
  row "own share minus the sh start below (detection and dispatch)" "$(det knockd)" "$(det kd)" "same code path as left"
  row "the command alone as a process (sh -c, median of 20)" "$(cost ipt.cost)" "$(cost ipt.cost)" "$(cost nft.cost)"
  row "flood: spoofed SYNs received (pkt/s, sources 198.18.4.0-198.19.255.255)" "$(fl knockd rate) into port 7000" "$(fl kd_ipt rate) into the span" "$(fl kd_nft rate) into the span"
  row "flood: real knocks open within 1 s (median latency)" "$(fl knockd ok) ($(flat knockd))" "$(fl kd_ipt ok) ($(flat kd_ipt))" "$(fl kd_nft ok) ($(flat kd_nft))"
  row "flood: daemon CPU (utime+stime / wall)" "$(fl knockd cpu)" "$(fl kd_ipt cpu)" "$(fl kd_nft cpu)"
  row "flood: peak RSS (VmHWM)" "$(fl knockd hwm) KiB" "$(fl kd_ipt hwm) KiB" "$(fl kd_nft hwm) KiB"
  row "flood: log lines written during the flood" "$(fl knockd lines)" "$(fl kd_ipt lines)" "$(fl kd_nft lines)"
  row "pcap file, one core (taskset -c 0): packets/s" "n/a (no file input)" "$pcap_pps ($pcap_total packets, $found/20 knocks found)" "-"
  row "file mode, one core: log lines/s" "n/a (no file mode)" "$file_lps ($file_total lines, CPU $((file_cpu / 1000)) ms)" "-"
  echo
  echo "sh -c start alone (spawn to a stamp command running): $(cost sh.spawn) median."
} | tee "$BIN/bench-result.md"
