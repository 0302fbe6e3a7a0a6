#!/usr/bin/env bash
# knockdaemon's command line: options in both spellings, exit codes, -check, -dumpconfig,
# the config search list, and the refusal of a config other users can write.
set -euo pipefail
D="$BIN_DIR/knockdaemon"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_exit() {  # expect_exit CODE CMD...: run CMD, require exit CODE; stdout+stderr in $out
  local want=$1; shift
  set +e; out=$("$@" 2>&1); local got=$?; set -e
  [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $out"
}

expect_exit 0 "$D" -h;            grep -q "^usage: knockdaemon" <<<"$out" || fail "-h: $out"
expect_exit 0 "$D" --help;        grep -q "^usage: knockdaemon" <<<"$out" || fail "--help"
expect_exit 0 "$D" -man;          grep -q "^.TH KNOCKDAEMON 1" <<<"$out" || fail "-man is not the man page"
cmp -s <("$D" -man) "$SOURCE_DIR/doc/knockdaemon.1" || fail "-man differs from doc/knockdaemon.1"
expect_exit 2 "$D" -bogus;        grep -q "unknown option -bogus" <<<"$out" || fail "-bogus: $out"
expect_exit 2 "$D" -conf;         grep -q "needs a value" <<<"$out" || fail "-conf without value: $out"
expect_exit 2 "$D" -conf "$tmp/missing.conf" -check
grep -q "missing.conf" <<<"$out" || fail "missing config not named: $out"

cat >"$tmp/good.conf" <<'CONF'
runmode  = network
interface = lo
knock    = IP,PORT,FLAG0,CHECKSUM
portspan = 2000-2255
encrypt  = yes
key      = test-key
cipher   = Blowfish
iv       = yes
<actions>
  <action open>
    condition = PORT == 22
    template  = open
    use       = yes
  </action>
</actions>
<template open>
  system = "/bin/true IP PORT"
</template>
CONF
chmod 600 "$tmp/good.conf"
expect_exit 0 "$D" -check -conf "$tmp/good.conf"
expect_exit 0 "$D" --check --conf="$tmp/good.conf"
expect_exit 0 "$D" -dumpconfig -conf "$tmp/good.conf"
grep -q '"portspan" : "2000-2255"' <<<"$out" || fail "-dumpconfig: $out"

# Each malformed config: exit 2, one line, FILE:LINE: first.
bad() {  # bad LINE 'sed expression' : derive a bad config from good.conf
  local line=$1 expr=$2
  sed "$expr" "$tmp/good.conf" >"$tmp/bad.conf"; chmod 600 "$tmp/bad.conf"
  expect_exit 2 "$D" -check -conf "$tmp/bad.conf"
  [ "$(wc -l <<<"$out")" -eq 1 ] || fail "more than one line for '$expr': $out"
  grep -q "^$tmp/bad.conf:$line: " <<<"$out" || fail "'$expr': expected $tmp/bad.conf:$line:, got: $out"
}
bad 3 's/^knock .*/knock = IP,PORT,FLAG11/'          # unknown field
bad 4 's/^portspan.*/portspan = 2000-2254/'          # 255 ports: not a power of two
bad 7 's/^cipher.*/cipher = Rot13/'                  # unknown cipher
bad 2 's/^interface.*/interfaces = lo/'              # unknown key
bad 11 's/^    condition.*/    condition = PORT == == 22/'  # bad expression
bad 12 's/^<template open>/<template other>/'        # unknown template, reported at the action's line
bad 5 '/^key /d'                                     # encrypt = yes without a key
bad 2 's/^interface.*/snapshotsize = many/'          # bad number

# Settings that let an observer forge or replay a knock pass -check with a warning at their line.
grep -q "warning" <<<"$out" && fail "the good config (iv = yes) got a warning: $out"
sed 's/^iv .*/iv = no/' "$tmp/good.conf" >"$tmp/noiv.conf"; chmod 600 "$tmp/noiv.conf"
expect_exit 0 "$D" -check -conf "$tmp/noiv.conf"
grep -q "noiv.conf:[0-9]*: iv = no: a knock seen once can be replayed" <<<"$out" || fail "iv = no: no warning: $out"
sed 's/^encrypt .*/encrypt = no/' "$tmp/good.conf" >"$tmp/noenc.conf"; chmod 600 "$tmp/noenc.conf"
expect_exit 0 "$D" -check -conf "$tmp/noenc.conf"
grep -q "noenc.conf:[0-9]*: encrypt = no: anyone who sees a knock can make one" <<<"$out" || fail "encrypt = no: $out"
sed 's/^knock .*/knock = PORT,FLAG0/' "$tmp/good.conf" >"$tmp/short.conf"; chmod 600 "$tmp/short.conf"
expect_exit 0 "$D" -check -conf "$tmp/short.conf"
grep -q "short.conf:[0-9]*: a knock of 3 bytes is under one cipher block" <<<"$out" || fail "short knock: $out"

# A config other users can write is refused, as sshd does.
chmod 666 "$tmp/good.conf"
expect_exit 2 "$D" -check -conf "$tmp/good.conf"
grep -q "writable by other users" <<<"$out" || fail "group/world-writable config accepted: $out"
chmod 600 "$tmp/good.conf"

# Without -conf: the search list, ~/.knockdaemon.conf first.
cp "$tmp/good.conf" "$tmp/.knockdaemon.conf"
HOME=$tmp expect_exit 0 "$D" -check
grep -q "$tmp/.knockdaemon.conf" <<<"$out" || fail "search list: $out"
echo "PASS"
