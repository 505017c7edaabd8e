#!/usr/bin/env bash
# The README's second command: install what is missing, build, and run every test:
# unit and simulation tests, the end-to-end suite against real kilnd processes and
# a short fuzzing run of the parsers, all in one clang build with AddressSanitizer
# + UBSan at -O1 (build-ci/; its compile_commands.json also serves clang-tidy).
# No test is retried: a test that fails once fails the run.
# KILN_TEST_QUICK=1 runs the tests in the plain release build (build/) instead and
# skips the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${KILN_TEST_QUICK:-0}" = 1 ]; then
  scripts/build.sh
  echo "== unit, simulation and end-to-end tests (release build)"
  (cd build && ctest --output-on-failure -j2)
  echo "== all tests passed (quick: no sanitizers, no fuzzing)"
  exit 0
fi
echo "== build: clang, ASan + UBSan at -O1, libFuzzer coverage"
start=$SECONDS
scripts/build-ci.sh
echo "== build took $((SECONDS - start)) s"
echo "== unit, simulation and end-to-end tests under ASan + UBSan"
start=$SECONDS
# Each e2e file is its own ctest entry and starts its own kilnd; -j2 runs them
# beside the CPU-bound unit tests.
(cd build-ci && ASAN_OPTIONS=detect_leaks=1 KILN_SIM_HISTORIES=1500 KILN_SIM_SQLITE_HISTORIES=100 \
  ctest --output-on-failure -j2 --schedule-random)
echo "== tests took $((SECONDS - start)) s"
echo "== fuzzing the parsers (libFuzzer)"
start=$SECONDS
scripts/fuzz.sh 20
echo "== fuzzing took $((SECONDS - start)) s"
echo "== all tests passed"
