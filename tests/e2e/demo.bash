#!/usr/bin/env bash
# demo.bash BUILD_DIR: the README's first command; the iptables flow in network mode, told in words.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cat <<TXT
portknock demo
==============
A server keeps SSH (port 22) closed. A client that knows the secret key knocks: it sends
connection attempts to a sequence of other closed ports that spell an encrypted message
(its address, the port it wants, a flag). knockdaemon sees them, decodes the knock, and
opens port 22 for that address only, for a few seconds.
TXT
bash "$here/firewall_flow.bash" "$1" network iptables demo
