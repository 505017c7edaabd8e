#!/usr/bin/env bash
# The README's second command: install what is missing, build, and run every test:
# unit and simulation tests, the end-to-end suite against real kilnd processes,
# the same under AddressSanitizer + UBSan, and a short fuzzing run of the parsers.
# KILN_TEST_QUICK=1 skips the sanitizer build and the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
echo "== unit, simulation and end-to-end tests"
# A failing test is run once more before it counts (the end-to-end suite runs real
# processes on a shared 2-core machine); a retry that passes still prints the failure.
(cd build && ctest --output-on-failure -j2 --repeat until-pass:2)
if [ "${KILN_TEST_QUICK:-0}" != 1 ]; then
  echo "== AddressSanitizer + UBSan"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DKILN_SANITIZE=ON
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 KILN_SIM_HISTORIES=300 ctest --output-on-failure -j2 --repeat until-pass:2)
  echo "== fuzzing the parsers (libFuzzer)"
  scripts/fuzz.sh 30
fi
echo "== all tests passed"
