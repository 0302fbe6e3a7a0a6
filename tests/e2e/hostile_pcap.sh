#!/usr/bin/env bash
# Hostile packets and capture files, replayed with knockdaemon -pcap: truncated headers, bad
# IHL and versions, bad lengths, IPv6 extension-header loops and giant lengths, VLAN tag
# stacks, zero-length and random records (made by tests/data/hostile/craft-pcap.pl) are counted
# and skipped, never a crash, and a knock among them is still found. Damaged files (a giant
# caplen, a record cut off, a bad link type, a short or header-only file) end the replay with a
# message naming the file, never a crash or a hang.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
DATA_DIR=${DATA_DIR:-$SOURCE_DIR/tests/data}
CRAFT="perl $DATA_DIR/hostile/craft-pcap.pl"

knock_conf hostile-pcap-key >"$tmp/client.conf"
cat "$tmp/client.conf" - >"$tmp/daemon.conf" <<'CONF'
runmode      = network
useethfilter = syn
<ethfilter syn>
  proto = IP_PROTO_TCP
  flags = SYN
</ethfilter>
CONF
chmod 600 "$tmp"/*.conf
ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -flag0 5 -test)
KNOCK_LINE="knock from 198.18.0.2: IP=198.18.0.2 PORT=22 FLAG0=5 CHECKSUM=[0-9]*"

replay() {  # replay FILE: the daemon's exit code in $rc, stdout in $tmp/out, log in $tmp/log
  set +e
  timeout 60 "$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -pcap "$1" -test >"$tmp/out" 2>"$tmp/log"
  rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "$1: the daemon hung (killed after 60 s)"
  [ "$rc" -lt 128 ] || fail "$1: the daemon died from signal $((rc - 128)); log: $(tail -3 "$tmp/log")"
}
packets_read() { sed -n 's/.*end of capture: \([0-9]*\) packets.*/\1/p' "$tmp/log"; }

# Hostile records with a knock among them: every record is read (link type NULL has no BPF
# filter, so all reach the parser), the knock is found once, nothing else is, and the log does
# not grow by a line per bad packet.
for kind in null ether; do
  n=$($CRAFT "$tmp/$kind.pcap" $kind "$ports")
  replay "$tmp/$kind.pcap"
  [ "$rc" -eq 0 ] || fail "$kind: exit $rc: $(tail -3 "$tmp/log")"
  grep -qx "$KNOCK_LINE" "$tmp/out" || fail "$kind: the knock among hostile packets was not found: $(cat "$tmp/out") $(tail -3 "$tmp/log")"
  [ "$(grep -c '^knock from' "$tmp/out")" -eq 1 ] || fail "$kind: spurious knocks: $(cat "$tmp/out")"
  got=$(packets_read)
  if [ $kind = null ]; then
    [ "$got" = "$n" ] || fail "$kind: $n records written, the daemon counted ${got:-none}"
  else
    # Ethernet gets the BPF filter: the knock's ports pass, most of the hostile records not.
    [ -n "$got" ] && [ "$got" -ge 32 ] && [ "$got" -lt "$n" ] || fail "$kind: ${got:-no} of $n records read"
  fi
  [ "$(wc -l <"$tmp/log")" -le 10 ] || fail "$kind: the log grew by a line per bad packet: $(wc -l <"$tmp/log") lines"
  echo "-- $kind: $n hostile and knock records, $got read, knock found"
done

# Damaged files: the knock before the damage is found, the file is named, no crash, no hang.
for kind in giant cut; do
  $CRAFT "$tmp/$kind.pcap" $kind "$ports" >/dev/null
  replay "$tmp/$kind.pcap"
  [ "$rc" -le 1 ] || fail "$kind: exit $rc: $(tail -3 "$tmp/log")"
  grep -qx "$KNOCK_LINE" "$tmp/out" || fail "$kind: the knock before the damage was not found: $(tail -3 "$tmp/log")"
  grep -qF "$tmp/$kind.pcap" "$tmp/log" || fail "$kind: the file is not named: $(tail -3 "$tmp/log")"
  echo "-- $kind: exit $rc: $(grep -F "$tmp/$kind.pcap" "$tmp/log" | grep -v 'reading packets' | tail -1 | sed 's/.*\]: //')"
done
for kind in badlink short; do
  $CRAFT "$tmp/$kind.pcap" $kind >/dev/null
  replay "$tmp/$kind.pcap"
  [ "$rc" -eq 1 ] || fail "$kind: exit $rc, expected 1: $(tail -3 "$tmp/log")"
  grep -qF "$tmp/$kind.pcap" "$tmp/log" || fail "$kind: the file is not named: $(tail -3 "$tmp/log")"
  [ ! -s "$tmp/out" ] || fail "$kind: output: $(cat "$tmp/out")"
  echo "-- $kind: exit 1: $(tail -1 "$tmp/log")"
done
$CRAFT "$tmp/empty.pcap" empty >/dev/null
replay "$tmp/empty.pcap"
[ "$rc" -eq 0 ] && [ "$(packets_read)" = 0 ] || fail "empty capture: exit $rc: $(tail -3 "$tmp/log")"
replay "$tmp/nonexistent.pcap"
[ "$rc" -eq 1 ] && grep -qF "$tmp/nonexistent.pcap" "$tmp/log" || fail "missing capture: exit $rc: $(tail -2 "$tmp/log")"
head -c 100000 /dev/urandom >"$tmp/random.pcap"
replay "$tmp/random.pcap"
[ "$rc" -eq 1 ] || fail "random bytes as a capture: exit $rc: $(tail -2 "$tmp/log")"
echo "PASS"
