#!/usr/bin/env bash
# What a command the daemon starts inherits (issues 11, 13): only CAP_NET_ADMIN and CAP_NET_RAW
# (commandcaps: the rest left the bounding set; root's commands get nothing more), no
# descriptor beyond 0, 1, 2 (not the
# raw capture socket, not the state cache, the config, the signalfd, nor the netlink socket of
# an nft template run just before), and a fixed minimal
# environment instead of the daemon's. A knock from the client namespace runs a template that
# lists the shell's /proc/PID/fd and its environment; the daemon runs with a marker variable.
E2E_ID=pkfs$$
source "$(dirname "$0")/netns.bash"
BIN=$BIN_DIR
netns_setup
KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -m 700 "$E2E_TMP/state"
cat >"$E2E_TMP/knockdaemon.conf" <<CONF
runmode      = network
interface    = any
useethfilter = tcpsyn
<ethfilter tcpsyn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
$(knock_conf "$KEY")
statecache = $E2E_TMP/state/state.cache
usecache   = yes
<actions>
  <action look>
    condition = PORT == 22
    template  = probe
    template  = look
    use       = yes
  </action>
</actions>
<template probe>
  nft = "add table inet pkfs_probe"
</template>
<template look>
  system = "grep ^Cap /proc/\$\$/status >$E2E_TMP/caps; set -- /proc/\$\$/fd/*; echo \$* >$E2E_TMP/fds.tmp; env >$E2E_TMP/env; mv $E2E_TMP/fds.tmp $E2E_TMP/fds"
</template>
CONF
knock_conf "$KEY" >"$E2E_TMP/knockclient.conf"
chmod 600 "$E2E_TMP"/*.conf
export PORTKNOCK_MARKER=from-the-daemons-environment
export LD_PRELOAD=  # set, even if empty: must not reach the command
bg_in_ns "$NS_SERVER" "$E2E_TMP/daemon.log" "$BIN/knockdaemon" -conf "$E2E_TMP/knockdaemon.conf"
wait_for 10 "daemon ready" grep -q "watching" "$E2E_TMP/daemon.log"
in_ns "$NS_CLIENT" "$BIN/knockclient" -conf "$E2E_TMP/knockclient.conf" -remote $SERVER_IP -port 22 -flag0 1
wait_for 10 "the command ran" test -f "$E2E_TMP/fds"
# The shell expands the glob with no redirection active; the one descriptor beyond 0, 1, 2 it
# sees is the directory it reads (the lowest free one, 3).
fds=$(tr ' ' '\n' <"$E2E_TMP/fds" | sed 's|.*/||' | sort -n | tr '\n' ' ')
say "the command's descriptors: $fds"
say "its environment: $(tr '\n' ' ' <"$E2E_TMP/env")"
[ "$fds" = "0 1 2 3 " ] || fail "the command inherited descriptors: $fds (daemon: $(ls -l /proc/"${E2E_PIDS[-1]}"/fd 2>/dev/null | tail -n +2 | awk '{print $9,$10,$11}' | tr '\n' ';'))"
grep -q PORTKNOCK_MARKER "$E2E_TMP/env" && fail "the command got the daemon's environment: $(cat "$E2E_TMP/env")"
grep -q '^LD_PRELOAD' "$E2E_TMP/env" && fail "the command got LD_PRELOAD"
grep -qx 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$E2E_TMP/env" || fail "no fixed PATH: $(cat "$E2E_TMP/env")"
grep -qx 'LANG=C' "$E2E_TMP/env" || fail "no LANG=C: $(cat "$E2E_TMP/env")"
extra=$(grep -v '^\(PATH\|LANG\|PWD\|SHLVL\|_\|OLDPWD\)=' "$E2E_TMP/env" || true)
[ -z "$extra" ] || fail "unexpected variables: $extra"
# CAP_NET_ADMIN (12) and CAP_NET_RAW (13): 0x3000, in the bounding set and, as root, effective.
grep -qx 'CapBnd:[[:space:]]*0000000000003000' "$E2E_TMP/caps" || fail "the command's bounding set: $(cat "$E2E_TMP/caps")"
grep -qx 'CapEff:[[:space:]]*0000000000003000' "$E2E_TMP/caps" || fail "the command's effective set: $(cat "$E2E_TMP/caps")"
grep -q "commands run with capabilities bounded to 0000000000003000" "$E2E_TMP/daemon.log" || fail "no commandcaps line"
say "PASS: the command inherits only 0, 1, 2, PATH and LANG, and CAP_NET_ADMIN and CAP_NET_RAW"
