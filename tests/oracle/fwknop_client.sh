#!/usr/bin/env bash
# fwknop's SPA packets against an oracle no one here wrote: Debian's real fwknop client
# (package fwknop-client, 2.6.10) builds packets with --test --save-packet (nothing is sent) and
# the verifier (the fwknop_verify tool) must accept them with the right stanza, user, IP,
# proto/ports and timestamp, and refuse them with a wrong HMAC key, a flipped character, without
# an HMAC, as a replay (ReplayCache), with the client's clock 5 minutes off (faketime), and for
# each request the stanza does not allow (0.0.0.0, another port, a client timeout, NAT, a
# command, another source). The client runs with HOME in a temporary folder and --no-rc-file.
set -euo pipefail
SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN_DIR=${BIN_DIR:?BIN_DIR must name the build directory holding fwknop_verify}
VERIFY=$BIN_DIR/fwknop_verify
[ -x "$VERIFY" ] || { echo "FAIL: $VERIFY not built"; exit 1; }
command -v fwknop >/dev/null || { echo "FAIL: the fwknop client is missing (scripts/install-deps.sh: fwknop-client)"; exit 1; }
command -v faketime >/dev/null || { echo "FAIL: faketime is missing (scripts/install-deps.sh)"; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export HOME=$TMP/home
mkdir -m 700 "$HOME"
failures=0
checks=0

keys() {  # keys NAME: fwknop --key-gen into $TMP/NAME.keys; sets K and H
  fwknop --key-gen --no-rc-file -K "$TMP/$1.keys" >/dev/null
  K=$(awk '$1 == "KEY_BASE64:" {print $2}' "$TMP/$1.keys")
  H=$(awk '$1 == "HMAC_KEY_BASE64:" {print $2}' "$TMP/$1.keys")
  [ -n "$K" ] && [ -n "$H" ] || { echo "FAIL: fwknop --key-gen wrote no keys"; exit 1; }
}
keys alice; KA=$K; HA=$H
keys carol; KC=$K; HC=$H
keys other; KO=$K; HO=$H
PASS_HMAC=$HO

cat >"$TMP/knock.conf" <<EOF
fwknopwindow = 120
<fwknop alice>
  key_base64      = $KA
  hmac_key_base64 = $HA
  source          = 198.18.0.0/16, 2001:db8:1::/48
  open_ports      = tcp/22, udp/53
</fwknop>
<fwknop carol>
  key_base64      = $KC
  hmac_key_base64 = $HC
  source          = 198.18.0.0/15
  open_ports      = tcp/2222
  require_source_address = no
  require_user    = carol
</fwknop>
<fwknop dave>
  key             = correct horse battery
  hmac_key_base64 = $PASS_HMAC
  open_ports      = tcp/22
</fwknop>
EOF
# The same, with alice's HMAC key replaced by another.
sed "s|hmac_key_base64 = $HA|hmac_key_base64 = $HO|" "$TMP/knock.conf" >"$TMP/wronghmac.conf"
grep -q "$HA" "$TMP/wronghmac.conf" && { echo "FAIL: sed"; exit 1; }
chmod 600 "$TMP"/*.conf

n=0
spa() {  # spa [faketime SPEC --] FWKNOP-ARGS...: prints the file holding the packet
  n=$((n + 1))
  local out=$TMP/pkt$n pre=()
  if [ "$1" = faketime ]; then pre=(faketime -f "$2"); shift 3; fi
  "${pre[@]}" fwknop -D 198.18.0.1 --no-rc-file --no-save-args --test -B "$out" "$@" >"$TMP/client.out" 2>&1 ||
    { echo "FAIL: fwknop $*: $(tail -3 "$TMP/client.out")"; exit 1; }
  [ -s "$out" ] || { echo "FAIL: fwknop $* saved no packet"; exit 1; }
  echo "$out"
}
alice=(--use-hmac --key-base64-rijndael "$KA" --key-base64-hmac "$HA")

expect() {  # expect NAME CONF SOURCE PATTERN < packets: each output line must match the regex
  local name=$1 conf=$2 source=$3 pattern=$4 got
  checks=$((checks + 1))
  got=$("$VERIFY" "$conf" now "$source" 2>&1) || true
  if [[ ! "$got" =~ ^$pattern$ ]]; then
    echo "FAIL: $name: got '$got', want /$pattern/"
    failures=$((failures + 1))
  else
    echo "ok: $name: $got"
  fi
}
OFF='offset=(-?[0-5])'  # the client's timestamp within a few seconds of ours

p=$(spa -A tcp/22 -a 198.18.1.2 -U alice "${alice[@]}")
start=$(date +%s)
expect "accepted" "$TMP/knock.conf" 198.18.1.2 "ok alice $OFF user=alice ip=198.18.1.2 timestamp=[0-9]+ ports=tcp/22 timeout=-" <"$p"
ts=$("$VERIFY" "$TMP/knock.conf" now 198.18.1.2 <"$p" | sed 's/.*timestamp=\([0-9]*\).*/\1/')
checks=$((checks + 1))
if [ $((ts - start)) -gt 5 ] || [ $((start - ts)) -gt 5 ]; then
  echo "FAIL: timestamp $ts is not the client's clock ($start)"; failures=$((failures + 1))
fi
expect "accepted from IPv6" "$TMP/knock.conf" 2001:db8:1::7 "ok alice $OFF user=alice ip=198.18.1.2 .*" <"$p"
expect "replay" "$TMP/knock.conf" 198.18.1.2 "ok alice .*
replay alice .*" < <(cat "$p" "$p")
expect "wrong HMAC key" "$TMP/wronghmac.conf" 198.18.1.2 "hmac - .*" <"$p"
expect "source outside alice's" "$TMP/knock.conf" 198.19.0.9 "hmac - .*" <"$p"  # carol and dave tried, not alice
expect "IPv6 source outside alice's" "$TMP/knock.conf" 2001:db8:2::9 "hmac - .*" <"$p"

# Flipped characters: the first, one in the middle, and one in the HMAC (never ok).
pkt=$(tr -d '\n' <"$p")
for pos in 0 $((${#pkt} / 2)) $((${#pkt} - 20)); do
  c=${pkt:pos:1}
  if [ "$c" = A ]; then r=B; else r=A; fi
  printf '%s%s%s\n' "${pkt:0:pos}" "$r" "${pkt:pos+1}" >"$TMP/flip"
  expect "flipped character at $pos" "$TMP/knock.conf" 198.18.1.2 "(hmac|base64) - .*" <"$TMP/flip"
done
printf '%s\n' "${pkt:0:${#pkt}-1}" >"$TMP/trunc"
expect "truncated" "$TMP/knock.conf" 198.18.1.2 "(hmac|base64) - .*" <"$TMP/trunc"

p=$(spa -A tcp/22,udp/53 -a 198.18.1.3 "${alice[@]}")
expect "two ports, the client's own user" "$TMP/knock.conf" 198.18.1.2 "ok alice $OFF user=$(id -un) ip=198.18.1.3 timestamp=[0-9]+ ports=tcp/22,udp/53 timeout=-" <"$p"
p=$(spa -A tcp/22 -a 198.18.1.2 --key-base64-rijndael "$KA")
expect "no HMAC (client without --use-hmac)" "$TMP/knock.conf" 198.18.1.2 "(hmac|base64|size) - .*" <"$p"
p=$(spa faketime -5m -- -A tcp/22 -a 198.18.1.2 "${alice[@]}")
expect "client clock 5 minutes slow" "$TMP/knock.conf" 198.18.1.2 "tooold alice offset=-(29[5-9]|30[0-5]) .*" <"$p"
p=$(spa faketime +5m -- -A tcp/22 -a 198.18.1.2 "${alice[@]}")
expect "client clock 5 minutes fast" "$TMP/knock.conf" 198.18.1.2 "toonew alice offset=(29[5-9]|30[0-5]) .*" <"$p"
p=$(spa -A tcp/23 -a 198.18.1.2 "${alice[@]}")
expect "port not opened" "$TMP/knock.conf" 198.18.1.2 "access alice .*" <"$p"
p=$(spa -A tcp/22 -s "${alice[@]}")
expect "0.0.0.0 refused (require_source_address)" "$TMP/knock.conf" 198.18.1.2 "sourceaddress alice .*" <"$p"
p=$(spa -A tcp/22 -a 198.18.1.2 -f 30 "${alice[@]}")
expect "client timeout refused" "$TMP/knock.conf" 198.18.1.2 "clienttimeout alice .* timeout=30" <"$p"
p=$(spa -A tcp/22 -a 198.18.1.2 -N 198.18.0.9:22 "${alice[@]}")
expect "NAT access refused" "$TMP/knock.conf" 198.18.1.2 "nat alice .*" <"$p"
p=$(spa -C "id" -a 198.18.1.2 "${alice[@]}")
expect "command refused" "$TMP/knock.conf" 198.18.1.2 "messagetype alice .*" <"$p"

carol=(--use-hmac --key-base64-rijndael "$KC" --key-base64-hmac "$HC")
p=$(spa -A tcp/2222 -s -U carol "${carol[@]}")
expect "0.0.0.0 = the packet's source (second stanza)" "$TMP/knock.conf" 198.18.9.9 "ok carol $OFF user=carol ip=198.18.9.9 timestamp=[0-9]+ ports=tcp/2222 timeout=-" <"$p"
p=$(spa -A tcp/2222 -s -U mallory "${carol[@]}")
expect "require_user" "$TMP/knock.conf" 198.18.9.9 "user carol .*" <"$p"

p=$(spa -A tcp/22 -a 198.18.1.2 -U dave --use-hmac --key-rijndael "correct horse battery" --key-base64-hmac "$PASS_HMAC")
expect "passphrase key (third stanza)" "$TMP/knock.conf" 198.18.1.2 "ok dave $OFF user=dave ip=198.18.1.2 .*" <"$p"

echo "fwknop client oracle: $checks checks, $failures failures (fwknop-client $(dpkg-query -W -f='${Version}' fwknop-client 2>/dev/null || echo "?"))"
[ "$failures" -eq 0 ]
