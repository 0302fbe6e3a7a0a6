#!/usr/bin/env bash
# run.bash BUILD_DIR: the body of scripts/bench.sh (which installs, builds and calls it).
# Needs BUILD_DIR/knockdaemon, knockclient, pcapgen and knockperf (bench/perf/knockperf.c), and
# Debian's knockd, fwknopd (fwknop-server), fwknop (fwknop-client), sshd and ssh.
# Prints one Markdown table, knockd and fwknopd beside knockdaemon, measured in this run on the
# same namespaces and traffic; also writes it to BUILD_DIR/bench-result.md.
# Columns: knockd (port knock, iptables); fwknopd (fwknop's packet, its own iptables chain);
# knockdaemon with the original's port knock (iptables), with its single packet (an nft set element
# with a kernel timeout, added in process), with fwknop's packet (fwknopd's iptables rule), and
# with its single packet again for iptables (an ipset element with a kernel timeout, added in
# process through libipset; `iptables -m set --match-set pk src,dst -j ACCEPT`).
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
# BENCH_RT=1: the daemons and the client's measuring tool under SCHED_FIFO (chrt), to tell
# waiting for a CPU from the daemon's own work (a diagnosis, not the default).
# BENCH_FWKNOPD_EXTRA: lines added to fwknopd.conf (e.g. "PCAP_LOOP_SLEEP 1000;").
# BENCH_NICE=N: the daemons at nice N instead (e.g. -10, as a unit's Nice= would set).
RT=()
[ -z "${BENCH_RT:-}" ] || [ "${BENCH_RT}" = client ] || RT=(chrt -f 10)
[ -z "${BENCH_NICE:-}" ] || RT=(nice -n "$BENCH_NICE")
# BENCH_PIN=1: every daemon on CPU 1, the client's measuring tool on CPU 0, as if the client
# were another machine (on 2 cores the prober otherwise takes the daemon's CPU every 100 µs).
if [ -n "${BENCH_PIN:-}" ]; then RT=(taskset -c 1 "${RT[@]}"); fi
TRIALS=${BENCH_TRIALS:-200}
SSH_RUNS=${BENCH_SSH_RUNS:-20}
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
KNOCKD_SEQ=7000,8000,9000
SPAPORT=62202     # knockdaemon's single packet
FWKNOPPORT=62201  # fwknop's packet (fwknopd and knockdaemon's <fwknop NAME>)
SSH_CLOSED=2022   # sshd: behind the door (dropped like TARGET until a knock)
SSH_OPEN=2222     # sshd: always open, the reference
log() { printf '[bench] %s\n' "$*" >&2; }
# BENCH_ONLY="kd_spa ssh ...": only these parts (for development; the table then has holes).
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

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
# Nothing listens on the single-packet ports: the captures see the datagrams, the firewall drops them.
in_ns "$NS_SERVER" iptables -A INPUT -p udp -m multiport --dports $SPAPORT,$FWKNOPPORT -j DROP
OPEN_IPT="/usr/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
# fwknopd's own rule (strace -f -e execve of fwknopd 2.6.10: after four checks, `iptables -L
# FWKNOP_INPUT`, `-N`, `-C INPUT -j FWKNOP_INPUT`, `-C` of the rule, it appends this one).
OPEN_FWK="/usr/sbin/iptables -A FWKNOP_INPUT -t filter -p 6 -s IP -d 0.0.0.0/0 --dport PORT -m comment --comment _exp_knockdaemon -j ACCEPT"
OPEN_NFT="add element inet pk allowed { IP . PORT timeout 30s }"
close_ipt() { while in_ns "$NS_SERVER" iptables -D INPUT -p tcp -s $KNOCK_SRC/32 --dport $TARGET --syn -j ACCEPT 2>/dev/null; do :; done; }
close_fwk() { in_ns "$NS_SERVER" iptables -F FWKNOP_INPUT 2>/dev/null || true; }
close_nft() { in_ns "$NS_SERVER" nft delete element inet pk allowed "{ $KNOCK_SRC . $TARGET }" 2>/dev/null || true; }
OPEN_IPSET="add pk IP,tcp:PORT timeout 30"
close_ipset() { in_ns "$NS_SERVER" ipset -exist del pk $KNOCK_SRC,tcp:$TARGET; }
fwk_chain() {  # the chain and jump fwknopd makes for itself, for knockdaemon's fwknop column
  in_ns "$NS_SERVER" iptables -N FWKNOP_INPUT
  in_ns "$NS_SERVER" iptables -I INPUT 1 -j FWKNOP_INPUT
}
use_nft() {
  in_ns "$NS_SERVER" iptables -F INPUT
  in_ns "$NS_SERVER" nft -f - <<NFT
table inet pk {
  set allowed { type ipv4_addr . inet_service; flags timeout; }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr . tcp dport @allowed accept
    tcp dport { $TARGET, $SSH_CLOSED } tcp flags & (syn|ack) == syn drop
    udp dport { $SPAPORT, $FWKNOPPORT } drop
  }
}
NFT
}
# The iptables form of the nft table above: members of the ipset pk (hash:ip,port, each element
# with its own timeout) accepted before the drops. The nft table goes (its drops would apply too).
use_ipset() {
  in_ns "$NS_SERVER" nft delete table inet pk 2>/dev/null || true
  in_ns "$NS_SERVER" iptables -F INPUT
  in_ns "$NS_SERVER" ipset -exist create pk hash:ip,port timeout 0
  in_ns "$NS_SERVER" iptables -A INPUT -m set --match-set pk src,dst -j ACCEPT
  in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport $TARGET --syn -j DROP
  in_ns "$NS_SERVER" iptables -A INPUT -p udp -m multiport --dports $SPAPORT,$FWKNOPPORT -j DROP
}

