#!/usr/bin/env bash
# End to end with the in-process nftables action (template key nft, libnftables) and a
# kernel-side timeout that closes the port, daemon in network mode (see firewall_flow.bash).
exec bash "$(dirname "$0")/firewall_flow.bash" "$BIN_DIR" network nft-native
