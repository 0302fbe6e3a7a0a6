#!/usr/bin/env bash
# ssh through a closed door: Debian's OpenSSH client with ProxyCommand "knockclient -proxy %h %p"
# against Debian's sshd, in network namespaces (netns.bash): server 198.18.1.1, client 198.18.1.2.
# sshd (started here, host key and authorized key made in the test's temp folder) listens on
# port 22, which the server's firewall DROPs, and on port 2222, left open (for the comparison
# below). knockdaemon (runmode = network, proto = spa, one <client alice>) opens 22 for the
# knocking address with iptables and closes it CLOSE_AFTER seconds later.
#  1. Before any knock a plain ssh to port 22 times out.
#  2. ssh with the ProxyCommand runs a command and returns its output; 1 MiB of standard input
#     reaches the remote command intact and its answer comes back (the relay, its half-close).
#  3. knockclient -wait 22 returns 0 once port 22 accepts, and a plain ssh then gets in.
#  4. A wrong key (a key the daemon does not know): knockclient -proxy and -wait end with exit 1
#     and their one-line error within -waittime, ssh fails, the daemon counts the refusal, and
#     no firewall rule is left.
# With PORTKNOCK_SSH_BENCH=N the test also times N runs of `ssh ... true` through the closed door
# (ProxyCommand, the door closed again before each run) and N plain runs to the open port 2222,
# and prints the medians. It asserts nothing about them.
E2E_ID=pkssh$$
source "$(dirname "$0")/netns.bash"
BIN=$(cd "${BIN_DIR:?BIN_DIR}" && pwd)
for tool in ssh ssh-keygen /usr/sbin/sshd iptables; do
  command -v "$tool" >/dev/null || fail "$tool is not installed: run scripts/install-deps.sh (openssh-server, openssh-client)"
done
started=$SECONDS
CLOSE_AFTER=3
SPAPORT=62202

netns_setup
# sshd's privilege separation folder; made (and removed again) only if this machine has none.
made_run_sshd=
if [ ! -d /run/sshd ]; then mkdir -m 0755 /run/sshd; made_run_sshd=1; fi
cleanup_all() {
  netns_cleanup
  if [ -n "$made_run_sshd" ]; then rmdir /run/sshd 2>/dev/null || true; fi
}
trap cleanup_all EXIT

# --- sshd in the server namespace, keys of its own
ssh-keygen -q -t ed25519 -N '' -C pk-host -f "$E2E_TMP/host_key"
ssh-keygen -q -t ed25519 -N '' -C pk-user -f "$E2E_TMP/user_key"
cp "$E2E_TMP/user_key.pub" "$E2E_TMP/authorized_keys"
printf '%s %s\n' "$SERVER_IP" "$(cut -d' ' -f1,2 "$E2E_TMP/host_key.pub")" >"$E2E_TMP/known_hosts"
cat >"$E2E_TMP/sshd_config" <<CONF
Port 22
Port 2222
ListenAddress $SERVER_IP
HostKey $E2E_TMP/host_key
AuthorizedKeysFile $E2E_TMP/authorized_keys
PidFile $E2E_TMP/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
LogLevel VERBOSE
CONF
/usr/sbin/sshd -t -f "$E2E_TMP/sshd_config" || fail "sshd rejects its test config"
bg_in_ns "$NS_SERVER" "$E2E_TMP/sshd.log" /usr/sbin/sshd -D -e -f "$E2E_TMP/sshd_config"
wait_for 5 "sshd listening on 22 and 2222" in_ns "$NS_SERVER" bash -c "ss -ltn | grep -q ':22 ' && ss -ltn | grep -q ':2222 '"

in_ns "$NS_SERVER" iptables -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
in_ns "$NS_SERVER" iptables -A INPUT -p tcp --dport 22 -j DROP
in_ns "$NS_SERVER" iptables -A INPUT -p udp --dport $SPAPORT -j DROP

