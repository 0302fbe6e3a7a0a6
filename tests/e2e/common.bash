# Shared by the script tests (source it first): failing, polling with a deadline, and the knock
# settings most tests give both peers.
set -euo pipefail

SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

say() { printf '%s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 50 ms until it succeeds or time runs out.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${seconds}s waiting for: $what"
    sleep 0.05
  done
}

# knock_conf KEY [CIPHER]: the knock both peers must agree on (IP,PORT,FLAG0,CHECKSUM over the
# 256 ports 2000-2255, encrypted, a random IV per knock), as config lines on stdout.
knock_conf() {
  printf '%s\n' 'knock    = IP,PORT,FLAG0,CHECKSUM' 'portspan = 2000-2255' 'encrypt  = yes' \
    "cipher   = ${2:-Blowfish}" 'iv       = yes' "key      = $1"
}

# The daemon's peak RSS bound (doc/TRACKER.md): 32 MiB plus the table it logs at start.
rss_bound_kib() {  # rss_bound_kib DAEMON_LOG
  local table_kib
  table_kib=$(sed -n 's/.*sources (\([0-9]*\) KiB).*/\1/p' "$1" | head -1)
  [ -n "$table_kib" ] || fail "the daemon did not log its table size: $(head -5 "$1")"
  echo $((32 * 1024 + table_kib))
}
