#!/usr/bin/env bash
# The original format's forgery (facts.md, "Learned since"): Crypt::CBC has no MAC and, with
# iv = yes, the IV travels in clear, so XOR-ing it rewrites the first plaintext block. A knock
# captured from 198.18.0.2 is rewritten offline into a knock for 198.18.0.66 (checksum
# included), which decodes and satisfies `IP eq LOGIP` when sent from 198.18.0.66. The daemon
# keeps the ciphertext after the IV of every accepted knock, so the forgery (whose ciphertext is
# the captured one) is refused, and so is a plain replay. Before that defence both opened.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkforge.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

knock_conf forgery-key >"$tmp/client.conf"
{ cat "$tmp/client.conf"; cat <<CONF
statecache = $tmp/state.cache
usecache   = yes
<actions>
  <action open>
    condition = PORT == 22 && IP eq LOGIP
    template  = open
  </action>
</actions>
<template open>
  system = "/bin/sh -c 'echo open LOGIP >> $tmp/record'"
</template>
CONF
} >"$tmp/daemon.conf"
chmod 600 "$tmp"/*.conf

ports=$("$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port 22 \
  -flag0 1 -test)
# The forger's work, offline: span 2000-2255 is one byte per port; bytes 8..15 are the IV, and
# the first plaintext block is IP(4) PORT(2) FLAG0 CHECKSUM.
forged=$(/usr/bin/python3 - "$ports" <<'PY'
import sys
b = [int(p) - 2000 for p in sys.argv[1].split(",")]
assert bytes(b[:8]) == b"RandomIV" and len(b) == 32
old = [198, 18, 0, 2, 0, 22, 1]; old.append(sum(old) % 256)
new = [198, 18, 0, 66, 0, 22, 1]; new.append(sum(new) % 256)
for i in range(8):
    b[8 + i] ^= old[i] ^ new[i]
print(",".join(str(2000 + x) for x in b))
PY
)
[ "$forged" != "$ports" ] || fail "the forgery changed nothing"

run() {  # run PCAP [OPTIONS]: the daemon over a capture; its log in $tmp/log
  "$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -pcap "$@" >"$tmp/out" 2>"$tmp/log" ||
    fail "the daemon failed: $(tail -3 "$tmp/log")"
}

# 1. The forgery alone is a valid knock for 198.18.0.66: the attack is real.
"$BIN_DIR/pcapgen" "$tmp/forged.pcap" --knock "198.18.0.66@1:0.01:$forged"
"$BIN_DIR/knockdaemon" -conf "$tmp/daemon.conf" -pcap "$tmp/forged.pcap" -test >"$tmp/out" 2>"$tmp/log" ||
  fail "-test failed: $(tail -3 "$tmp/log")"
grep -q "knock from 198.18.0.66: IP=198.18.0.66 PORT=22 FLAG0=1" "$tmp/out" ||
  fail "the forged knock does not decode as 198.18.0.66's: $(cat "$tmp/out" "$tmp/log")"
say "the forgery decodes: $(grep 'knock from' "$tmp/out")"

# 2. The real knock, then its forgery from 198.18.0.66 and a plain replay from 198.18.0.2.
"$BIN_DIR/pcapgen" "$tmp/attack.pcap" --knock "198.18.0.2@1:0.01:$ports" \
  --knock "198.18.0.66@5:0.01:$forged" --knock "198.18.0.2@9:0.01:$ports"
run "$tmp/attack.pcap"
[ "$(cat "$tmp/record" 2>/dev/null)" = "open 198.18.0.2" ] ||
  fail "expected only the real knock to open, got: $(cat "$tmp/record" 2>/dev/null) / $(grep knock "$tmp/log")"
grep -q "port knocks refused as replays (a ciphertext seen before): 2" "$tmp/log" ||
  fail "the forgery and the replay were not counted as refused: $(cat "$tmp/log")"

# 3. A restart keeps what was seen: the forgery alone, in a new run, is still refused.
: >"$tmp/record"
run "$tmp/forged.pcap"
[ ! -s "$tmp/record" ] || fail "after a restart the forgery opened: $(cat "$tmp/record")"
say "PASS: the IV-rewriting forgery and the replay are refused, also after a restart"
