#!/usr/bin/env bash
# bench.sh: portknock's knockdaemon beside Debian's knockd and fwknopd, measured in one run (not a test).
# Run as root from a clone on Debian 12. Installs what is missing (scripts/install-deps.sh, knockd,
# hping3, fwknop-server, fwknop-client, openssh-server, openssh-client), builds in Release into build-release/ (or $BENCH_BUILD_DIR), builds the measuring tool
# bench/perf/knockperf.c, then runs bench/perf/run.bash: network namespaces in 198.18.0.0/15,
# removed on exit. Prints one Markdown table (also saved to BUILD/bench-result.md); progress
# goes to stderr. Takes about 5 minutes after the build. See doc/PERFORMANCE.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BENCH_BUILD_DIR:-$root/build-release}
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: needs root (namespaces, iptables, raw sockets)" >&2; exit 1; }

bash "$root/scripts/install-deps.sh"
missing=()
for p in knockd hping3 fwknop-server fwknop-client openssh-server openssh-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bench.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The knockd package must not run its own daemon on the host: the bench starts its own.
for d in knockd fwknop-server; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$d" 2>/dev/null; then
    echo "bench.sh: note: a system $d is running; it does not see the bench's namespaces" >&2
  fi
done

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target knockdaemon knockclient knockctl pcapgen spa_bench fwknop_bench >&2
cc -O2 -Wall -Wextra -o "$build/knockperf" "$root/bench/perf/knockperf.c"

exec bash "$root/bench/perf/run.bash" "$build"
