#!/usr/bin/env bash
# End to end through real iptables, network mode, with the daemon dropping root for `nobody`
# (config key user): capture opened as root, firewall commands run with CAP_NET_ADMIN only.
DAEMON_USER=nobody exec bash "$(dirname "$0")/firewall_flow.bash" "$BIN_DIR" network iptables
