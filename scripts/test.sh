#!/usr/bin/env bash
# The whole test suite, from nothing: installs what is missing, then
#   1. g++ build (warnings are errors under CI=true) and every test: unit, oracle, end-to-end;
#   2. clang-14 build with AddressSanitizer + UndefinedBehaviorSanitizer (no suppressions) and
#      libFuzzer instrumentation: every test again, then each fuzz target for a short run.
# PORTKNOCK_FUZZ_SECONDS (default 60) sets the length of each fuzz run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh"
jobs=$(nproc)
fuzz_seconds=${PORTKNOCK_FUZZ_SECONDS:-60}

echo "== build: g++"
"$here/scripts/build.sh" "$here/build"
echo "== tests: g++ build"
ctest --test-dir "$here/build" --output-on-failure -j"$jobs"

echo "== build: clang-14, ASan + UBSan, fuzz targets"
CC=clang-14 CXX=clang++-14 "$here/scripts/build.sh" "$here/build-asan" \
  -DCMAKE_BUILD_TYPE=Debug -DPORTKNOCK_SANITIZE=ON -DPORTKNOCK_FUZZ=ON -DPORTKNOCK_BENCH=OFF \
  -DPORTKNOCK_FUZZ_SECONDS="$fuzz_seconds"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "== tests: sanitizer build"
ctest --test-dir "$here/build-asan" --output-on-failure -j"$jobs" -LE fuzz
echo "== fuzz: ${fuzz_seconds}s per target"
ctest --test-dir "$here/build-asan" --output-on-failure -j"$jobs" -L fuzz
