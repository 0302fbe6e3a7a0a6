#!/usr/bin/env bash
# End to end through real iptables, daemon in network mode (see firewall_flow.bash).
exec bash "$(dirname "$0")/firewall_flow.bash" "$BIN_DIR" network iptables
