#!/usr/bin/env bash
# Closes that fell due together and queue behind a slow one are never lost (issue 11): three
# knocks, three closes due at once, each `sleep`s; while the first runs, the daemon gets SIGTERM,
# SIGHUP or kill -9. After a restart (or, for SIGHUP, without one) every close has run.
# Before the journal of pending closes, SIGTERM and kill -9 lost the queued closes and SIGHUP
# dropped the queue with the old runner.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkcloses.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

knock_conf closes-key >"$tmp/client.conf"
{ cat "$tmp/client.conf"; cat <<CONF
runmode      = file
logfile      = $tmp/firewall.log
fileinterval = 0.1
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
statecache   = $tmp/state.cache
usecache     = yes
stopwait     = 1s
<actions>
  <action open>
    condition = PORT == 22
    template  = open
  </action>
  <action close>
    condition = PORT == 22
    template  = close
    delay     = 2s
  </action>
</actions>
<template open>
  system = "echo open FLAG0 >> $tmp/record"
</template>
<template close>
  system = "echo start FLAG0 >> $tmp/record; sleep 2; echo close FLAG0 >> $tmp/record"
</template>
CONF
} >"$tmp/daemon.conf"
chmod 600 "$tmp"/*.conf

start() {
  : >"$tmp/daemon.log"
  "$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" >>"$tmp/daemon.out" 2>>"$tmp/daemon.log" &
  pid=$!
  wait_for 10 "daemon ready" grep -q "watching log file" "$tmp/daemon.log"
}
knock() {  # knock FLAG0: the knock's log lines, appended to $tmp/batch
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$1" -logfile "$tmp/batch" -quiet
}
every_close() {  # every_close N...: each "close N" line is in the record
  local n
  for n in "$@"; do grep -qx "close $n" "$tmp/record" || return 1; done
}

for fault in TERM HUP KILL; do
  rm -f "$tmp/state.cache" "$tmp/state.cache.journal"
  : >"$tmp/firewall.log"; : >"$tmp/record"
  start
  # The three knocks reach the log in one write: the daemon reads them together, so their closes
  # fall due together and two of them wait in the runner's queue behind the first.
  : >"$tmp/batch"; knock 1; knock 2; knock 3
  cat "$tmp/batch" >>"$tmp/firewall.log"
  wait_for 10 "three opens" bash -c "[ \$(grep -c '^open' '$tmp/record') -eq 3 ]"
  wait_for 10 "the first close running" grep -qx "start 1" "$tmp/record"
  # The other two are due too and wait behind the first.
  grep -qx "start 2" "$tmp/record" && fail "$fault: closes ran in parallel; the test needs a queue"
  kill -"$fault" "$pid"
  if [ "$fault" = HUP ]; then
    wait_for 10 "reloaded" grep -q "configuration reloaded" "$tmp/daemon.log"
    wait_for 20 "every close after SIGHUP" every_close 1 2 3
    # The first close's result is logged by the new generation (no zombie, nothing forgotten).
    wait_for 5 "close 1 reaped" grep -q "template close (delayed): .*exited 0" "$tmp/daemon.log"
    kill -TERM "$pid"; wait "$pid" || fail "SIGTERM exit status $?"; pid=
  else
    wait "$pid" 2>/dev/null || true; pid=
    if [ "$fault" = TERM ]; then
      grep -q "stay pending in the state cache" "$tmp/daemon.log" ||
        fail "SIGTERM: no word about the closes left pending: $(cat "$tmp/daemon.log")"
    fi
    every_close 1 2 3 && fail "$fault: every close ran before the restart; the test proves nothing"
    start
    grep -q "pending commands" "$tmp/daemon.log" || fail "$fault: cache not read: $(cat "$tmp/daemon.log")"
    wait_for 20 "every close after $fault and a restart" every_close 1 2 3
    kill -TERM "$pid"; wait "$pid" || fail "SIGTERM exit status $?"; pid=
  fi
  # At least once: a close may run twice (the one killed mid-way), none is missing.
  say "$fault: $(grep -c '^close' "$tmp/record") closes for 3 knocks"
done
say "PASS: closes queued behind a slow one survive SIGTERM, SIGHUP and kill -9"
