#!/usr/bin/env bash
# File mode follows the log like tail -F while the daemon runs: knocks appended to the log
# are found; after rotation by rename (logrotate's default), after truncation (copytruncate),
# and in a log that appears only after the daemon started.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkrot.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

knock_conf rotation-key DES_EDE3 >"$tmp/client.conf"
{ cat "$tmp/client.conf"; cat <<CONF
runmode      = file
logfile      = $tmp/log/firewall.log
fileinterval = 0.2
uselogformat = iptables
<<include $SOURCE_DIR/etc/logformats.conf>>
CONF
} >"$tmp/daemon.conf"
chmod 600 "$tmp"/*.conf
mkdir "$tmp/log"

knock() {  # knock FLAG0: append one knock to the current log file
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
    -flag0 "$1" -logfile "$tmp/log/firewall.log" -quiet
}
found() { grep -q "knock from 198.18.0.2: IP=198.18.0.2 PORT=22 FLAG0=$1 " "$tmp/out"; }

# The log does not exist yet when the daemon starts.
"$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -test >"$tmp/out" 2>"$tmp/daemon.log" &
pid=$!
wait_for 10 "daemon ready" grep -q "watching log file" "$tmp/daemon.log"
knock 1
wait_for 10 "knock in a log that appeared later" found 1

knock 2
wait_for 10 "knock appended" found 2

mv "$tmp/log/firewall.log" "$tmp/log/firewall.log.1"   # rotation by rename
knock 3
wait_for 10 "knock after rotation by rename" found 3

: >"$tmp/log/firewall.log"                             # truncation (copytruncate)
knock 4
wait_for 10 "knock after truncation" found 4

# And the daemon goes on following the truncated file.
knock 5
wait_for 10 "knock 5" found 5
kill -0 "$pid" || fail "daemon died"
[ "$(grep -c '^knock from' "$tmp/out")" -eq 5 ] || fail "expected exactly 5 knocks: $(cat "$tmp/out")"
kill -TERM "$pid"; wait "$pid" || fail "SIGTERM exit status $?"; pid=
echo PASS
