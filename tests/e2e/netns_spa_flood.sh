#!/usr/bin/env bash
# A flood of forged single-packet knocks: hundreds of thousands of random datagrams at the
# single-packet port (spaport), each carrying the magic byte and a real client's key id so that
# every one costs the daemon a full tag check, sent from spoofed sources as fast as the machine
# goes, while the real client knocks with one datagram, three times. Each knock must open port 22
# (iptables) within a second or two; the daemon's summaries count the refusals by reason (tag);
# its peak RSS stays under the documented bound; its log holds a few lines, not one per datagram.
# Under the sanitizer build the flood is smaller and paced, and the RSS bound is not checked.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$(cd "${BIN_DIR:?}" && pwd)
source "$here/netns.bash"

FLOOD=400000
SANITIZED=0
RATE_ARGS=()
if nm -C "$BIN/knockdaemon" 2>/dev/null | grep -c __asan_init >/dev/null; then
  SANITIZED=1
  FLOOD=${PORTKNOCK_SANITIZED_FLOOD:-100000}
  RATE_ARGS=(--rate 20000)
fi
KNOCKS=3
CLOSE_AFTER=1

netns_setup
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport 62202 -j DROP
in_ns "$NS_SERVER" sysctl -qw net.ipv4.conf.all.rp_filter=1 "net.ipv4.conf.$E2E_ID-s2.rp_filter=1"

"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
knock        = IP,PORT,FLAG0
portspan     = 2000-2255
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
summaryinterval = 5
<actions>
  <action open>
    condition = PORT == 22 && CLIENTNAME eq 'alice'
    template  = fw_open
  </action>
  <action close>
    condition = PORT == 22 && CLIENTNAME eq 'alice'
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -w -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -w -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
CONF
cat >"$E2E_TMP/knockclient.conf" <<CONF
knock    = IP,PORT,FLAG0
portspan = 2000-2255
proto    = spa
keyfile  = $E2E_TMP/alice.key
CONF
chmod 600 "$E2E_TMP"/*.conf
# The magic byte and alice's key id: the first 5 bytes of any of her messages.
prefix=$("$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -client $CLIENT_IP -port 22 -test |
  head -1 | cut -c1-10)
bytes=$(( $("$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -client $CLIENT_IP -port 22 -test |
  head -1 | tr -d '\n' | wc -c) / 2 ))

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
started=$SECONDS
wait_for 10 "daemon ready" grep -q "watching" "$LOG"
# The start lines (configuration, warnings, sources, worker, control socket) are not the flood's.
wait_for 10 "worker ready" grep -q "worker [0-9]* started" "$LOG"
sleep 0.2
start_lines=$(wc -l <"$LOG")
bound=$(rss_bound_kib "$LOG")
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before any knock"

FLOOD_OUT=$E2E_TMP/flood.out
bg_in_ns "$NS_OTHER" "$FLOOD_OUT" "$BIN/synflood" --dst $SERVER_IP_OTHER --ports 62202 --udp "$bytes" \
  --prefix "$prefix" --count $((FLOOD * 50)) --max-seconds 240 --progress 0.2 "${RATE_ARGS[@]}"
FLOOD_PID=${E2E_PIDS[-1]}
sent_so_far() { sed -n 's/^progress \([0-9]*\)$/\1/p' "$FLOOD_OUT" | tail -1; }
flood_past() { local n; n=$(sent_so_far); [ -n "$n" ] && [ "$n" -ge "$1" ]; }
wait_for 20 "the flood under way" flood_past 10000

wait_for_quiet() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.05; done
}
RESENT=0
for k in $(seq 1 $KNOCKS); do
  kill -0 "$FLOOD_PID" 2>/dev/null || fail "the flood ended before knock $k: $(tail -2 "$FLOOD_OUT")"
  t0=$(date +%s%N)
  in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 "$k"
  # One datagram: the kernel may drop it from a full capture buffer; one resend is allowed.
  if ! wait_for_quiet 3 can_connect "$NS_CLIENT" $SERVER_IP 22; then
    RESENT=$((RESENT + 1)); say "NOTE: knock $k lost under the flood; sending it again"
    in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 "$k"
    wait_for 10 "knock $k (sent twice) opens port 22 during the flood" can_connect "$NS_CLIENT" $SERVER_IP 22
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  grep -q "client alice, datagram): IP=$CLIENT_IP PORT=22 FLAG0=$k" "$LOG" || fail "knock $k not logged"
  wait_for $((CLOSE_AFTER + 10)) "port 22 closed again after knock $k" cannot_connect "$NS_CLIENT" $SERVER_IP 22
  say "-- knock $k opened port 22 in ${ms} ms (client's view, connect included) during the flood ($(sent_so_far) datagrams sent so far)"
done
kill -0 "$FLOOD_PID" 2>/dev/null || fail "the flood ended before the last knock was checked"
[ "$RESENT" -le 1 ] || fail "$RESENT of $KNOCKS knocks were lost under the flood"
wait_for 230 "$FLOOD forged datagrams sent" flood_past "$FLOOD"
kill -TERM "$FLOOD_PID"
wait "$FLOOD_PID" || true
sent=$(sed -n 's/^sent \([0-9]*\) packets.*/\1/p' "$FLOOD_OUT")
[ -n "$sent" ] && [ "$sent" -ge "$FLOOD" ] || fail "the flood sent ${sent:-nothing}: $(tail -2 "$FLOOD_OUT")"

# The daemon refused them at the tag, and said so in its summaries (allow for capture drops).
refused_tag() { sed -n "s/.*single-packet knocks: .*refused:.* authentication failed \([0-9]*\).*/\1/p" "$LOG" | tail -1; }
enough() { local n; n=$(refused_tag); [ -n "$n" ] && [ "$n" -ge $((FLOOD / 2)) ]; }
wait_for 30 "summary lines counting the refused datagrams (last: $(grep "single-packet" "$LOG" | tail -1))" enough

hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status")
cpu_ticks=$(awk '{print $14 + $15}' "/proc/$DAEMON_PID/stat")
if [ "$SANITIZED" = 0 ]; then
  [ "$hwm_kib" -le "$bound" ] || fail "peak RSS ${hwm_kib} KiB over the bound ${bound} KiB"
fi
kill -TERM "$DAEMON_PID"
status=0; wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "daemon exited with $status; log: $(tail -5 "$LOG")"
# What the flood added: after the start lines, besides the knocks' own lines, only the summaries
# (two lines each: tracker and capture, or the single-packet line) and stopping, stopped.
lines=$(($(wc -l <"$LOG") - start_lines))
other=$(tail -n +$((start_lines + 1)) "$LOG" | grep -vc "knock from\|running action\|action .* exited" || true)
[ "$other" -le $((2 + 2 * ((SECONDS - started) / 5 + 1))) ] || fail "the flood added $other log lines: $(grep -v "knock from" "$LOG" | head -20)"
say "PASS: $KNOCKS single-packet knocks opened port 22 during $(sed -n 's/^sent //p' "$FLOOD_OUT"); refused at the tag: $(refused_tag); daemon CPU $((cpu_ticks / $(getconf CLK_TCK))) s; peak RSS ${hwm_kib} KiB (bound ${bound} KiB$([ "$SANITIZED" = 0 ] || echo ', not checked under ASan')); $lines log lines ($other not about the knocks); $RESENT knocks resent"
