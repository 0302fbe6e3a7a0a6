#!/usr/bin/env bash
# The end-to-end demo: installs what is missing, builds, and shows a knock at work.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh"
"$here/scripts/build.sh" "$here/build"
exec bash "$here/tests/e2e/demo.bash" "$here/build"
