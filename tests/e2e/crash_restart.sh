#!/usr/bin/env bash
# kill -9 while knocks stream in: after a restart the state holds every change the daemon had
# reported as done, the cache is readable, and every delayed close of an open that ran still
# comes, on time or at once if overdue. File mode: knockclient -logfile writes the knocks.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkcrash.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

knock_conf crash-key >"$tmp/client.conf"
{ cat "$tmp/client.conf"; cat <<CONF
runmode      = file
logfile      = $tmp/firewall.log
fileinterval = 0.1
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
statecache   = $tmp/state.cache
usecache     = yes
<actions>
  <action open>
    condition = PORT == 22
    template  = count
    template  = open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 3s
    use       = yes
  </action>
</actions>
<template count>
  state = state(IP,visits,num)++
</template>
<template open>
  system = "echo open FLAG0 >> $tmp/record"
</template>
<template close>
  system = "echo close FLAG0 >> $tmp/record"
</template>
CONF
} >"$tmp/daemon.conf"
chmod 600 "$tmp"/*.conf
: >"$tmp/firewall.log"; : >"$tmp/record"

start() {
  "$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" >>"$tmp/daemon.out" 2>>"$tmp/daemon.log" &
  pid=$!
  wait_for 10 "daemon ready" grep -q "watching log file" "$tmp/daemon.log"
}
knock() {
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$1" -logfile "$tmp/firewall.log" -quiet
}

start
# Stream knocks in the background; kill -9 the daemon as soon as 5 opens are recorded, while
# the stream goes on.
( for i in $(seq 1 40); do knock "$i"; done ) &
streamer=$!
wait_for 20 "5 opens" bash -c "[ \$(grep -c '^open' '$tmp/record') -ge 5 ]"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
wait "$streamer"
grep -q '^portknock-state' "$tmp/state.cache" || fail "cache missing or unreadable after kill -9"

# Restart: the state must count at least every open that ran (state is saved before commands
# run), and the pending closes come back.
: >"$tmp/daemon.log"
start
opens_before=$(grep -c '^open' "$tmp/record")  # children started before the kill are done by now
grep -q "state cache $tmp/state.cache" "$tmp/daemon.log" || fail "cache not read: $(cat "$tmp/daemon.log")"
num=$(awk '$1=="S" && $4=="198.18.0.2" && $5=="visits" && $6=="num" {sub(/^i/,"",$7); print $7}' "$tmp/state.cache")
[ -n "$num" ] || fail "no visit counter in the cache: $(cat "$tmp/state.cache")"
[ "$num" -ge "$opens_before" ] || fail "state lost changes: counter $num < $opens_before opens that ran"
wait_for 20 "a close for every open" bash -c "[ \$(grep -c '^close' '$tmp/record') -ge $opens_before ]"
for i in $(seq 1 "$opens_before"); do
  grep -qx "close $i" "$tmp/record" || fail "the close of knock $i was lost: $(paste -sd' ' "$tmp/record")"
done

# And the restarted daemon keeps working.
knock 99
wait_for 10 "open after restart" grep -qx "open 99" "$tmp/record"
kill -TERM "$pid"; wait "$pid" || fail "SIGTERM exit status $?"; pid=
echo "PASS: $opens_before opens before kill -9, counter $num after restart, every close delivered"
