#!/usr/bin/env bash
# knockctl (doc/knockctl.1) against a daemon in namespaces, with privilege separation:
#  - after a single-packet knock, `list` (text and JSON) shows the open door: the client's
#    address, its client name, the action, and a close due 60 s after the knock;
#  - `close ADDRESS` runs that close now: the port is shut at once, the table is empty, and the
#    close ran exactly once (it is not run again at its time);
#  - `reload` with a broken configuration answers the FILE:LINE error, exits 1, and the daemon
#    keeps running and opening; a good reload answers "reloaded";
#  - `status` and `metrics` (and -textfile) carry the counters; another user is refused.
E2E_ID=pkctl$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
SPAPORT=62202
netns_setup
start_service 22
in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport $SPAPORT -j DROP
umask 077
"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
SOCK=$E2E_TMP/run/ctl.sock
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode       = network
interface     = any
knock         = IP,PORT,FLAG0,CHECKSUM
portspan      = 2000-2255
spaport       = $SPAPORT
controlsocket = $SOCK
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<actions>
  <action open>
    condition = PORT == 22
    template  = fw_open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22
    template  = fw_close
    delay     = 60s
    use       = yes
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -I INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -D INPUT -p tcp -s IP/32 --dport PORT --syn -j ACCEPT"
</template>
CONF
printf '%s\n' "remote   = $SERVER_IP" 'port     = 22' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' \
  'proto    = spa' "spaport  = $SPAPORT" "keyfile  = $E2E_TMP/alice.key" >"$E2E_TMP/alice.conf"
LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "worker started" grep -q "worker [0-9]* started" "$LOG"
wait_for 10 "control socket" test -S "$SOCK"
ctl() { "$BIN/knockctl" -socket "$SOCK" "$@"; }
knock() { in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -quiet; }
[ "$(stat -c '%a %u' "$SOCK")" = "600 0" ] || fail "control socket mode/owner: $(stat -c '%a %u' "$SOCK")"

say "-- list shows the open door"
[ "$(ctl list | wc -l)" -eq 1 ] || fail "list before any knock: $(ctl list)"
before=$(date +%s)
knock
wait_for 5 "port 22 open" can_connect "$NS_CLIENT" $SERVER_IP 22
text=$(ctl list)
grep -q "^$CLIENT_IP  *alice .*action close, template fw_close: /sbin/iptables -D INPUT -p tcp -s $CLIENT_IP/32" <<<"$text" \
  || fail "list text: $text"
json=$(ctl -json list)
python3 - "$json" "$CLIENT_IP" "$before" <<'PY' || fail "list JSON: $json"
import json, sys
doors = json.loads(sys.argv[1])
assert len(doors) == 1, doors
d = doors[0]
assert d["address"] == sys.argv[2] and d["client"] == "alice", d
assert d["origin"] == "action close, template fw_close", d
assert int(sys.argv[3]) - 1 <= d["knocked"] <= int(sys.argv[3]) + 10, d
assert 59 <= d["due"] - d["knocked"] <= 61, d   # the close: 60 s after the knock
PY
status=$(ctl -json status)
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["pending"]==1 and s["knocks_accepted"]==1 and s["privsep"] and s["worker_pid"]>0, s' "$status" \
  || fail "status JSON: $status"
ctl status | grep -q "^pending: *1 responses" || fail "status text: $(ctl status)"

say "-- close ADDRESS shuts the door now, once"
answer=$(ctl close $CLIENT_IP)
[ "$answer" = "1 pending response for $CLIENT_IP run now" ] || fail "close answer: $answer"
wait_for 5 "port 22 closed by knockctl close" cannot_connect "$NS_CLIENT" $SERVER_IP 22
wait_for 5 "the pending table empty" bash -c "[ \$('$BIN/knockctl' -socket '$SOCK' list | wc -l) -eq 1 ]"
[ "$(ctl close $CLIENT_IP)" = "0 pending responses for $CLIENT_IP run now" ] || fail "a second close ran something"
in_ns "$NS_SERVER" iptables -S INPUT | grep -q -- "-s $CLIENT_IP/32" && fail "the rule is still there"
[ "$(grep -c 'running action close' "$LOG")" -eq 1 ] || fail "the close ran $(grep -c 'running action close' "$LOG") times"
ctl close 198.18.99.1.5 2>"$E2E_TMP/err" && fail "a bad address was accepted"
grep -q "neither an IP address nor all" "$E2E_TMP/err" || fail "bad address error: $(cat "$E2E_TMP/err")"

say "-- reload: a broken config is refused with FILE:LINE, the daemon goes on"
cp "$E2E_TMP/knockdaemon.conf" "$E2E_TMP/good.conf"
echo "spawindow = forever" >>"$E2E_TMP/knockdaemon.conf"
lines=$(wc -l <"$E2E_TMP/knockdaemon.conf")
status=0
ctl reload >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
[ "$status" -eq 1 ] || fail "knockctl reload of a broken config exited $status"
grep -q "knockdaemon.conf:$lines:" "$E2E_TMP/err" || fail "reload error without FILE:LINE: $(cat "$E2E_TMP/err")"
kill -0 "$DAEMON_PID" || fail "daemon died"
ctl -json status | grep -q '"last_reload": ".*failed' || fail "status does not show the failed reload"
knock
wait_for 5 "a knock opens after the failed reload" can_connect "$NS_CLIENT" $SERVER_IP 22
cp "$E2E_TMP/good.conf" "$E2E_TMP/knockdaemon.conf"
[ "$(ctl reload)" = "reloaded $E2E_TMP/knockdaemon.conf" ] || fail "good reload: $(ctl reload)"
ctl close all >/dev/null
wait_for 5 "port 22 closed by close all" cannot_connect "$NS_CLIENT" $SERVER_IP 22

say "-- metrics"
metrics=$(ctl metrics)
grep -q '^portknock_knocks_accepted_total{kind="spa"} 2$' <<<"$metrics" || fail "metrics: $metrics"
grep -q '^portknock_pending_responses 0$' <<<"$metrics" || fail "metrics pending: $metrics"
grep -q '^portknock_commands_total{result="ok"} 4$' <<<"$metrics" || fail "metrics commands: $(grep commands <<<"$metrics")"
grep -q '^portknock_knock_to_action_seconds_count 2$' <<<"$metrics" || fail "metrics histogram: $metrics"
packets=$(sed -n 's/^portknock_packets_total //p' <<<"$metrics")
[ "${packets:-0}" -ge 2 ] || fail "the worker's packet count did not reach the monitor: $packets"
ctl metrics -textfile "$E2E_TMP/portknock.prom"
grep -q "^# TYPE portknock_knock_to_action_seconds histogram" "$E2E_TMP/portknock.prom" || fail "textfile"

say "-- another user is refused"
chmod 755 "$E2E_TMP" "$E2E_TMP/run"
if setpriv --reuid=nobody --regid=nogroup --clear-groups "$BIN/knockctl" -socket "$SOCK" list 2>"$E2E_TMP/err"; then
  fail "nobody could use the control socket"
fi
grep -qi "permission denied" "$E2E_TMP/err" || fail "refusal: $(cat "$E2E_TMP/err")"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exit status $?"
[ ! -e "$SOCK" ] || fail "the socket was left behind"
say PASS
