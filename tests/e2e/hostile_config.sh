#!/usr/bin/env bash
# Every kind of malformed configuration knockdaemon can be given (beyond those in
# daemon_cli.sh): exit 2, nothing on stdout, and exactly one line on stderr that starts with
# FILE:LINE: naming the offending line (for a key that is missing, the line of the key that
# needs it, or the file). Includes, blocks, regexes, expressions, numbers, ciphers, keys.
set -euo pipefail
D="$BIN_DIR/knockdaemon"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Line numbers matter: the cases below name them.
cat >"$tmp/good.conf" <<'CONF'
runmode      = file
logfile      = /var/log/kern.log
uselogformat = fw
<logformat fw>
  required = portknock
  ipclient = SRC=(\S+)
  port     = DPT=([0-9]+)
</logformat>
useethfilter = syn
<ethfilter syn>
  proto  = IP_PROTO_TCP
  flags  = SYN
  src_ip = ^198\.18\.
</ethfilter>
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 2000-2255
encrypt  = yes
cipher   = Blowfish
iv       = yes
key      = test-key
knocktimeout = 30
maxsources   = 4096
fileinterval = 0.5
<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP
    template  = open
    delay     = 2s
    use       = yes
  </action>
</actions>
<template open>
  system = "/bin/true IP PORT"
  state  = state(IP,visits,num)++
</template>
CONF
chmod 600 "$tmp/good.conf"
out=$("$D" -check -conf "$tmp/good.conf" 2>&1) || fail "the base config is refused: $out"

n=0
bad() {  # bad LINE 'sed expression' [grep pattern for the message]
  local line=$1 expr=$2 want=${3:-}
  n=$((n + 1))
  local f=$tmp/bad$n.conf
  sed "$expr" "$tmp/good.conf" >"$f"; chmod 600 "$f"
  cmp -s "$f" "$tmp/good.conf" && fail "case $n: '$expr' changed nothing"
  local rc=0 stdout
  stdout=$("$D" -check -conf "$f" 2>"$tmp/err") || rc=$?
  local err; err=$(cat "$tmp/err")
  [ "$rc" -eq 2 ] || fail "case $n '$expr': exit $rc, expected 2: $err"
  [ -z "$stdout" ] || fail "case $n '$expr': stdout: $stdout"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "case $n '$expr': not one line: $err"
  grep -q "^$f:$line: " "$tmp/err" || fail "case $n '$expr': expected $f:$line:, got: $err"
  [ -z "$want" ] || grep -qiE "$want" "$tmp/err" || fail "case $n '$expr': message lacks /$want/: $err"
}

