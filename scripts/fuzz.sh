#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for ${1:-60} seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON \
  -DKILN_SANITIZE=ON >/dev/null
ninja -C build-fuzz spec_fuzzer yaml_fuzzer statsd_fuzzer sagemaker_fuzzer
for t in spec yaml statsd sagemaker; do
  mkdir -p build-fuzz/corpus-$t build-fuzz/artifacts
  echo "== fuzzing $t for ${SECS}s"
  rc=0
  build-fuzz/fuzz/${t}_fuzzer -max_total_time="$SECS" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus-$t fuzz/corpus/$t >build-fuzz/$t.log 2>&1 || rc=$?
  grep -E "stat::number_of_executed_units|SUMMARY" build-fuzz/$t.log || true
  if [ $rc -ne 0 ]; then tail -40 build-fuzz/$t.log; echo "fuzzer $t found a problem (rc=$rc)"; exit 1; fi
done