# --- helpers ---------------------------------------------------------------------------------
# stats FILE: "median p99 n max" of the numbers in FILE (nearest rank).
stats() { sort -n "$1" | awk '{v[NR]=$1} END {if (!NR) {print "- - 0 -"; exit}
  m=int((NR+1)/2); p=int(NR*0.99+0.999); if (p>NR) p=NR; print v[m], v[p], NR, v[NR]}'; }
ms() { awk -v u="$1" 'BEGIN { if (u=="-") print "-"; else printf "%.2f ms", u/1000 }'; }
# A daemon and its children (knockdaemon's worker; the commands of the moment).
family() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local p t=0; for p in $(family "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
hwm_kib() { local p t=0; for p in $(family "$1"); do t=$((t + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }
rx() { in_ns "$NS_SERVER" cat "/sys/class/net/$E2E_ID-fs/statistics/rx_packets"; }
HZ=$(getconf CLK_TCK)
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- the knocks: each SEND function takes TIMEOUT_MS and prints knockperf's result ------------
send_ports() {  # PORTS_CMD TIMEOUT_MS GAP_US: the SYNs of a port knock from KNOCK_SRC
  in_ns "$NS_CLIENT" "${CRT[@]}" "$KP" knock $SERVER_IP $TARGET "$2" "$3" "$($1)" $KNOCK_SRC
}
knock_ports_kd() {  # CONF: a fresh knock (random IV) for the client, port TARGET
  "$BIN/knockclient" -conf "$1" -remote $SERVER_IP -client $KNOCK_SRC -port $TARGET -flag0 1 -test
}
knockd_ports() { echo $KNOCKD_SEQ; }
ports_small() { knock_ports_kd "$T/client-small.conf"; }
send_knockd() { send_ports knockd_ports "$1" 200; }
send_small() { send_ports ports_small "$1" 200; }
# knockdaemon's single packet: knockclient -test's first line is the datagram in hex.
spa_packet() {  # FILE
  "$BIN/knockclient" -conf "$T/spa-client.conf" -remote $SERVER_IP -client $KNOCK_SRC -port $TARGET -test |
    head -1 | perl -ne 'chomp; print pack "H*", $_' >"$1"
}
CRT=()
# BENCH_RT=all: the client too; BENCH_RT=client: the client only (with realtime = N in
# BENCH_KD_EXTRA: the daemon's own priority, as a server would run it, and a client that does
# not wait for a CPU, as one on another machine would not).
[ "${BENCH_RT:-}" != all ] && [ "${BENCH_RT:-}" != client ] || CRT=(chrt -f 10)
if [ -n "${BENCH_PIN:-}" ]; then CRT=(taskset -c 0 "${CRT[@]}"); fi
send_spa() { spa_packet "$T/spa.bin"; in_ns "$NS_CLIENT" "${CRT[@]}" "$KP" udp $SERVER_IP $TARGET "$1" $SPAPORT "$T/spa.bin" $KNOCK_SRC; }
# fwknop's packet: Debian's fwknop client makes it (--test: not sent) and saves it (-B).
fwk_packet() {  # FILE
  HOME=$T/fwhome fwknop -A tcp/$TARGET -a $KNOCK_SRC -D $SERVER_IP --use-hmac --key-base64-rijndael "$FWK_KEY" \
    --key-base64-hmac "$FWK_HMAC" --no-rc-file --no-save-args --test -B "$1.txt" >/dev/null 2>&1 ||
    fail "fwknop could not make a packet"
  tr -d '\n' <"$1.txt" >"$1"
}
send_fwk() { fwk_packet "$T/fwk.bin"; in_ns "$NS_CLIENT" "${CRT[@]}" "$KP" udp $SERVER_IP $TARGET "$1" $FWKNOPPORT "$T/fwk.bin" $KNOCK_SRC; }

# trials NAME N SEND CLOSE_CMD: latency trials; the latencies (us) go to $T/NAME.lat, in order
trials() {
  local name=$1 n=$2 send=$3 close_cmd=$4 i out fails=0
  cannot_connect "$NS_CLIENT" $SERVER_IP $TARGET ||
    fail "$name: port $TARGET is open before the trials: $(in_ns "$NS_SERVER" iptables -S INPUT)"
  : >"$T/$name.lat"
  echo "$(load)" >"$T/$name.load0"
  for ((i = 0; i < n; i++)); do
    out=$($send 2000) || true
    case $out in
      OK*) echo "${out#OK }" | cut -d' ' -f1 >>"$T/$name.lat"; echo "$out" >>"$T/$name.raw" ;;
      *) fails=$((fails + 1)) ;;
    esac
    $close_cmd
  done
  echo $fails >"$T/$name.fails"
  echo "$(load)" >"$T/$name.load1"
  log "$name: $(stats "$T/$name.lat") (median p99 n max, us); $fails not opened within 2 s; load $(cat "$T/$name.load0") -> $(cat "$T/$name.load1")"
}
lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
lines_over() { [ "$(lines_of "$1")" -gt "$2" ]; }
# share NAME N PORTS_CMD STAMPFILE: last knock packet -> template command started (us)
share() {
  local name=$1 n=$2 ports_cmd=$3 stampf=$4 i out last before
  : >"$T/$name.share"
  for ((i = 0; i < n; i++)); do
    before=$(lines_of "$stampf")
    out=$(send_ports "$ports_cmd" 0 200) || true
    last=${out#TIMEOUT }
    wait_for 5 "$name stamp" lines_over "$stampf" "$before"
    echo $((($(tail -1 "$stampf") - last) / 1000)) >>"$T/$name.share"
  done
  log "$name share: $(stats "$T/$name.share") (median p99 n max, us)"
}
# cmdcost NAME CMD CLEANUP: wall time of `sh -c CMD` (us), 20 runs
cmdcost() {
  local name=$1 cmd=$2 cleanup=$3 i
  : >"$T/$name.cost"
  for ((i = 0; i < 20; i++)); do in_ns "$NS_SERVER" "$KP" run "$cmd" >>"$T/$name.cost"; $cleanup; done
  log "$name: $(stats "$T/$name.cost") (median p99 n max, us)"
}
# The floods: FLOOD_FN SECONDS, run in the flood namespace, prints what it sent.
flood_syn_knockd() { in_ns "$NS_FLOOD" "$KP" flood $SERVER_IP 7000 7000 "$1"; }
flood_syn_span() { in_ns "$NS_FLOOD" "$KP" flood $SERVER_IP 2000 2255 "$1"; }
# Datagrams that get as far as the authentication: a real packet's length, its clear header kept
# (magic, key id, send time: 13 bytes) and the rest random; fwknop's: random base64, same length.
flood_udp_spa() { in_ns "$NS_FLOOD" "$KP" udpflood $SERVER_IP $SPAPORT "$1" "$T/spa-template.bin" 13 bin; }
flood_udp_fwk() { in_ns "$NS_FLOOD" "$KP" udpflood $SERVER_IP $FWKNOPPORT "$1" "$T/fwk-template.bin" 0 b64; }
# flood NAME PID LOGFILE FLOOD_FN SEND CLOSE_CMD: flood + real knocks; results in $T/NAME.flood.*
flood() {
  local name=$1 pid=$2 logf=$3 flood_fn=$4 send=$5 close_cmd=$6 ok=0 fast=0 i out
  local lines0 ticks0 rx0 t0 t1
  lines0=$(wc -l <"$logf"); ticks0=$(cpu_ticks "$pid"); rx0=$(rx); t0=$(date +%s.%N)
  echo "$(load)" >"$T/$name.flood.load"
  $flood_fn "$FLOOD_SECONDS" >"$T/$name.flood.sent" &
  local fpid=$!
  sleep 2
  : >"$T/$name.flood.lat"
  for ((i = 0; i < FLOOD_KNOCKS; i++)); do
    KNOCK_SRC=198.18.1.$((10 + i % 10))
    out=$($send 1000) || true
    case $out in OK*)
      ok=$((ok + 1)); out=${out#OK }; out=${out%% *}; echo "$out" >>"$T/$name.flood.lat"
      [ "$out" -le 10000 ] && fast=$((fast + 1)) ;;
    esac
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
  echo "$fast/$FLOOD_KNOCKS" >"$T/$name.flood.fast"
  hwm_kib "$pid" >"$T/$name.flood.hwm"
  echo $((lines1 - lines0)) >"$T/$name.flood.lines"
  log "$name flood: $(cat "$T/$name.flood.rate") pkt/s received, sent $(cat "$T/$name.flood.sent");" \
    "$fast/$FLOOD_KNOCKS within 10 ms, $ok/$FLOOD_KNOCKS within 1 s ($late more later); CPU $(cat "$T/$name.flood.cpu");" \
    "VmHWM $(cat "$T/$name.flood.hwm") KiB; $(cat "$T/$name.flood.lines") log lines; load $(cat "$T/$name.flood.load")"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- keys --------------------------------------------------------------------------------------
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -m 700 "$T/fwhome"
HOME=$T/fwhome fwknop --key-gen --no-rc-file -K "$T/fwknop.keys" >/dev/null
FWK_KEY=$(awk '$1 == "KEY_BASE64:" {print $2}' "$T/fwknop.keys")
FWK_HMAC=$(awk '$1 == "HMAC_KEY_BASE64:" {print $2}' "$T/fwknop.keys")
[ -n "$FWK_KEY" ] && [ -n "$FWK_HMAC" ] || fail "fwknop --key-gen wrote no keys"
"$BIN/knockclient" -keygen "$T/alice.key" 2>/dev/null

# --- reference costs ---------------------------------------------------------------------------
log "cost of the commands alone"
cmdcost ipt "$(echo "$OPEN_IPT" | sed "s/IP/$CLIENT_IP/; s/PORT/$TARGET/")" close_ipt
fwk_chain
cmdcost fwk "$(echo "$OPEN_FWK" | sed "s/IP/$CLIENT_IP/; s/PORT/$TARGET/")" close_fwk
# fwknopd's five processes per packet, as strace showed them
FWKNOPD_SEQ="/usr/sbin/iptables -t filter -L FWKNOP_INPUT -n >/dev/null; /usr/sbin/iptables -t filter -N FWKNOP_INPUT 2>/dev/null; /usr/sbin/iptables -C INPUT -t filter -j FWKNOP_INPUT; /usr/sbin/iptables -C FWKNOP_INPUT -t filter -p 6 -s $CLIENT_IP -d 0.0.0.0/0 --dport $TARGET -m comment --comment _exp_1 -j ACCEPT 2>/dev/null; /usr/sbin/iptables -A FWKNOP_INPUT -t filter -p 6 -s $CLIENT_IP -d 0.0.0.0/0 --dport $TARGET -m comment --comment _exp_1 -j ACCEPT"
cmdcost fwknopd "$FWKNOPD_SEQ" close_fwk
: >"$T/sh.spawn"
for ((i = 0; i < 20; i++)); do
  out=$(in_ns "$NS_SERVER" "$KP" run "$KP stamp $T/sh.stamp")
  echo $((($(tail -1 "$T/sh.stamp") - ${out#* }) / 1000)) >>"$T/sh.spawn"
done
log "sh -c stamp start: $(stats "$T/sh.spawn")"
in_ns "$NS_SERVER" iptables -D INPUT -j FWKNOP_INPUT
in_ns "$NS_SERVER" iptables -X FWKNOP_INPUT

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
start_knockd() {  # CONF
  : >"$T/knockd.log"
  bg_in_ns "$NS_SERVER" "$T/knockd.out" /usr/sbin/knockd -i "$BR" -c "$1"
  KNOCKD_PID=${E2E_PIDS[-1]}
  wait_for 10 "knockd ready" grep -q "starting up" "$T/knockd.log"
  sleep 0.5  # knockd logs before pcap is live; give it a moment (no better signal exists)
}
if want knockd; then
log "knockd: latency"
knockd_conf "$(echo "$OPEN_IPT" | sed 's/IP/%IP%/; s/PORT/'$TARGET'/')" >"$T/knockd.conf"
start_knockd "$T/knockd.conf"
trials knockd "$TRIALS" send_knockd close_ipt
log "knockd: flood"
flood knockd "$KNOCKD_PID" "$T/knockd.log" flood_syn_knockd send_knockd close_ipt
stop_pid "$KNOCKD_PID"
log "knockd: own share"
knockd_conf "$KP stamp $T/knockd.stamp" >"$T/knockd-stamp.conf"
start_knockd "$T/knockd-stamp.conf"
share knockd "$TRIALS" knockd_ports "$T/knockd.stamp"
stop_pid "$KNOCKD_PID"
fi

# --- fwknopd -------------------------------------------------------------------------------------
# Debian's fwknopd 2.6 with its defaults (libpcap on the bridge, PCAP_LOOP_SLEEP 100 ms, its
# FWKNOP_INPUT chain jumped to from INPUT), one access.conf stanza with the keys of the client.
mkdir -m 700 "$T/fwknopd"
cat >"$T/fwknopd/fwknopd.conf" <<CONF
PCAP_INTF                 $BR;
PCAP_FILTER               udp port $FWKNOPPORT;
ENABLE_PCAP_PROMISC       N;
FWKNOP_RUN_DIR            $T/fwknopd;
${BENCH_FWKNOPD_EXTRA:-}
CONF
cat >"$T/fwknopd/access.conf" <<CONF
SOURCE                  198.18.0.0/15
KEY_BASE64              $FWK_KEY
HMAC_KEY_BASE64         $FWK_HMAC
OPEN_PORTS              tcp/$TARGET
FW_ACCESS_TIMEOUT       30
REQUIRE_SOURCE_ADDRESS  Y
CONF
chmod 600 "$T/fwknopd"/*.conf
fwk_packet "$T/fwk-template.bin"   # the flood's model
if want fwknopd; then
log "fwknopd: latency"
bg_in_ns "$NS_SERVER" "$T/fwknopd.log" /usr/sbin/fwknopd -f -c "$T/fwknopd/fwknopd.conf" -a "$T/fwknopd/access.conf" \
  -d "$T/fwknopd/digest.cache" -p "$T/fwknopd/fwknopd.pid"
FWKNOPD_PID=${E2E_PIDS[-1]}
wait_for 10 "fwknopd ready" grep -q "main event loop" "$T/fwknopd.log"
log "fwknopd: pid $FWKNOPD_PID: $(ps -o pid,ppid,comm -p "$FWKNOPD_PID" | tail -1); $(pgrep -a fwknopd | grep -F "$T" || true)"
trials fwknopd "$TRIALS" send_fwk close_fwk
log "fwknopd: flood"
flood fwknopd "$FWKNOPD_PID" "$T/fwknopd.log" flood_udp_fwk send_fwk close_fwk
stop_pid "$FWKNOPD_PID"
log "after fwknopd: $(in_ns "$NS_SERVER" iptables -S INPUT | tr '\n' ';')"
in_ns "$NS_SERVER" iptables -S INPUT | grep -q FWKNOP_INPUT && fail "fwknopd left its jump rule"
fi

# --- knockdaemon ----------------------------------------------------------------------------------
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
kd_conf() {  # SPAN COMMAND [extra config] [template key: system (default), nft or ipset] [condition]
  kd_common "$1"
  cat <<CONF
runmode      = network
interface    = $BR
snapshotsize = 1500
controlsocket = $T/kd.sock
${BENCH_KD_EXTRA:-}
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
<actions>
  <action open>
    condition = ${5:-PORT == $TARGET && IP eq LOGIP}
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
printf '%s\n' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'proto    = spa' "spaport  = $SPAPORT" \
  "keyfile  = $T/alice.key" >"$T/spa-client.conf"
chmod 600 "$T"/*.conf
# hist NAME: the daemon's own histogram (knockctl metrics: from the packet's capture time stamp
# to the rules done, i.e. the nft element added or the command started) of the knocks so far.
hist() {
  "$BIN/knockctl" -socket "$T/kd.sock" metrics >"$T/$1.metrics" || fail "knockctl metrics failed"
  awk -F'[{}" ]+' '/^portknock_knock_to_action_seconds_bucket/ {le[++n]=$3; c[n]=$NF}
    END { total=c[n]; split("0.5 0.99 1", q, " ")
      for (k = 1; k <= 3; k++) { for (i = 1; i <= n && c[i] < q[k]*total; i++) ; out = out (k>1 ? " / " : "") (le[i]=="+Inf" ? "> 10 s" : "<= " le[i]*1000 " ms") }
      print out " (n=" total ")" }' "$T/$1.metrics" >"$T/$1.hist"
  log "$1 daemon histogram, median / p99 / max: $(cat "$T/$1.hist")"
}
start_kd() {  # CONF LOG
  "$BIN/knockdaemon" -check -conf "$1" >/dev/null || fail "config check failed: $1"
  bg_in_ns "$NS_SERVER" "$2" "${RT[@]}" "$BIN/knockdaemon" -conf "$1"
  KD_PID=${E2E_PIDS[-1]}
  wait_for 10 "knockdaemon ready" grep -q "watching" "$2"
}

if want kd_ipt; then
log "knockdaemon (Blowfish, 256-port span, iptables): latency"
kd_conf $SPAN_SMALL "$OPEN_IPT" >"$T/kd-ipt.conf"; chmod 600 "$T/kd-ipt.conf"
start_kd "$T/kd-ipt.conf" "$T/kd-ipt.log"
trials kd_ipt "$TRIALS" send_small close_ipt
hist kd_ipt
log "knockdaemon: flood"
flood kd_ipt "$KD_PID" "$T/kd-ipt.log" flood_syn_span send_small close_ipt
stop_pid "$KD_PID"
log "knockdaemon: own share"
kd_conf $SPAN_SMALL "$KP stamp $T/kd.stamp" >"$T/kd-stamp.conf"; chmod 600 "$T/kd-stamp.conf"
start_kd "$T/kd-stamp.conf" "$T/kd-stamp.log"
share kd "$TRIALS" ports_small "$T/kd.stamp"
stop_pid "$KD_PID"

fi
if want kd_fwk; then
log "knockdaemon, fwknop's packet (<fwknop alice>, fwknopd's iptables rule): latency"
fwk_chain
kd_conf $SPAN_SMALL "$OPEN_FWK" "fwknopport   = $FWKNOPPORT
fwknopwindow = 120
<fwknop alice>
  key_base64        = $FWK_KEY
  hmac_key_base64   = $FWK_HMAC
  source            = 198.18.0.0/15
  open_ports        = tcp/$TARGET
  fw_access_timeout = 30
</fwknop>" >"$T/kd-fwk.conf"; chmod 600 "$T/kd-fwk.conf"
start_kd "$T/kd-fwk.conf" "$T/kd-fwk.log"
trials kd_fwk "$TRIALS" send_fwk close_fwk
hist kd_fwk
log "knockdaemon, fwknop's packet: flood"
flood kd_fwk "$KD_PID" "$T/kd-fwk.log" flood_udp_fwk send_fwk close_fwk
stop_pid "$KD_PID"

fi
if want kd_spa; then
log "knockdaemon, single packet (nft set element with a kernel timeout, in process): latency"
use_nft
cmdcost nft "/usr/sbin/nft $(echo "$OPEN_NFT" | sed "s/IP/$CLIENT_IP/; s/PORT/$TARGET/")" close_nft
kd_conf $SPAN_SMALL "$OPEN_NFT" "proto     = spa
spaport   = $SPAPORT
spawindow = 60
<client alice>
  keyfile = $T/alice.key
</client>" nft "(PORT == $TARGET || PORT == $SSH_CLOSED) && IP eq LOGIP" >"$T/kd-spa.conf"; chmod 600 "$T/kd-spa.conf"
start_kd "$T/kd-spa.conf" "$T/kd-spa.log"
spa_packet "$T/spa-template.bin"
# BENCH_STRACE=FILE: the monitor's system calls during the trials (strace -ttt -T), for a look at the tail.
if [ -n "${BENCH_STRACE:-}" ]; then
  strace -ttt -T -s 64 -p "$KD_PID" -o "$BENCH_STRACE" & STRACE_PID=$!; sleep 1
fi
trials kd_spa "$TRIALS" send_spa close_nft
hist kd_spa
if [ -n "${BENCH_STRACE:-}" ]; then kill "$STRACE_PID"; wait "$STRACE_PID" || true; fi
log "knockdaemon, single packet: flood"
flood kd_spa "$KD_PID" "$T/kd-spa.log" flood_udp_spa send_spa close_nft
fi

# --- ssh through the closed door (knockdaemon's single packet, nft) ------------------------------
# Debian's sshd in the server namespace on SSH_CLOSED (dropped until a knock) and SSH_OPEN;
# `ssh -o ProxyCommand='knockclient -proxy %h %p' host true` through the closed door (closed
# again before each run) against the same ssh to the open port without the knock.
if want ssh; then
log "ssh: closed door (knockclient -proxy) vs open port"
made_run_sshd=
if [ ! -d /run/sshd ]; then mkdir -m 0755 /run/sshd; made_run_sshd=1; fi
ssh-keygen -q -t ed25519 -N '' -C pk-host -f "$T/host_key"
ssh-keygen -q -t ed25519 -N '' -C pk-user -f "$T/user_key"
cp "$T/user_key.pub" "$T/authorized_keys"
printf '[%s]:%s %s\n[%s]:%s %s\n' $SERVER_IP $SSH_CLOSED "$(cut -d' ' -f1,2 "$T/host_key.pub")" \
  $SERVER_IP $SSH_OPEN "$(cut -d' ' -f1,2 "$T/host_key.pub")" >"$T/known_hosts"
cat >"$T/sshd_config" <<CONF
Port $SSH_CLOSED
Port $SSH_OPEN
ListenAddress $SERVER_IP
HostKey $T/host_key
AuthorizedKeysFile $T/authorized_keys
PidFile $T/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
CONF
bg_in_ns "$NS_SERVER" "$T/sshd.log" /usr/sbin/sshd -D -e -f "$T/sshd_config"
wait_for 5 "sshd listening" in_ns "$NS_SERVER" bash -c "ss -ltn | grep -q ':$SSH_CLOSED ' && ss -ltn | grep -q ':$SSH_OPEN '"
SSH_OPTS=(-F /dev/null -i "$T/user_key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes
  -o UserKnownHostsFile="$T/known_hosts" -o LogLevel=ERROR -o ConnectTimeout=10)
ssh_ms() {  # ssh ARGS...: the milliseconds of `ssh ARGS... true` from the client namespace (us)
  local t0 t1
  t0=$(date +%s%N)
  in_ns "$NS_CLIENT" ssh "${SSH_OPTS[@]}" "$@" true >/dev/null 2>>"$T/ssh.err" || fail "ssh $* failed: $(tail -3 "$T/ssh.err")"
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000))
}
close_ssh() { in_ns "$NS_SERVER" nft delete element inet pk allowed "{ $CLIENT_IP . $SSH_CLOSED }" 2>/dev/null || true; }
cannot_connect "$NS_CLIENT" $SERVER_IP $SSH_CLOSED || fail "the ssh door is open before any knock"
: >"$T/ssh_door.lat"; : >"$T/ssh_open.lat"; : >"$T/ssh_popen.lat"
PROXY="$BIN/knockclient -conf $T/spa-client.conf -proxy %h %p"
echo "$(load)" >"$T/ssh.load0"
for ((i = 0; i < SSH_RUNS; i++)); do
  close_ssh
  ssh_ms -o ProxyCommand="$PROXY" -p $SSH_CLOSED root@$SERVER_IP >>"$T/ssh_door.lat"
  ssh_ms -p $SSH_OPEN root@$SERVER_IP >>"$T/ssh_open.lat"
  ssh_ms -o ProxyCommand="$PROXY" -p $SSH_OPEN root@$SERVER_IP >>"$T/ssh_popen.lat"  # knocks too; the port is open
done
close_ssh
paste "$T/ssh_door.lat" "$T/ssh_open.lat" | awk '{print $1 - $2}' >"$T/ssh_diff.lat"
paste "$T/ssh_door.lat" "$T/ssh_popen.lat" | awk '{print $1 - $2}' >"$T/ssh_pdiff.lat"
echo "$(load)" >"$T/ssh.load1"
log "ssh: door $(stats "$T/ssh_door.lat"), open $(stats "$T/ssh_open.lat"), door - open (paired) $(stats "$T/ssh_diff.lat"), proxy to the open port $(stats "$T/ssh_popen.lat"), door - that (paired) $(stats "$T/ssh_pdiff.lat") (median p99 n max, us); load $(cat "$T/ssh.load0") -> $(cat "$T/ssh.load1")"
stop_pid "${E2E_PIDS[-1]}"
[ -z "$made_run_sshd" ] || rmdir /run/sshd 2>/dev/null || true
stop_pid "$KD_PID"
fi

# --- knockdaemon's single packet for iptables: an ipset element, in process ------------------------
if want kd_ipset; then
log "knockdaemon, single packet (ipset element with a kernel timeout, in process; iptables -m set): latency"
use_ipset
cmdcost ipset "/usr/sbin/ipset -exist add pk $CLIENT_IP,tcp:$TARGET timeout 30" close_ipset
kd_conf $SPAN_SMALL "$OPEN_IPSET" "proto     = spa
spaport   = $SPAPORT
spawindow = 60
<client alice>
  keyfile = $T/alice.key
</client>" ipset >"$T/kd-ipset.conf"; chmod 600 "$T/kd-ipset.conf"
start_kd "$T/kd-ipset.conf" "$T/kd-ipset.log"
spa_packet "$T/spa-template.bin"
trials kd_ipset "$TRIALS" send_spa close_ipset
hist kd_ipset
log "knockdaemon, single packet with ipset: flood"
flood kd_ipset "$KD_PID" "$T/kd-ipset.log" flood_udp_spa send_spa close_ipset
stop_pid "$KD_PID"
fi

# --- throughput on one core -------------------------------------------------------------------
pcap_pps=- pcap_total=- found=- file_lps=- file_total=- file_cpu=0
if want throughput; then
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
fi

# --- verified and refused datagrams per second, one core (Google Benchmark) ------------------------
gb_spa=- gb_fwk=-
if want throughput && [ -x "$BIN/bench/spa_bench" ] && [ -x "$BIN/bench/fwknop_bench" ]; then
  log "throughput: refused datagrams (Google Benchmark, taskset -c 0)"
  gb() {  # BINARY FILTER: items per second of the one benchmark FILTER names
    taskset -c 0 "$1" --benchmark_filter="^$2\$" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
      --benchmark_format=csv 2>/dev/null | awk -F, -v f="$2_median" '$1 == "\"" f "\"" {printf "%d", $(NF-3)}'
  }
  gb_spa=$(gb "$BIN/bench/spa_bench" "BM_RefusedTag/1/0")
  gb_fwk=$(gb "$BIN/bench/fwknop_bench" "BM_FwknopRefusedRandom/1/1")
  log "refused per second on one core: single packet (tag fails) $gb_spa; fwknop (HMAC fails) $gb_fwk"
fi

# --- the table ----------------------------------------------------------------------------------
row() { printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
lat() { read -r m p n x <<<"$(stats "$T/$1.lat")"; echo "$(ms "$m") / $(ms "$p") / $(ms "$x") (n=$n, $(cat "$T/$1.fails") missed)"; }
shr() { read -r m p n x <<<"$(stats "$T/$1.share")"; echo "$(ms "$m") / $(ms "$p")"; }
det() { awk -v a="$(stats "$T/$1.share" | cut -d' ' -f1)" -v b="$(stats "$T/sh.spawn" | cut -d' ' -f1)" \
  'BEGIN { printf "%.2f ms", (a-b)/1000 }'; }
cost() { read -r m p n x <<<"$(stats "$T/$1")"; ms "$m"; }
fl() { cat "$T/$1.flood.$2"; }
flat() { read -r m p n x <<<"$(stats "$T/$1.flood.lat")"; echo "$(ms "$m")"; }
med() { stats "$T/$1" | cut -d' ' -f1; }
loads() { echo "$(cat "$T/$1.load0") → $(cat "$T/$1.load1")"; }
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  awk -v k="$(med knockd.lat)" -v f="$(med fwknopd.lat)" -v a="$(med kd_ipt.lat)" -v s="$(med kd_spa.lat)" -v w="$(med kd_fwk.lat)" 'BEGIN {
    printf "**Knock to open (medians): knockdaemon'"'"'s single packet with an in-process nft element %.2f ms: %.0fx faster than fwknopd (%.2f ms) and %.0fx faster than knockd (%.2f ms). ", s/1000, f/s, f/1000, k/s, k/1000
    printf "With the same iptables commands: fwknop'"'"'s own packet %.1fx faster through knockdaemon than through fwknopd (%.2f ms); the original port knock %.1fx faster than knockd (%.2f ms).**\n", f/w, w/1000, k/a, a/1000 }'
  if [ -s "$T/kd_ipset.lat" ]; then
    awk -v i="$(med kd_ipset.lat)" -v s="$(med kd_spa.lat)" 'BEGIN {
      printf "**For iptables: knockdaemon'"'"'s single packet with an in-process ipset element (iptables -m set) %.2f ms median", i/1000
      if (s > 0) printf " (with the nft element: %.2f ms)", s/1000
      print ".**" }'
  fi
  awk -v d="$(med ssh_door.lat)" -v o="$(med ssh_open.lat)" -v x="$(med ssh_diff.lat)" -v p="$(med ssh_popen.lat)" -v y="$(med ssh_pdiff.lat)" 'BEGIN {
    printf "**ssh through the closed door (ProxyCommand knockclient -proxy): median %.1f ms vs %.1f ms to an open port (paired differences: median %+.1f ms), %.1f ms with the same ProxyCommand to the open port (%+.1f ms).**\n", d/1000, o/1000, x/1000, p/1000, y/1000 }'
  echo
  row "measure" "knockd 0.8 (3-port sequence, iptables)" "fwknopd 2.6 (fwknop client packet, its FWKNOP_INPUT chain)" \
    "knockdaemon, the original's port knock (Blowfish, iv, 256-port span: $(ports_small | tr ',' '\n' | wc -l) SYNs, iptables)" \
    "knockdaemon, single packet (XChaCha20-Poly1305 datagram, nft set element with kernel timeout, in process)" \
    "knockdaemon, fwknop's packet (<fwknop NAME>, fwknopd's iptables rule)" \
    "knockdaemon, single packet (ipset element with kernel timeout, in process; iptables -m set)"
  row "---" "---" "---" "---" "---" "---" "---"
  row "knock to open, median / p99 / max ($TRIALS trials)" "$(lat knockd)" "$(lat fwknopd)" "$(lat kd_ipt)" "$(lat kd_spa)" "$(lat kd_fwk)" "$(lat kd_ipset)"
  row "load average during the trials (1, 5, 15 min: start → end)" "$(loads knockd)" "$(loads fwknopd)" "$(loads kd_ipt)" "$(loads kd_spa)" "$(loads kd_fwk)" "$(loads kd_ipset)"
  row "own share: the daemon's histogram (knockctl metrics), capture time stamp to nft element added or command started: median / p99 / max, as its bucket bounds" "-" "-" "$(cat "$T/kd_ipt.hist" 2>/dev/null)" "$(cat "$T/kd_spa.hist" 2>/dev/null)" "$(cat "$T/kd_fwk.hist" 2>/dev/null)" "$(cat "$T/kd_ipset.hist" 2>/dev/null)"
  row "own share: last packet to command started (a stamp command), median / p99" "$(shr knockd) (through sh -c)" "-" "$(shr kd) (started directly)" "-" "-" "-"
  row "the firewall command alone as a process (sh -c, median of 20)" "$(cost ipt.cost)" "$(cost fwknopd.cost) (its 5 iptables processes)" "$(cost ipt.cost)" "$(cost nft.cost) (as an nft process; in process: none)" "$(cost fwk.cost)" "$(cost ipset.cost) (as an ipset process; in process: none)"
  row "flood: what, received (pkt/s, sources 198.18.4.0-198.19.255.255)" "SYNs to port 7000: $(fl knockd rate)" "random base64 datagrams of a packet's length: $(fl fwknopd rate)" "SYNs into the span: $(fl kd_ipt rate)" "datagrams with a valid header, random nonce, ciphertext and tag: $(fl kd_spa rate)" "random base64 datagrams of a packet's length: $(fl kd_fwk rate)" "as the single packet's: $(fl kd_ipset rate)"
  row "flood: real knocks open within 10 ms" "$(fl knockd fast)" "$(fl fwknopd fast)" "$(fl kd_ipt fast)" "$(fl kd_spa fast)" "$(fl kd_fwk fast)" "$(fl kd_ipset fast)"
  row "flood: real knocks open within 1 s (median latency)" "$(fl knockd ok) ($(flat knockd))" "$(fl fwknopd ok) ($(flat fwknopd))" "$(fl kd_ipt ok) ($(flat kd_ipt))" "$(fl kd_spa ok) ($(flat kd_spa))" "$(fl kd_fwk ok) ($(flat kd_fwk))" "$(fl kd_ipset ok) ($(flat kd_ipset))"
  row "flood: daemon CPU (utime+stime / wall, all its processes)" "$(fl knockd cpu)" "$(fl fwknopd cpu)" "$(fl kd_ipt cpu)" "$(fl kd_spa cpu)" "$(fl kd_fwk cpu)" "$(fl kd_ipset cpu)"
  row "flood: peak RSS (VmHWM, all its processes)" "$(fl knockd hwm) KiB" "$(fl fwknopd hwm) KiB" "$(fl kd_ipt hwm) KiB" "$(fl kd_spa hwm) KiB" "$(fl kd_fwk hwm) KiB" "$(fl kd_ipset hwm) KiB"
  row "flood: log lines written during the flood" "$(fl knockd lines)" "$(fl fwknopd lines)" "$(fl kd_ipt lines)" "$(fl kd_spa lines)" "$(fl kd_fwk lines)" "$(fl kd_ipset lines)"
  row "flood: load average at its start" "$(fl knockd load)" "$(fl fwknopd load)" "$(fl kd_ipt load)" "$(fl kd_spa load)" "$(fl kd_fwk load)" "$(fl kd_ipset load)"
  row "ssh -o ProxyCommand='knockclient -proxy %h %p' host true through the closed door, median / max ($SSH_RUNS runs)" "-" "-" "-" \
    "$(read -r m p n x <<<"$(stats "$T/ssh_door.lat")"; echo "$(ms "$m") / $(ms "$x"); the same ssh to an open port: $(ms "$(med ssh_open.lat)") without ProxyCommand, $(ms "$(med ssh_popen.lat)") with it; medians of the paired differences (run by run): door − open $(ms "$(med ssh_diff.lat)"), door − open with ProxyCommand $(ms "$(med ssh_pdiff.lat)"); load $(loads ssh)")" "-" "-"
  row "refused datagrams per second, one core (Google Benchmark, taskset -c 0, median of 3)" "-" "-" "-" \
    "$gb_spa (spa_bench BM_RefusedTag/1/0: right length, known key id, the tag fails)" "$gb_fwk (fwknop_bench BM_FwknopRefusedRandom/1/1: canonical base64, the HMAC fails)" "as the single packet's"
  row "pcap file, one core (taskset -c 0): packets/s" "n/a (no file input)" "-" "$pcap_pps ($pcap_total packets, $found/20 knocks found)" "-" "-" "-"
  row "file mode, one core: log lines/s" "n/a (no file mode)" "n/a" "$file_lps ($file_total lines, CPU $((file_cpu / 1000)) ms)" "-" "-" "-"
  echo
  echo "sh -c start alone (spawn to a stamp command running): $(cost sh.spawn) median."
} | tee "$BIN/bench-result.md"
# The raw figures (latencies in us, in trial order), for a closer look.
rm -rf "$BIN/bench-raw"; mkdir -p "$BIN/bench-raw"
cp "$T"/*.lat "$T"/*.raw "$T"/*.share "$T"/*.cost "$T"/*.metrics "$BIN/bench-raw/" 2>/dev/null || true