# --- knockdaemon: alice's key opens 22 for her address
"$BIN/knockclient" -keygen "$E2E_TMP/alice.key" 2>/dev/null
"$BIN/knockclient" -keygen "$E2E_TMP/mallory.key" 2>/dev/null   # a key the daemon does not know
mkdir -m 700 "$E2E_TMP/state"
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
snapshotsize = 1500
knock     = IP,PORT,FLAG0,CHECKSUM
portspan  = 2000-2255
proto     = spa
spaport   = $SPAPORT
spawindow = 60
statecache = $E2E_TMP/state/state.cache
usecache   = yes
summaryinterval = 1
<client alice>
  keyfile = $E2E_TMP/alice.key
</client>
<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_open
    use       = yes
  </action>
  <action close>
    condition = PORT == 22 && IP eq LOGIP
    template  = fw_close
    delay     = ${CLOSE_AFTER}s
    use       = yes
  </action>
</actions>
<template fw_open>
  system = "/sbin/iptables -w -I INPUT -p tcp -s IP/32 --dport PORT --syn -m comment --comment pkssh -j ACCEPT"
</template>
<template fw_close>
  system = "/sbin/iptables -w -D INPUT -p tcp -s IP/32 --dport PORT --syn -m comment --comment pkssh -j ACCEPT"
