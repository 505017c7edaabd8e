#!/usr/bin/env bash
# Runs each libFuzzer target of the CI build (scripts/build-ci.sh) for ${1:-60}
# seconds, two at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
BUILD_DIR=${BUILD_DIR:-build-ci}
[ -x "$BUILD_DIR/fuzz/spec_fuzzer" ] || BUILD_DIR=$BUILD_DIR scripts/build-ci.sh
TARGETS=(spec yaml statsd sagemaker protocol cron)
fuzz_one() {
  local t=$1 rc=0
  mkdir -p "$BUILD_DIR/corpus-$t" "$BUILD_DIR/artifacts"
  "$BUILD_DIR/fuzz/${t}_fuzzer" -max_total_time="$SECS" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$BUILD_DIR/artifacts/" "$BUILD_DIR/corpus-$t" "fuzz/corpus/$t" >"$BUILD_DIR/fuzz-$t.log" 2>&1 || rc=$?
  echo "== fuzzed $t for ${SECS}s: $(grep -E 'stat::number_of_executed_units' "$BUILD_DIR/fuzz-$t.log" || echo '?')"
  if [ $rc -ne 0 ]; then tail -40 "$BUILD_DIR/fuzz-$t.log"; echo "fuzzer $t found a problem (rc=$rc)"; fi
  return $rc
}
pids=()
for t in "${TARGETS[@]}"; do
  fuzz_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || { wait; exit 1; }
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || exit 1; done
