#!/usr/bin/env bash
# Review 3: what a compromised worker can make the monitor do (doc/SECURITY.md, "Two processes":
# "a single-packet knock only from a configured <client>, an fwknop packet only for a configured
# <fwknop> stanza ... It cannot run a command ... the configuration does not define for a valid
# knock"). The test plays the attacker who owns the worker: it takes a copy of the running
# worker's end of the channel (pidfd_getfd, as root) and sends KNOCK messages the worker's own
# code would never send, each to a fresh worker (SIGHUP starts one at once).
#  0. Control: a report a key holder of stanza alice could cause runs the template (the forger
#     works, so the refusals below are not blind).
#  1-5. Reports no key holder of alice could cause, because the stanza (open_ports, source,
#     require_user, max_client_timeout) refuses them in the worker's verifier: the monitor must
#     refuse them too (no command; "broke the protocol"). FAIL on 2e46783: allowed() checks only
#     the stanza's name.
#  6. A report for an unknown stanza is refused (passes on 2e46783).
E2E_ID=pkr3f$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
command -v python3 >/dev/null || fail "python3 missing"
python3 -c 'import os; os.pidfd_open' 2>/dev/null || fail "python3 without os.pidfd_open"

netns_setup
umask 077
mkdir "$E2E_TMP/state" "$E2E_TMP/events"
KA=$(head -c 32 /dev/urandom | base64 -w0)
HA=$(head -c 64 /dev/urandom | base64 -w0)
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
$(knock_conf "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')")
statecache   = $E2E_TMP/state/state.cache
usecache     = yes
user         = nobody
fwknopport   = 62201
<fwknop alice>
  key_base64        = $KA
  hmac_key_base64   = $HA
  source            = 198.18.1.0/24
  open_ports        = tcp/22
  require_user      = alice
  fw_access_timeout = 30
</fwknop>
<actions>
  <action open>
    condition = CLIENTNAME eq 'alice'
    template  = record
  </action>
</actions>
<template record>
  system = "touch $E2E_TMP/events/CLIENTNAME-USER-PROTO-CLIENT_TIMEOUT-IP-PORT-LOGIP"
</template>
CONF
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >"$E2E_TMP/check.out" 2>&1 ||
  fail "config check failed: $(cat "$E2E_TMP/check.out")"

# forge.py PID FIELD=VALUE...: sends one KNOCK (privsep.hpp's layout) on worker PID's channel.
cat >"$E2E_TMP/forge.py" <<'PY'
import ctypes, os, socket, struct, sys, time
SYS_pidfd_getfd = 438
libc = ctypes.CDLL(None, use_errno=True)

def channel_of(pid):
    pidfd = os.pidfd_open(pid)
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if not target.startswith("socket:"):
            continue
        fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
        if fd < 0:
            continue
        s = socket.socket(fileno=fd)
        if s.family == socket.AF_UNIX and s.type == socket.SOCK_SEQPACKET:
            return s
        s.close()
    sys.exit("no channel in worker %d" % pid)

def knock(kind=2, logip="198.18.1.2", ip="198.18.1.2", port=22, client="alice", proto="tcp", user="alice",
          timeout=30, replay=None, expiry=None):
    m = bytes([1, 1, kind, 0, 4]) + socket.inet_aton(logip) + bytes(12) + struct.pack(">d", time.time())
    fields = {0: struct.unpack(">I", socket.inet_aton(ip))[0], 1: port}
    present = 0
    values = b""
    for index in sorted(fields):
        present |= 1 << index
        values += struct.pack(">I", fields[index])
    m += struct.pack(">H", present) + values + bytes([0])  # no IP6
    for text in (client, proto, user):
        m += bytes([len(text)]) + text.encode()
    m += bytes([0 if timeout is None else 1]) + struct.pack(">I", timeout or 0)
    m += bytes([1]) + (replay or os.urandom(16))
    m += struct.pack(">Q", expiry if expiry is not None else int(time.time()) + 120)
    return m

pid = int(sys.argv[1])
args = {}
for a in sys.argv[2:]:
    k, v = a.split("=", 1)
    args[k] = int(v) if k in ("port", "timeout", "kind") else v
channel_of(pid).send(knock(**args))
PY

LOG=$E2E_TMP/daemon.log
bg_in_ns "$NS_SERVER" "$LOG" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
DAEMON_PID=${E2E_PIDS[-1]}
wait_for 10 "worker started" grep -q "worker [0-9]* started" "$LOG"
worker_pid() { sed -n 's/.*worker \([0-9]*\) started.*/\1/p' "$LOG" | tail -1; }
workers() { grep -c "worker [0-9]* started" "$LOG" || true; }
violations() { grep -c "broke the protocol" "$LOG" || true; }
events() { ls "$E2E_TMP/events" | wc -l; }

# forged NAME EXPECT ARGS...: a fresh worker, one forged report; EXPECT run or refused.
FAILURES=()
forged() {
  local name=$1 expect=$2; shift 2
  local before_workers before_violations before_events
  before_workers=$(workers)
  kill -HUP "$DAEMON_PID"
  # The newest worker, started after the SIGHUP and confined (a restart after the last case's
  # violation may start one that the reload then replaces).
  fresh_worker() {
    [ "$(workers)" -gt "$before_workers" ] || return 1
    local w
    w=$(worker_pid)
    grep -q '^Seccomp:.*2' "/proc/$w/status" 2>/dev/null || return 1
    sleep 0.2
    [ "$(worker_pid)" = "$w" ] && test -d "/proc/$w"
  }
  wait_for 10 "a fresh worker before '$name'" fresh_worker
  local w
  w=$(worker_pid)
  before_violations=$(violations)
  before_events=$(events)
  python3 "$E2E_TMP/forge.py" "$w" "$@"
  # Either the monitor refuses it (a protocol violation) or a command runs.
  wait_for 10 "the monitor's verdict on '$name'" bash -c \
    "[ \$(grep -c 'broke the protocol' '$LOG') -gt $before_violations ] || [ \$(ls '$E2E_TMP/events' | wc -l) -gt $before_events ]"
  if [ "$(events)" -gt "$before_events" ]; then
    say "$name: the monitor RAN the command ($(ls -t "$E2E_TMP/events" | head -1))"
    [ "$expect" = run ] || FAILURES+=("$name: a command ran for a report no key holder could cause")
  else
    say "$name: refused ($(grep 'broke the protocol' "$LOG" | tail -1 | sed 's/.*(\(.*\)).*/\1/'))"
    [ "$expect" = refused ] || FAILURES+=("$name: refused, expected a command")
  fi
}

say "-- 0. control: what a key holder of alice could send"
forged "tcp/22 for 198.18.1.2 from 198.18.1.2" run
[ -e "$E2E_TMP/events/alice-alice-tcp-30-198.18.1.2-22-198.18.1.2" ] || fail "the control knock: $(ls "$E2E_TMP/events")"
say "-- 1-5. what the stanza refuses"
forged "1. a port outside open_ports (tcp/3306)" refused port=3306
forged "2. a proto outside open_ports (udp/22)" refused proto=udp
forged "3. a source outside the stanza's source (198.19.0.9)" refused logip=198.19.0.9 ip=198.19.0.9
forged "4. another user than require_user (mallory)" refused user=mallory
forged "5. a client timeout the stanza refuses (max_client_timeout 0): 4000000000 s" refused timeout=4000000000
say "-- 6. an unknown stanza"
forged "6. stanza bob" refused client=bob
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exit status $?"
[ ${#FAILURES[@]} -eq 0 ] || fail "$(printf '%s; ' "${FAILURES[@]}")"
say PASS
