#!/usr/bin/env bash
# run_fuzzer.sh FUZZER SEED_DIR SECONDS: fuzz for SECONDS from the seeds (left untouched);
# fails if the fuzzer finds a crash, a leak or a timeout.
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536
      -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus")
[ -d "$seeds" ] && args+=("$seeds")
if ! "$fuzzer" "${args[@]}" >"$work/log" 2>&1; then
  tail -40 "$work/log"
  echo "fuzzer $(basename "$fuzzer") failed; reproducer(s):"
  ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null || true
  exit 1
fi
grep -E "^stat::number_of_executed_units|^Done" "$work/log" || true