</template>
CONF
# client_conf KEY: knockclient's configuration, as README's ~/.knockclient.conf: no remote
# (-proxy gives it, or -remote) and no port (the knock's PORT is the one -proxy or -wait names).
client_conf() {
  printf '%s\n' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'proto    = spa' "spaport  = $SPAPORT" \
    "keyfile  = $E2E_TMP/$1.key"
}
client_conf alice >"$E2E_TMP/alice.conf"
client_conf mallory >"$E2E_TMP/mallory.conf"
chmod 600 "$E2E_TMP"/*.conf
"$BIN/knockdaemon" -check -conf "$E2E_TMP/knockdaemon.conf" >/dev/null || fail "daemon config check failed"
bg_in_ns "$NS_SERVER" "$E2E_TMP/daemon.log" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
wait_for 10 "daemon ready" grep -q "watching interface" "$E2E_TMP/daemon.log"

SSH_OPTS=(-F /dev/null -i "$E2E_TMP/user_key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$E2E_TMP/known_hosts" -o LogLevel=ERROR)
# proxy_ssh CONF [SSH ARGS...]: ssh from the client namespace through knockclient -proxy.
proxy_ssh() {
  local conf=$1; shift
  in_ns "$NS_CLIENT" ssh "${SSH_OPTS[@]}" -o ConnectTimeout=20 \
    -o ProxyCommand="$BIN/knockclient -conf $E2E_TMP/$conf.conf -proxy %h %p -waittime 3" "$@"
}
# plain_ssh [SSH ARGS...]: ssh from the client namespace, no knock.
plain_ssh() { in_ns "$NS_CLIENT" ssh "${SSH_OPTS[@]}" "$@"; }
door_rules() { in_ns "$NS_SERVER" iptables -S INPUT | grep -c pkssh || true; }
accepted_knocks() { grep -c "knock from $CLIENT_IP (client alice, " "$E2E_TMP/daemon.log" || true; }
wait_closed() { wait_for $((CLOSE_AFTER + 10)) "port 22 closed again ($1)" cannot_connect "$NS_CLIENT" $SERVER_IP 22; }

say "-- 1. before any knock a plain ssh to port 22 times out"
status=0
plain_ssh -o ConnectTimeout=2 root@$SERVER_IP true 2>"$E2E_TMP/plain.err" || status=$?
[ "$status" -eq 255 ] || fail "a plain ssh before the knock ended with $status, expected 255: $(cat "$E2E_TMP/plain.err")"
grep -qi "timed out" "$E2E_TMP/plain.err" || fail "the plain ssh did not time out: $(cat "$E2E_TMP/plain.err")"
plain_ssh -o ConnectTimeout=5 -p 2222 root@$SERVER_IP true || fail "ssh to the open port 2222 failed"
[ "$(accepted_knocks)" -eq 0 ] || fail "a knock was accepted before any was sent"

say "-- 2. ssh with ProxyCommand knockclient -proxy %h %p through the closed door"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the knock"
out=$(proxy_ssh alice root@$SERVER_IP 'echo through' 2>"$E2E_TMP/proxy.err") ||
  fail "ssh through the door failed: $(cat "$E2E_TMP/proxy.err"; tail -5 "$E2E_TMP/daemon.log")"
[ "$out" = through ] || fail "ssh through the door printed '$out', expected 'through'"
[ "$(accepted_knocks)" -eq 1 ] || fail "expected one accepted knock: $(grep 'knock from' "$E2E_TMP/daemon.log")"
grep -q "Accepted publickey for root from $CLIENT_IP port [0-9]* ssh2" "$E2E_TMP/sshd.log" ||
  fail "sshd logged no login from the client: $(tail -5 "$E2E_TMP/sshd.log")"
[ ! -s "$E2E_TMP/proxy.err" ] || fail "ssh or knockclient -proxy wrote to stderr: $(cat "$E2E_TMP/proxy.err")"
head -c 1048576 /dev/urandom >"$E2E_TMP/payload"
want=$(sha256sum <"$E2E_TMP/payload" | cut -d' ' -f1)
got=$(proxy_ssh alice root@$SERVER_IP 'sha256sum; echo done' <"$E2E_TMP/payload" 2>"$E2E_TMP/proxy.err") ||
  fail "ssh with 1 MiB of input failed: $(cat "$E2E_TMP/proxy.err")"
[ "$got" = "$want  -"$'\n'"done" ] || fail "1 MiB through the relay: the remote saw '$got', expected '$want  -'"
wait_closed "after the ssh sessions"
[ "$(door_rules)" -eq 0 ] || fail "open rules left after the close: $(in_ns "$NS_SERVER" iptables -S INPUT)"

say "-- 3. knockclient -wait 22, then a plain ssh"
cannot_connect "$NS_CLIENT" $SERVER_IP 22 || fail "port 22 open before the -wait knock"
in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -remote $SERVER_IP -wait 22 -waittime 5 \
  2>"$E2E_TMP/wait.err" || fail "knockclient -wait 22 failed: $(cat "$E2E_TMP/wait.err")"
grep -q "info: $SERVER_IP port 22 accepted a connection after [0-9]* ms (attempt [0-9]* of [0-9]*)" "$E2E_TMP/wait.err" ||
  fail "-wait did not say the port opened: $(cat "$E2E_TMP/wait.err")"
out=$(plain_ssh -o ConnectTimeout=5 root@$SERVER_IP 'echo after-wait') || fail "plain ssh after -wait failed"
[ "$out" = after-wait ] || fail "plain ssh after -wait printed '$out'"
wait_closed "after -wait"

say "-- 4. a wrong key: the door stays shut, ssh fails, knockclient says so"
knocks_before=$(accepted_knocks)
t0=$SECONDS
status=0
out=$(proxy_ssh mallory root@$SERVER_IP 'echo through' 2>"$E2E_TMP/bad.err") || status=$?
[ "$status" -ne 0 ] || fail "ssh with the wrong key succeeded: '$out'"
[ -z "$out" ] || fail "ssh with the wrong key printed '$out'"
grep -q "knockclient\[[0-9]*\] error: still closed after the knock: $SERVER_IP port 22 accepted no connection within 3 s ([0-9]* attempts, the last unanswered after [0-9.]* s)$" "$E2E_TMP/bad.err" ||
  fail "no clear knockclient error under ssh: $(cat "$E2E_TMP/bad.err")"
status=0
in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/mallory.conf" -remote $SERVER_IP -wait 22 -waittime 2 \
  2>"$E2E_TMP/badwait.err" || status=$?
[ "$status" -eq 1 ] || fail "knockclient -wait with the wrong key ended with $status, expected 1: $(cat "$E2E_TMP/badwait.err")"
[ "$(grep -c error: "$E2E_TMP/badwait.err")" -eq 1 ] &&
  grep -q "error: still closed after the knock: $SERVER_IP port 22 accepted no connection within 2 s" "$E2E_TMP/badwait.err" ||
  fail "-wait with the wrong key: $(cat "$E2E_TMP/badwait.err")"
[ $((SECONDS - t0)) -lt 30 ] || fail "the wrong-key runs were not bounded by -waittime"
wait_for 5 "the daemon counts the two refused knocks" \
  bash -c "grep 'single-packet knocks:' '$E2E_TMP/daemon.log' | tail -1 | grep -q 'unknown key id 2'"
[ "$(accepted_knocks)" -eq "$knocks_before" ] || fail "a wrong key's knock was accepted"
[ "$(door_rules)" -eq 0 ] || fail "a wrong key opened a rule: $(in_ns "$NS_SERVER" iptables -S INPUT)"

if [ -n "${PORTKNOCK_SSH_BENCH:-}" ]; then
  say "-- timing: $PORTKNOCK_SSH_BENCH runs each (median), ssh ... true"
  # ms CMD...: the milliseconds CMD took (it must succeed).
  ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || fail "timed run failed: $*"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
  }
  median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  # knock_then_ssh: the knock, then at once a plain ssh (no -proxy): its first SYN races the rule.
  knock_then_ssh() {
    in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -remote $SERVER_IP -port 22 -quiet &&
      plain_ssh -o ConnectTimeout=10 root@$SERVER_IP true
  }
  : >"$E2E_TMP/t_proxy"; : >"$E2E_TMP/t_open"; : >"$E2E_TMP/t_openproxy"; : >"$E2E_TMP/t_naive"
  for _ in $(seq "$PORTKNOCK_SSH_BENCH"); do
    wait_closed "before a timed run"
    ms proxy_ssh alice root@$SERVER_IP true >>"$E2E_TMP/t_proxy"
    wait_closed "before a timed knock-then-ssh"
    ms knock_then_ssh >>"$E2E_TMP/t_naive"
    ms plain_ssh -p 2222 root@$SERVER_IP true >>"$E2E_TMP/t_open"
    ms proxy_ssh alice -p 2222 root@$SERVER_IP true >>"$E2E_TMP/t_openproxy"
  done
  # knockclient -wait's own figure: from its first connect attempt to the accepted connection.
  : >"$E2E_TMP/t_wait"
  for _ in $(seq "$PORTKNOCK_SSH_BENCH"); do
    wait_closed "before a timed -wait"
    in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/alice.conf" -remote $SERVER_IP -wait 22 2>&1 |
      sed -n 's/.* accepted a connection after \([0-9]*\) ms (attempt \([0-9]*\) .*/\1 \2/p' >>"$E2E_TMP/t_wait"
  done
  say "   knock to accepted connect (-wait):               median $(cut -d' ' -f1 "$E2E_TMP/t_wait" | median) ms, winning attempt median $(cut -d' ' -f2 "$E2E_TMP/t_wait" | median) ($(cut -d' ' -f1 "$E2E_TMP/t_wait" | sort -n | tr '\n' ' ')ms)"
  say "   closed port 22, ProxyCommand knockclient -proxy: median $(median <"$E2E_TMP/t_proxy") ms ($(sort -n "$E2E_TMP/t_proxy" | tr '\n' ' '))"
  say "   closed port 22, knockclient; then plain ssh:     median $(median <"$E2E_TMP/t_naive") ms ($(sort -n "$E2E_TMP/t_naive" | tr '\n' ' '))"
  say "   open port 2222, plain ssh:                       median $(median <"$E2E_TMP/t_open") ms ($(sort -n "$E2E_TMP/t_open" | tr '\n' ' '))"
  say "   open port 2222, ProxyCommand knockclient -proxy: median $(median <"$E2E_TMP/t_openproxy") ms ($(sort -n "$E2E_TMP/t_openproxy" | tr '\n' ' '))"
fi
say "PASS: ssh through a closed door with knockclient -proxy, and -wait, in $((SECONDS - started))s"
