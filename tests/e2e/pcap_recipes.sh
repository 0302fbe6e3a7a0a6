#!/usr/bin/env bash
# The manual's recipes, verbatim (block tags restored), replayed with -pcap from captures whose
# timestamps span hours and days. A recording template stands in for iptables.
source "$(dirname "$0")/common.bash"
tmp=$(mktemp -d /tmp/pkrecipe.XXXXXX); trap 'rm -rf "$tmp"' EXIT
export TZ=UTC
# 2026-11-18 08:01:00 UTC: well inside an hour and a day, so +60 s stays in both.
T=1795507260

knock_conf recipe-key >"$tmp/common.conf"
cp "$tmp/common.conf" "$tmp/client.conf"; chmod 600 "$tmp/client.conf"

ports() {  # ports PORT FLAG0
  "$BIN_DIR/knockclient" -conf "$tmp/client.conf" -remote 198.18.0.1 -client 198.18.0.2 -port "$1" -flag0 "$2" -test
}

# run_recipe NAME 'RECIPE' 'KNOCKS' EXPECTED
#   KNOCKS: "OFFSET:FLAG0 ..." seconds after T; a last packet at the end moves the clock on.
#   EXPECTED: the lines the recording template must have written, "|"-separated.
run_recipe() {
  local name=$1 recipe=$2 knocks=$3 expected=$4
  local rec="$tmp/$name.rec" conf="$tmp/$name.conf" args=() last=0
  : >"$rec"
  {
    cat "$tmp/common.conf"
    echo "runmode = network"
    printf '%s\n' "$recipe"
    echo "<template iptables_open>"
    echo "  system = \"echo open IP PORT FLAG0 TIME >> $rec\""
    echo "</template>"
    echo "<template iptables_close>"
    echo "  system = \"echo close IP PORT FLAG0 TIME >> $rec\""
    echo "</template>"
  } >"$conf"
  chmod 600 "$conf"
  for k in $knocks; do
    local offset=${k%%:*} flag=${k##*:}
    args+=(--knock "198.18.0.2@$((T + offset)):0.01:$(ports 22 "$flag")")
    last=$((T + offset + 10))
  done
  args+=(--knock "198.18.0.9@$last:1:2000")  # one stray port: the clock reaches $last
  "$BIN_DIR/pcapgen" "$tmp/$name.pcap" "${args[@]}"
  "$BIN_DIR/knockdaemon" -conf "$conf" -pcap "$tmp/$name.pcap" >"$tmp/$name.out" 2>"$tmp/$name.log" \
    || fail "$name: daemon failed: $(tail -3 "$tmp/$name.log")"
  local got
  got=$(paste -sd'|' "$rec")
  [ "$got" = "$expected" ] || fail "$name: recorded '$got', expected '$expected'; log: $(grep -v debug "$tmp/$name.log" | tail -8)"
  echo "ok: $name"
}

run_recipe immediate_and_delayed '
<actions>
  <action>
    condition = PORT == 22
    template  = iptables_open
    use       = yes
  </action>
  <action>
    condition = PORT == 22
    template  = iptables_close
    delay     = 5 # minutes
    use       = yes
  </action>
</actions>' "0:1 400:1" \
  "open 198.18.0.2 22 1 $T|close 198.18.0.2 22 1 $T|open 198.18.0.2 22 1 $((T + 400))"

run_recipe throttle_hourly '
<actions>
  <action throttle>
    condition = PORT == 22 && ( ! state(IP,visits,prevtime) || TIME-state(IP,visits,prevtime) > 3600)
    template  = prev_visit
    template  = iptables_open
    use       = yes
  </action>
</actions>
<template prev_visit>
  state     = state(IP,visits,prevtime) = TIME
</template>' "0:1 600:1 3000:1 3700:1" \
  "open 198.18.0.2 22 1 $T|open 198.18.0.2 22 1 $((T + 3700))"

run_recipe limit_two '
<actions>
  <action limit>
    condition = PORT == 22 && state(IP,visits,num) < 2
    template  = num_visits
    template  = iptables_open
    use       = yes
  </action>
</actions>
<template num_visits>
  state     = state(IP,visits,num)++
</template>' "0:1 60:1 7200:1" \
  "open 198.18.0.2 22 1 $T|open 198.18.0.2 22 1 $((T + 60))"

# (its knock = IP,PORT,FLAG0,CHECKSUM line is in common.conf)
run_recipe otk_counter '
<actions>
  <action otk>
    condition = PORT == 22 && state(IP,visits,PORT,num) < FLAG0
    template  = num_visits
    template  = iptables_open
    use       = yes
  </action>
</actions>
<template num_visits>
  state     = state(IP,visits,PORT,num)++
</template>' "0:1 60:1 120:2 180:2 240:3" \
  "open 198.18.0.2 22 1 $T|open 198.18.0.2 22 2 $((T + 120))|open 198.18.0.2 22 3 $((T + 240))"

run_recipe otk_unique '
<actions>
  <action otk>
    condition = PORT == 22 && ! state(IP,uniqueval,FLAG0)
    template  = iptables_open
    template  = keyvisit
    use       = yes
  </action>
</actions>
<template keyvisit>
  state = state(IP,uniqueval,FLAG0)++
</template>' "0:5 60:5 120:9 90000:5" \
  "open 198.18.0.2 22 5 $T|open 198.18.0.2 22 9 $((T + 120))"

# The manual gives only the condition for expiring OTKs; the state template carries the same
# key so that the value is remembered per hour (per day).
run_recipe otk_hourly '
<actions>
  <action otk>
    condition = PORT == 22 && ! state(IP,uniqueval,THISHOUR,FLAG0)
    template  = iptables_open
    template  = keyvisit
    use       = yes
  </action>
</actions>
<template keyvisit>
  state = state(IP,uniqueval,THISHOUR,FLAG0)++
</template>' "0:5 60:5 3600:5 3660:5" \
  "open 198.18.0.2 22 5 $T|open 198.18.0.2 22 5 $((T + 3600))"

run_recipe otk_daily '
<actions>
  <action otk>
    condition = PORT == 22 && ! state(IP,uniqueval,THISDAY,FLAG0)
    template  = iptables_open
    template  = keyvisit
    use       = yes
  </action>
</actions>
<template keyvisit>
  state = state(IP,uniqueval,THISDAY,FLAG0)++
</template>' "0:5 3600:5 36000:5 86400:5 90000:5" \
  "open 198.18.0.2 22 5 $T|open 198.18.0.2 22 5 $((T + 86400))"

# Delayed actions still pending at the end of a capture are reported, not run.
run_recipe pending_at_end '
<actions>
  <action>
    condition = PORT == 22
    template  = iptables_close
    delay     = 1h
    use       = yes
  </action>
</actions>' "0:1" ""
grep -q "still pending at the end of the capture" "$tmp/pending_at_end.log" || fail "pending action not reported"
echo "PASS"
