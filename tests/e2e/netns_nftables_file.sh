#!/usr/bin/env bash
# End to end through real nftables, daemon in file mode (see firewall_flow.bash).
exec bash "$(dirname "$0")/firewall_flow.bash" "$BIN_DIR" file nftables
