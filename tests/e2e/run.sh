#!/usr/bin/env bash
# Runs end-to-end tests against the binaries in $1 (a build's cmd/ dir): every
# test_*.py, or only the file named by $2. With sanitizer builds, any report
# written by kilnd, kiln-supervisor or kiln-entrypoint fails the run.
set -uo pipefail
BIN=$1
PATTERN=${2:-test_*.py}
LOGS=$(dirname "$BIN")/sanitizer-logs/${PATTERN//[^A-Za-z0-9_]/_}
rm -rf "$LOGS" && mkdir -p "$LOGS"
export KILN_BIN_DIR=$BIN
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:log_path=$LOGS/asan:detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-}:log_path=$LOGS/ubsan:print_stacktrace=1
/usr/bin/python3 -m unittest discover -s "$(dirname "$0")" -p "$PATTERN" -v
rc=$?
if compgen -G "$LOGS/*" >/dev/null; then
  echo "sanitizer reports:"; cat "$LOGS"/*
  exit 1
fi
exit $rc
