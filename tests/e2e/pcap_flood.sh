#!/usr/bin/env bash
# One real knock inside 1,000,000 SYNs from distinct spoofed sources into the span, replayed
# with -pcap: the knock is found, peak RSS stays under the documented bound (doc/TRACKER.md:
# 32 MiB + the tracker's table), and the log holds a few summary lines, not one per packet.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
FLOOD=${PORTKNOCK_FLOOD_PACKETS:-1000000}

knock_conf flood-test-key >"$tmp/common.conf"
cp "$tmp/common.conf" "$tmp/client.conf"
cat "$tmp/common.conf" - >"$tmp/daemon.conf" <<'CONF'
runmode      = network
useethfilter = syn
<ethfilter syn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
maxsources   = 65536
CONF
chmod 600 "$tmp"/*.conf

ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -flag0 7 -test)
# The flood runs at 100k packets/s of capture time; the knock's ports are spread over 5 s of it.
"$BIN_DIR/pcapgen" "$tmp/flood.pcap" --knock "198.18.0.2@2:0.2:$ports" --flood "$FLOOD@0:100000"

"$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -pcap "$tmp/flood.pcap" -test >"$tmp/out" 2>"$tmp/log" \
  || fail "daemon failed: $(tail -3 "$tmp/log")"
grep -qx "knock from 198.18.0.2: IP=198.18.0.2 PORT=22 FLAG0=7 CHECKSUM=[0-9]*" "$tmp/out" \
  || fail "the knock was not found in the flood; stdout: $(head -3 "$tmp/out"); log: $(tail -5 "$tmp/log")"
[ "$(grep -c "^knock from" "$tmp/out")" -eq 1 ] || fail "spurious knocks: $(grep -c "^knock from" "$tmp/out")"

rss_kib=$(sed -n 's/.*peak RSS \([0-9]*\) KiB.*/\1/p' "$tmp/log" | tail -1)
[ -n "$rss_kib" ] || fail "no peak RSS in the log: $(cat "$tmp/log")"
bound=$(rss_bound_kib "$tmp/log")
# Under AddressSanitizer the shadow memory is not the daemon's: the bound is checked in the
# plain build only (as in netns_flood.sh).
if nm -C "$BIN_DIR/knockdaemon" 2>/dev/null | grep -c __asan_init >/dev/null; then
  echo "NOTE: sanitizer build: peak RSS ${rss_kib} KiB not checked against ${bound} KiB"
else
  [ "$rss_kib" -le "$bound" ] || fail "peak RSS ${rss_kib} KiB over the bound ${bound} KiB"
fi
lines=$(wc -l <"$tmp/log")
[ "$lines" -le 20 ] || fail "the log grew by $lines lines under the flood"
echo "PASS: knock found among $FLOOD spoofed SYNs; peak RSS ${rss_kib} KiB (bound ${bound} KiB); $lines log lines"
