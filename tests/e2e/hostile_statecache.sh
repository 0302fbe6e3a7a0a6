#!/usr/bin/env bash
# A damaged state cache is never silently lost: a corrupt, truncated, empty, foreign or planted
# (symlink, world-writable) cache stops the daemon with exit 1 or 2 and a message naming the
# file, and leaves the file as it was; `knockdaemon -fresh` moves a damaged cache aside to
# PATH.corrupt-TIME (byte for byte) and starts with an empty state, which it then saves.
source "$(dirname "$0")/common.bash"
D="$BIN_DIR/knockdaemon"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

knock_conf statecache-test-key >"$tmp/client.conf"
cat "$tmp/client.conf" - >"$tmp/daemon.conf" <<CONF
runmode    = network
statecache = $tmp/cache/state.cache
usecache   = yes
<actions>
  <action open>
    condition = PORT == 22
    template  = count
    use       = yes
  </action>
</actions>
<template count>
  state  = state(IP,visits,num)++
  system = "/bin/true IP"
</template>
CONF
mkdir -m 700 "$tmp/cache"
chmod 600 "$tmp"/*.conf
CACHE=$tmp/cache/state.cache
ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -flag0 1 -test)
"$BIN_DIR/pcapgen" "$tmp/knock.pcap" --knock "198.18.0.2@1:0.01:$ports"
# A second knock (a fresh IV): the same knock twice would be refused as a replay.
ports2=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 -flag0 1 -test)
"$BIN_DIR/pcapgen" "$tmp/knock2.pcap" --knock "198.18.0.2@1:0.01:$ports2"
PCAP=$tmp/knock.pcap

run() {  # run [OPTIONS]: replay the knock; exit code in $rc, stderr in $err
  set +e; err=$("$D" -conf "$tmp/daemon.conf" -pcap "$PCAP" "$@" 2>&1 >/dev/null); rc=$?; set -e
  [ "$rc" -lt 128 ] || fail "daemon died from signal $((rc - 128)): $err"
}
visits() { sed -n 's/^S [0-9.]* 3 198\.18\.0\.2 visits num i\([0-9]*\)$/\1/p' "$CACHE"; }

# A good cache first: two runs count two visits.
run; [ "$rc" -eq 0 ] || fail "first run exited $rc: $err"
PCAP=$tmp/knock2.pcap run; [ "$rc" -eq 0 ] || fail "second run exited $rc: $err"
[ "$(visits)" = 2 ] || fail "expected 2 visits in the cache, got: $(cat "$CACHE")"
cp "$CACHE" "$tmp/good.cache"

refused() {  # refused WHAT: the damaged $CACHE stops the daemon, is named, and is left alone
  local what=$1 before after
  before=$(sha256sum <"$CACHE")
  run
  [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "$what: exit $rc, expected 1 or 2: $err"
  grep -qF "$CACHE" <<<"$err" || fail "$what: the message does not name the cache: $err"
  [ "$(wc -l <<<"$err")" -le 2 ] || fail "$what: more than a short message: $err"
  after=$(sha256sum <"$CACHE")
  [ "$before" = "$after" ] || fail "$what: the damaged cache was changed"
  ls "$tmp/cache" | grep -q corrupt && fail "$what: moved aside without -fresh"
  echo "-- $what: exit $rc: $(tail -1 <<<"$err")"
}

head -c $(($(stat -c %s "$tmp/good.cache") / 2)) "$tmp/good.cache" >"$CACHE"
refused "truncated cache"
grep -q -- "-fresh" <<<"$err" || fail "the message does not mention -fresh: $err"
: >"$CACHE"; refused "empty cache"
head -c 4096 /dev/urandom >"$CACHE"; refused "random bytes"
sed 's/^end [0-9]*/end 99/' "$tmp/good.cache" >"$CACHE"; refused "wrong record count"
sed 's/visits num i2/visits num i2x/' "$tmp/good.cache" >"$CACHE"; refused "bad value"
{ cat "$tmp/good.cache"; echo "S 1 extra num 1"; } >"$CACHE"; refused "data after the end line"
printf 'S 1 a num 1\nend 1\n' >"$CACHE"; refused "no magic line"
cp "$tmp/good.cache" "$CACHE"; chmod 666 "$CACHE"; refused "world-writable cache"; chmod 600 "$CACHE"
rm "$CACHE"; cp "$tmp/good.cache" "$tmp/elsewhere"; ln -s "$tmp/elsewhere" "$CACHE"
run
[ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "symlinked cache: exit $rc: $err"
grep -q "symbolic link" <<<"$err" || fail "symlinked cache: $err"
cmp -s "$tmp/elsewhere" "$tmp/good.cache" || fail "the symlink's target was written"
rm "$CACHE"

# -fresh: the damaged file is kept aside, byte for byte; the new state starts empty and is saved.
head -c -3 "$tmp/good.cache" >"$CACHE"; cp "$CACHE" "$tmp/damaged"
run -fresh
[ "$rc" -eq 0 ] || fail "-fresh exited $rc: $err (waiting on the lead's -fresh?)"
aside=$(ls "$tmp/cache" | grep '^state\.cache\.corrupt-' || true)
[ "$(wc -w <<<"$aside")" -eq 1 ] || fail "-fresh: expected one state.cache.corrupt-* file, got: $(ls "$tmp/cache")"
cmp -s "$tmp/cache/$aside" "$tmp/damaged" || fail "-fresh: the file kept aside differs from the damaged one"
grep -qF "$aside" <<<"$err" || fail "-fresh: the log does not say where the damaged file went: $err"
[ "$(visits)" = 1 ] || fail "-fresh: expected a new cache with 1 visit, got: $(cat "$CACHE" 2>&1)"
# A second damaged cache is kept aside too, not over the first.
head -c 20 "$tmp/good.cache" >"$CACHE"
run -fresh
[ "$rc" -eq 0 ] || fail "second -fresh exited $rc: $err"
[ "$(ls "$tmp/cache" | grep -c '^state\.cache\.corrupt-')" -eq 2 ] || fail "second -fresh: $(ls "$tmp/cache")"
cmp -s "$tmp/cache/$aside" "$tmp/damaged" || fail "the first damaged file was overwritten"
# -fresh with a good cache changes nothing.
PCAP=$tmp/knock2.pcap run -fresh
[ "$rc" -eq 0 ] && [ "$(visits)" = 2 ] || fail "-fresh with a good cache: exit $rc, $(cat "$CACHE")"
echo "PASS"