# unknown blocks and keys, at top level and inside each kind of block
bad 1 '1i <frobnicate x>\n  a = 1\n</frobnicate>' "unknown key 'frobnicate'"
bad 5 's/^  required = .*/  requried = portknock/' "unknown logformat key"
bad 12 's/^  flags  = SYN/  flagz  = SYN/' "unknown ethfilter property"
bad 28 's/^    delay .*/    dealy = 2s/' "dealy"
bad 34 's/^  state  = .*/  sate = 1/' "sate"
bad 25 's/^<actions>/<actions>\n  frob = 1/' "frob"
bad 1 's/^runmode .*/runmode = both/' "runmode"
bad 5 's/^<logformat fw>/logformat = fw\n<logformat other>/' "clashes|plain|block"
# regexes: a logformat's and an ethfilter's
bad 6 's/^  ipclient = .*/  ipclient = SRC=(\\S+/' "regular expression"
bad 7 's/^  port     = .*/  port     = DPT=[9-0]+/' "regular expression"
bad 13 's/^  src_ip = .*/  src_ip = ^198\\.18\\.[/' "regular expression"
bad 13 's/^  src_ip = .*/  src_ip = (?<n>a)(?<n>b)/' "regular expression"
# ethfilter values
bad 11 's/^  proto  = .*/  proto  = IP_PROTO_WHAT/' "proto"
bad 12 's/^  flags  = SYN/  flags  = SYN|XMAS/' "flags"
# expressions: syntax, unknown names, unbalanced parentheses
bad 26 's/^    condition .*/    condition = (PORT == 22/'
bad 26 's/^    condition .*/    condition = PORT === 22/'
bad 26 's/^    condition .*/    condition = PORT == 22 \&\&/'
bad 26 's/^    condition .*/    condition = NOSUCHFIELD == 22/'
bad 34 's/^  state  = .*/  state  = state(IP,visits,num/'
# port spans
bad 16 's/^portspan .*/portspan = 2000-2254/' "power of two"
bad 16 's/^portspan .*/portspan = 2255-2000/' "backwards"
bad 16 's/^portspan .*/portspan = 2000-2127,2100-2227/' "twice"
bad 16 's/^portspan .*/portspan = 65500-65627/' "port"
bad 16 's/^portspan .*/portspan = 2000-x/' "port"
# ciphers, keys, knock formats
bad 18 's/^cipher .*/cipher = blowfish2/' "cipher"
bad 19 's/^iv .*/iv = perhaps/' "yes or no"
bad 17 's/^encrypt .*/encrypt = maybe/' "yes or no"
bad 17 '/^key /d' "key"
bad 20 's/^key .*/keyfile = \/nonexistent\/portknock.key/' "key file"
bad 15 's/^knock .*/knock = IP,PORT,FLAG0,FLAG0/' "twice"
bad 15 's/^knock .*/knock = /' "empty"
# numbers: not numbers, out of range, not finite
bad 21 's/^knocktimeout .*/knocktimeout = -1/' "knocktimeout"
bad 21 's/^knocktimeout .*/knocktimeout = 1e999/' "knocktimeout"
bad 21 's/^knocktimeout .*/knocktimeout = nan/' "knocktimeout"
bad 22 's/^maxsources .*/maxsources = 99999999999/' "maxsources"
bad 22 's/^maxsources .*/maxsources = 12abc/' "maxsources"
bad 23 's/^fileinterval .*/fileinterval = soon/' "fileinterval"
bad 28 's/^    delay .*/    delay = -5s/' "delay"
bad 28 's/^    delay .*/    delay = 2 fortnights/' "delay"
# file mode without what it needs
bad 1 '/^logfile /d' "logfile"
bad 1 '/^uselogformat /d' "uselogformat"
bad 3 's/^uselogformat .*/uselogformat = nosuch/' "nosuch"
# structure
bad 27 's/^<template open>/<template other>/' ""
bad 36 '$a <template open>\n  system = "/bin/false"\n</template>' "twice|defined"
bad 35 's/^<\/template>/<\/templat>/' ""

# an include that fails names the including line, and a bad included file names its own line
printf 'knock = IP,PORT,FLAG11\n' >"$tmp/part.inc"
sed "s|^knock .*|<<include $tmp/part.inc>>|" "$tmp/good.conf" >"$tmp/inc.conf"; chmod 600 "$tmp/inc.conf"
rc=0; "$D" -check -conf "$tmp/inc.conf" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && grep -q "^$tmp/part.inc:1: " "$tmp/err" || fail "bad include: exit $rc: $(cat "$tmp/err")"

# binary garbage and a huge line as the config: exit 2, one line, no crash
head -c 65536 /dev/urandom >"$tmp/garbage.conf"; chmod 600 "$tmp/garbage.conf"
rc=0; "$D" -check -conf "$tmp/garbage.conf" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -le 1 ] && grep -q "^$tmp/garbage.conf" "$tmp/err" \
  || fail "binary config: exit $rc: $(head -c 300 "$tmp/err")"
{ printf 'key = '; head -c 2000000 /dev/zero | tr '\0' a; echo; } >"$tmp/huge.conf"; chmod 600 "$tmp/huge.conf"
rc=0; "$D" -check -conf "$tmp/huge.conf" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "huge config: exit $rc: $(head -c 300 "$tmp/err")"

# missing required keys: exit 2, one line naming the file
printf 'runmode = network\n' >"$tmp/empty.conf"; chmod 600 "$tmp/empty.conf"
rc=0; "$D" -check -conf "$tmp/empty.conf" 2>"$tmp/err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "no knock key: exit $rc: $(cat "$tmp/err")"
grep -q "knock" "$tmp/err" || fail "no knock key: $(cat "$tmp/err")"
grep -q "^$tmp/empty.conf: knock is not set" "$tmp/err" || fail "a missing knock is not reported with the file: $(cat "$tmp/err")"
echo "PASS: $n malformed configs refused with FILE:LINE"
