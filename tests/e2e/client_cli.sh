#!/bin/bash
# knockclient's command line: -test output, config + overrides, key sources, -logfile lines,
# and exit code 2 with one clear line for bad options, values and config keys.
set -euo pipefail
BIN_DIR=${BIN_DIR:?BIN_DIR must point at the build directory}
K="$BIN_DIR/knockclient"
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$K" ] || fail "no knockclient at $K"
WORK=$(mktemp -d /tmp/client_cli.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export HOME="$WORK"  # no ~/.knockclient.conf from the user running the tests
# An empty one, so that the search list stops here rather than at the shipped etc/ next to the build.
: >"$HOME/.knockclient.conf"

# The facts.md example: 198.18.0.2 (= 198,18,0,2), port 22, FLAG0 1, checksum 241, 256-port span.
out=$("$K" -test -client 198.18.0.2 -port 22 -flag0 1 -knock IP,PORT,FLAG0,CHECKSUM -portspan 1000-1255 2>"$WORK/err")
[ "$out" = "1198,1018,1000,1002,1000,1022,1001,1241" ] || fail "-test printed '$out'"
[ ! -s "$WORK/err" ] || fail "unexpected stderr: $(cat "$WORK/err")"
# Double-dash spelling and --opt=value.
out2=$("$K" --test --client=198.18.0.2 --port 22 --flag0=1 --knock=IP,PORT,FLAG0,CHECKSUM --portspan 1000-1255)
[ "$out2" = "$out" ] || fail "--options gave '$out2'"

cat > "$WORK/c.conf" <<'CONF'
# test config
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 1000-1255
port     = 80
flag0    = 1
client   = 198.18.0.2
CONF
out=$("$K" -conf "$WORK/c.conf" -test -port 22)
[ "$out" = "1198,1018,1000,1002,1000,1022,1001,1241" ] || fail "command line did not override the file: '$out'"

# Encrypted: the same knock from -key (with a warning), -key - (stdin) and -keyfile.
common=(-test -client 198.18.0.2 -port 22 -knock IP,PORT,CHECKSUM -portspan 1000-1255 -encrypt yes -cipher crypt::twofish)
a=$("$K" "${common[@]}" -key 's3cret' 2>"$WORK/err")
grep -q "visible to every user" "$WORK/err" || fail "no warning for -key on the command line"
b=$(printf 's3cret\n' | "$K" "${common[@]}" -key - 2>"$WORK/err")
[ ! -s "$WORK/err" ] || fail "warning for -key -: $(cat "$WORK/err")"
printf 's3cret\n' > "$WORK/key"; chmod 600 "$WORK/key"
c=$("$K" "${common[@]}" -keyfile "$WORK/key")
[ "$a" = "$b" ] && [ "$b" = "$c" ] || fail "key sources disagree: $a / $b / $c"
[ "$(echo "$a" | tr ',' '\n' | wc -l)" = 16 ] || fail "Twofish knock is not 16 ports: $a"
d=$("$K" "${common[@]}" -keyfile "$WORK/key" -cipher Rijndael)
[ "$d" != "$a" ] || fail "a different cipher gave the same knock"

# -logfile: one iptables LOG line per port, SRC = the client.
"$K" -client 198.18.0.2 -remote 198.18.0.1 -port 22 -flag0 1 -knock IP,PORT,FLAG0,CHECKSUM \
  -portspan 1000-1255 -logfile "$WORK/fw.log" -quiet
[ "$(wc -l < "$WORK/fw.log")" = 8 ] || fail "logfile has $(wc -l < "$WORK/fw.log") lines, expected 8"
re='^[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [^ ]+ kernel: \[ *[0-9]+\.[0-9]{6}\] portknock IN=eth0 OUT= MAC=00:00:00:00:00:00:00:00:00:00:00:00:08:00 SRC=198\.18\.0\.2 DST=198\.18\.0\.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=TCP SPT=[0-9]+ DPT=[0-9]+ WINDOW=64240 RES=0x00 SYN URGP=0$'
grep -Evq "$re" "$WORK/fw.log" && fail "bad log line: $(grep -Ev "$re" "$WORK/fw.log" | head -1)"
dpts=$(sed 's/.* DPT=\([0-9]*\) .*/\1/' "$WORK/fw.log" | paste -sd,)
[ "$dpts" = "1198,1018,1000,1002,1000,1022,1001,1241" ] || fail "logged ports $dpts"
"$K" -client 198.18.0.2 -remote 198.18.0.1 -port 22 -knock IP,PORT -portspan 1000-1255 -proto udp \
  -logfile "$WORK/fw.log" -quiet
tail -1 "$WORK/fw.log" | grep -Eq ' PROTO=UDP SPT=[0-9]+ DPT=1022 LEN=9$' || fail "bad UDP log line: $(tail -1 "$WORK/fw.log")"

# Exit 2 with one clear line on stderr.
expect2() {
  local want=$1; shift
  set +e
  "$@" >"$WORK/out" 2>"$WORK/err" </dev/null
  local rc=$?
  set -e
  [ $rc = 2 ] || fail "exit $rc (expected 2) for: $*"
  [ "$(wc -l < "$WORK/err")" = 1 ] || fail "expected one line on stderr for: $*; got: $(cat "$WORK/err")"
  grep -q -- "$want" "$WORK/err" || fail "stderr '$(cat "$WORK/err")' lacks '$want' for: $*"
  [ ! -s "$WORK/out" ] || fail "stdout not empty for: $*"
}
base=(-test -client 198.18.0.2 -knock IP,PORT -portspan 1000-1255)
expect2 "unknown option -bogus" "$K" -bogus
expect2 "needs a value" "$K" -port
expect2 "port must be a number from 0 to 65535" "$K" "${base[@]}" -port 65536
expect2 "flag3 must be a number from 0 to 255" "$K" "${base[@]}" -port 1 -flag3 256
expect2 "give -port" "$K" "${base[@]}"
expect2 "unknown knock field 'PROT'" "$K" -test -client 198.18.0.2 -port 1 -knock IP,PROT -portspan 1000-1255
expect2 "nearest: 256 or 512" "$K" "${base[@]}" -port 1 -portspan 1000-1299
expect2 "listed twice" "$K" "${base[@]}" -port 1 -portspan 1000-1254,1000
expect2 "unknown cipher 'rc4'" "$K" "${base[@]}" -port 1 -encrypt yes -keyfile "$WORK/key" -cipher rc4
expect2 "no key on standard input" "$K" "${base[@]}" -port 1 -encrypt yes -key -
expect2 "set iv = no" "$K" "${base[@]}" -port 1 -encrypt yes -keyfile "$WORK/key" -cipher Rijndael -iv yes
expect2 "needs a key" "$K" "${base[@]}" -port 1 -encrypt yes
expect2 "encrypt must be yes or no" "$K" "${base[@]}" -port 1 -encrypt maybe
expect2 "proto must be tcp, udp or spa" "$K" "${base[@]}" -port 1 -proto icmp
expect2 "is IPv6: give -client IPV4ADDRESS or -4, or add IP6" "$K" "${base[@]}" -port 1 -client 2001:db8::1
expect2 "client must be an IPv4 or IPv6 address" "$K" "${base[@]}" -port 1 -client 198.18.0.256
expect2 "give -4 or -6, not both" "$K" "${base[@]}" -port 1 -4 -6
expect2 "asks for IPv6 but 198.18.0.1 is an IPv4" "$K" "${base[@]}" -port 1 -6 -remote 198.18.0.1
expect2 "no remote host" "$K" -knock IP,PORT -portspan 1000-1255 -port 1
expect2 "cannot read key file" "$K" "${base[@]}" -port 1 -encrypt yes -keyfile "$WORK/missing"
printf 'knock = IP,PORT\nportspan = 1000-1255\nprot = tcp\n' > "$WORK/bad.conf"
expect2 "bad.conf:3: unknown knockclient setting 'prot'" "$K" -conf "$WORK/bad.conf" -test -client 198.18.0.2 -port 1
printf 'knock = IP,PORT\nportspan = 1000-1255\n\niv = perhaps\n' > "$WORK/bad.conf"
expect2 "bad.conf:4: iv must be yes or no" "$K" -conf "$WORK/bad.conf" -test -client 198.18.0.2 -port 1

# proto = spa: the documented vector (PROTOCOL.md 6.7 a and d), -keygen, test-only options.
spa=(-test -proto spa -client 198.18.0.2 -port 22 -flag0 1 -knock IP,PORT,FLAG0,CHECKSUM -spatime 1700000000
     -spanonce 404142434445464748494a4b4c4d4e4f5051525354555657)
out=$("$K" "${spa[@]}" -key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= 2>/dev/null)
[ "$out" = "a1ef5ed5a9000000006553f100404142434445464748494a4b4c4d4e4f5051525354555657122b0572d0f678e75156bcec4f77ad57eca7c94aa22fb2b0" ] ||
  fail "spa -test printed '$out'"
# IPv6 (PROTOCOL.md 6.7 e; section 1's IP6 example over a 256-port span, one port per byte).
out=$("$K" "${spa[@]}" -client 2001:db8::2 -knock IP6,PORT,FLAG0,CHECKSUM -key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= 2>/dev/null)
[ "$out" = "a1ef5ed5a9000000006553f100404142434445464748494a4b4c4d4e4f5051525354555657f43808c8d0e079168ff487beaf9c659092acac3b0ecc9f08b35833d8c7189aad4363ca31" ] ||
  fail "spa -test with IP6 printed '$out'"
out=$("$K" -test -client 2001:db8::2 -knock IP6,PORT,FLAG0,CHECKSUM -portspan 1000-1255 -port 22 -flag0 1 2>/dev/null)
[ "$out" = "1032,1001,1013,1184,1000,1000,1000,1000,1000,1000,1000,1000,1000,1000,1000,1002,1000,1022,1001,1255" ] ||
  fail "IP6 knock printed '$out'"
# Both fields: the client's family gets its address, the other zeros; `observed` zeros in both.
out=$("$K" -test -client 198.18.0.2 -knock IP,IP6,PORT -portspan 1000-1255 -port 22 2>/dev/null)
[ "$out" = "1198,1018,1000,1002,$(printf '1000,%.0s' $(seq 16))1000,1022" ] || fail "IP,IP6 with a v4 client printed '$out'"
out=$("$K" -test -client observed -knock IP,IP6,PORT -portspan 1000-1255 -port 22 2>/dev/null)
[ "$out" = "$(printf '1000,%.0s' $(seq 20))1000,1022" ] || fail "-client observed printed '$out'"
expect2 "knock carries IP6 but no IP field and the client address 198.18.0.2 is IPv4" "$K" -test -client 198.18.0.2 \
  -knock IP6,PORT -portspan 1000-1255 -port 1
"$K" -keygen "$WORK/spa.key" 2>"$WORK/err" || fail "-keygen exited $?"
grep -q "key id [0-9a-f]\{8\}" "$WORK/err" || fail "-keygen reports no key id: $(cat "$WORK/err")"
[ "$(stat -c %a "$WORK/spa.key")" = 600 ] || fail "-keygen file mode $(stat -c %a "$WORK/spa.key")"
[ "$(wc -c <"$WORK/spa.key")" = 45 ] || fail "-keygen file is not one line of 44 base64 characters"
before=$(cat "$WORK/spa.key")
rc=0; "$K" -keygen "$WORK/spa.key" 2>/dev/null || rc=$?
[ "$rc" = 1 ] && [ "$(cat "$WORK/spa.key")" = "$before" ] || fail "-keygen overwrote a key file (exit $rc)"
ln -s "$WORK/elsewhere" "$WORK/spa-link.key"
rc=0; "$K" -keygen "$WORK/spa-link.key" 2>/dev/null || rc=$?
[ "$rc" = 1 ] && [ ! -e "$WORK/elsewhere" ] || fail "-keygen followed a symbolic link (exit $rc)"
out=$("$K" "${spa[@]}" -keyfile "$WORK/spa.key" -spaform ports -portspan 1000-1255)
[ "$(echo "$out" | sed -n 2p | tr ',' '\n' | wc -l)" = 61 ] || fail "spa port form over 256 ports is not 61 ports: $out"
expect2 "spanonce is only for -test" "$K" -proto spa -keyfile "$WORK/spa.key" -remote 198.18.0.1 -port 22 -knock PORT -spanonce 00
expect2 "an SPA key must be the base64 of exactly 32 bytes" "$K" "${spa[@]}" -key s3cret
expect2 "spaform must be udp, ports or udpports" "$K" "${spa[@]}" -keyfile "$WORK/spa.key" -spaform tcp
expect2 "spacipher needs proto = spa" "$K" "${base[@]}" -port 1 -spacipher aes256gcm
printf 'proto = spa\nknock = PORT\npassphrase = x\n' > "$WORK/bad.conf"
expect2 "bad.conf:3: passphrase needs salt" "$K" -conf "$WORK/bad.conf" -test -port 1

# -proxy HOST PORT and -wait PORT: usage errors exit 2; a port that stays closed exits 1 with one
# line after -waittime (127.0.0.1: a free port that nothing listens on); -proxy prints nothing else.
spak=(-proto spa -keyfile "$WORK/spa.key" -port 22 -knock IP,PORT,FLAG0,CHECKSUM)
expect2 "give the port after the host: -proxy HOST PORT" "$K" "${spak[@]}" -proxy 127.0.0.1
expect2 "the port must be a number from 1 to 65535, not '0'" "$K" "${spak[@]}" -proxy 127.0.0.1 0
expect2 "option -wait: the port must be" "$K" "${spak[@]}" -remote 127.0.0.1 -wait ssh
expect2 "-proxy sends the knock and connects: it cannot be used with -test" "$K" "${spak[@]}" -proxy 127.0.0.1 22 -test
expect2 "-wait sends the knock and connects: it cannot be used with -logfile" "$K" "${spak[@]}" -remote 127.0.0.1 \
  -wait 22 -logfile "$WORK/log"
expect2 "give either -proxy HOST PORT or -wait PORT, not both" "$K" "${spak[@]}" -proxy 127.0.0.1 22 -wait 22
expect2 "-waittime needs -proxy HOST PORT or -wait PORT" "$K" "${spak[@]}" -remote 127.0.0.1 -waittime 2
expect2 "waittime must be seconds" "$K" "${spak[@]}" -remote 127.0.0.1 -wait 22 -waittime 0
closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rc=0; "$K" "${spak[@]}" -proxy 127.0.0.1 "$closed" -waittime 0.3 </dev/null >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$WORK/err")" = 1 ] && [ ! -s "$WORK/out" ] ||
  fail "-proxy to a closed port: exit $rc (expected 1 and one line): $(cat "$WORK/err")"
grep -q "error: still closed after the knock: 127.0.0.1 port [0-9]* accepted no connection within 0.3 s ([0-9]* attempts, the last refused)$" \
  "$WORK/err" || fail "-proxy to a closed port: $(cat "$WORK/err")"
rc=0; "$K" "${spak[@]}" -remote 127.0.0.1 -wait "$closed" -waittime 0.3 2>"$WORK/err" || rc=$?
[ "$rc" = 1 ] && grep -q "error: still closed after the knock" "$WORK/err" || fail "-wait to a closed port: exit $rc: $(cat "$WORK/err")"

# -h and -man.
"$K" -h > "$WORK/h" || fail "-h exited $?"
grep -q "^usage: knockclient" "$WORK/h" || fail "-h prints no usage"
"$K" -man > "$WORK/man" || fail "-man exited $?"
grep -q '^\.TH KNOCKCLIENT 1' "$WORK/man" || fail "-man does not print the roff page when stdout is not a terminal"
grep -q '^\.SH EXIT STATUS' "$WORK/man" || fail "-man prints an incomplete page"
echo "ok: knockclient command line"
