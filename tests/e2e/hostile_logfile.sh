#!/usr/bin/env bash
# File mode against a hostile log: a 1 MB and a 20 MB line, binary bytes appended, the log
# replaced by a binary file, deleted and recreated, truncated, replaced by a directory and by a
# symlink, lines with hostile field values. The daemon keeps running through all of it, each
# knock written afterwards (knockclient -logfile, iptables LOG lines) is found, a knock written
# through a planted symlink is not, memory stays bounded, and the log stays short. Then whole
# knocks whose SRC field holds shell syntax, against a daemon that runs its actions: none of
# them runs anything, while a benign knock's action runs.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d)
DAEMON_PID=
cleanup() {
  [ -z "$DAEMON_PID" ] || { kill "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT
# A failure here also shows the end of the daemon's log.
fail() { echo "FAIL: $*" >&2; [ ! -f "$tmp/daemon.log" ] || tail -5 "$tmp/daemon.log" >&2; exit 1; }
LOG=$tmp/logs/kern.log
mkdir "$tmp/logs"

knock_conf hostile-log-key >"$tmp/client.conf"
cat "$tmp/client.conf" - >"$tmp/daemon.conf" <<CONF
runmode      = file
logfile      = $LOG
fileinterval = 0.1
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
CONF
chmod 600 "$tmp"/*.conf
: >"$LOG"

"$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -test >"$tmp/out" 2>"$tmp/daemon.log" &
DAEMON_PID=$!
deadline_grep() {  # deadline_grep SECONDS PATTERN FILE
  local end=$((SECONDS + $1))
  until grep -q "$2" "$3"; do
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died (waiting for /$2/)"
    [ $SECONDS -lt $end ] || return 1
    sleep 0.05
  done
}
deadline_grep 10 "watching log file" "$tmp/daemon.log" || fail "daemon not ready"

knock() {  # knock FLAG [FILE]: write a knock to the log; wait until the daemon reports it
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$1" -logfile "${2:-$LOG}" 2>/dev/null
  [ -n "${2:-}" ] && return 0
  deadline_grep 10 "^knock from 198.18.0.2: .* FLAG0=$1 " "$tmp/out" || fail "knock $1 not found ($step)"
  echo "-- knock $1 found after: $step"
}
line() { printf '%s portknock IN=eth0 OUT= MAC= %s\n' "Nov 26 12:00:00 vm kernel: [ 1.0]" "$1" >>"$LOG"; }

step="start"; knock 1
step="a 1 MB line"
{ printf 'Nov 26 12:00:00 vm kernel: portknock IN=eth0 OUT= SRC=198.18.5.5 DPT=2000 '
  head -c 1000000 /dev/zero | tr '\0' A; echo; } >>"$LOG"
knock 2
step="a 20 MB line"
{ head -c 20000000 /dev/zero | tr '\0' B; echo; } >>"$LOG"
knock 3
step="binary bytes appended"
cat /bin/ls >>"$LOG"; echo >>"$LOG"
knock 4
step="the log replaced by a binary file"
cp /bin/ls "$tmp/logs/new"; mv "$tmp/logs/new" "$LOG"; echo >>"$LOG"
knock 5
step="the log deleted and recreated"
rm "$LOG"
knock 6
step="the log deleted, absent, then recreated"
rm "$LOG"; : >"$tmp/logs/other"
: >"$LOG"
knock 7
step="the log truncated"
: >"$LOG"
knock 8
step="hostile field values"
line "SRC=198.18.5.5;reboot DST=198.18.0.1 PROTO=TCP SPT=1 DPT=2000"
line "SRC=999.18.5.5 DST=198.18.0.1 PROTO=TCP SPT=1 DPT=2000"
line "SRC=198.18.5.5 DST=198.18.0.1 PROTO=TCP SPT=1 DPT=99999999999999999999"
line "SRC=198.18.5.5 DST=198.18.0.1 PROTO=TCP SPT=1 DPT=-1"
line "SRC=\$(reboot) DST=\`reboot\` PROTO=TCP SPT=1 DPT=2001"
line "SRC=2001:db8::5 DST=2001:db8::1 PROTO=TCP SPT=1 DPT=2002"
line "SRC= DST= PROTO= SPT= DPT="
printf 'portknock SRC=198.18.5.5 \0\0\0 DPT=2003\r\n\xff\xfe\xfd portknock\n\n\n\r\n' >>"$LOG"
knock 9
step="the log replaced by a directory, then a file again"
rm "$LOG"; mkdir "$LOG"
deadline_grep 10 "not a regular file" "$tmp/daemon.log" || fail "a directory as the log was not noticed"
rmdir "$LOG"
knock 10
step="a symlink planted as the log, then a file again"
: >"$tmp/elsewhere"
rm "$LOG"; ln -s "$tmp/elsewhere" "$LOG"
knock 11 "$tmp/elsewhere"        # written through the link: must be ignored
deadline_grep 10 "cannot open log" "$tmp/daemon.log" || fail "the symlinked log was not refused"
rm "$LOG"
knock 12
grep -q "FLAG0=11 " "$tmp/out" && fail "a knock written through a planted symlink was acted upon"

kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died"
hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$DAEMON_PID/status")
if ! nm -C "$BIN_DIR/knockdaemon" 2>/dev/null | grep -c __asan_init >/dev/null; then
  [ "$hwm_kib" -le "$(rss_bound_kib "$tmp/daemon.log")" ] || fail "peak RSS $hwm_kib KiB after the long lines"
fi
kill -TERM "$DAEMON_PID"
rc=0; wait "$DAEMON_PID" || rc=$?
DAEMON_PID=
[ "$rc" -eq 0 ] || fail "the daemon exited $rc on SIGTERM"
[ "$(grep -c '^knock from' "$tmp/out")" -eq 11 ] || fail "expected 11 knocks: $(grep '^knock from' "$tmp/out")"
lines=$(grep -vc "knock from\|would run\|action" "$tmp/daemon.log" || true)
[ "$lines" -le 20 ] || fail "the log grew by $lines lines: $(cat "$tmp/daemon.log")"

# Hostile field values against a daemon that runs its actions (not -test): whole knocks whose
# SRC field carries shell syntax. The action's command goes through the shell and holds LOGIP,
# so a value that got through substitution would create $tmp/pwned. A benign knock, written
# after them, must run the same action (commands run in order: by then the others have run).
step="hostile SRC values with actions"
mkdir "$tmp/logs2"; LOG2=$tmp/logs2/kern.log; : >"$LOG2"
cat "$tmp/client.conf" - >"$tmp/daemon2.conf" <<CONF
runmode      = file
logfile      = $LOG2
fileinterval = 0.1
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
<actions>
  <action mark>
    condition = PORT == 22
    template  = mark
    use       = yes
  </action>
</actions>
<template mark>
  system = "echo LOGIP >>$tmp/ran"
</template>
CONF
chmod 600 "$tmp/daemon2.conf"
"$BIN_DIR/knockdaemon" -conf "$tmp/daemon2.conf" >"$tmp/out2" 2>"$tmp/daemon.log" &
DAEMON_PID=$!
deadline_grep 10 "watching log file" "$tmp/daemon.log" || fail "second daemon not ready"
knock_as() {  # knock_as SRC FLAG: a whole knock for 198.18.0.2 whose lines all say SRC=<SRC>
  : >"$tmp/scratch"
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$2" -logfile "$tmp/scratch" 2>/dev/null
  local l out=
  while IFS= read -r l; do out+="${l/SRC=198.18.0.2 /SRC=$1 }"$'\n'; done <"$tmp/scratch"
  [ "$out" != "$(cat "$tmp/scratch")"$'\n' ] || [ "$1" = 198.18.0.2 ] || fail "SRC not replaced by $1"
  printf '%s' "$out" >>"$LOG2"
}
M=$tmp/pwned
n=20; hostile=0
for src in "198.18.5.5;touch\${IFS}$M" "\$(touch\${IFS}$M)" "\`touch\${IFS}$M\`" "198.18.5.5|touch\${IFS}$M" \
           "198.18.5.5&&touch\${IFS}$M" "198.18.5.5\$(touch\${IFS}$M)" "2001:db8::5;touch\${IFS}$M" \
           "198.18.5.5>$M" "'\$(touch\${IFS}$M)'" "198.18.5.5%0a/usr/bin/touch%20$M"; do
  n=$((n + 1)); hostile=$((hostile + 1)); knock_as "$src" "$n"
done
grep -q "touch" "$LOG2" || fail "the hostile knocks were not written"
knock_as 198.18.0.2 99
end=$((SECONDS + 10))
until grep -qx "198.18.0.2" "$tmp/ran" 2>/dev/null; do
  kill -0 "$DAEMON_PID" 2>/dev/null || fail "the second daemon died"
  [ $SECONDS -lt $end ] || fail "the benign knock's action did not run: $(tail -3 "$tmp/daemon.log")"
  sleep 0.05
done
sleep 0.5
[ ! -e "$M" ] || fail "a hostile SRC value reached the shell: $M exists; ran: $(cat "$tmp/ran")"
[ "$(cat "$tmp/ran")" = "198.18.0.2" ] || fail "the action ran for other values: $(cat "$tmp/ran")"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
echo "-- $hostile hostile SRC knocks ran nothing; the benign knock's action ran"
echo "PASS: 11 knocks found through hostile log changes; peak RSS $hwm_kib KiB; $lines other log lines"
