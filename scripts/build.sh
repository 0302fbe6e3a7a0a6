#!/usr/bin/env bash
# build.sh DIR [cmake options...]: configure (once) and build portknock into DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$here/build}; shift || true
werror=OFF; [ "${CI:-}" = true ] && werror=ON
cmake -S "$here" -B "$dir" -G Ninja -DPORTKNOCK_WERROR=$werror "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
