#!/usr/bin/env bash
# Runs the end-to-end suite against the binaries in $1 (a build's cmd/ dir). With
# sanitizer builds, any report written by kilnd or kiln-supervisor fails the run.
set -uo pipefail
BIN=$1
LOGS=$(dirname "$BIN")/sanitizer-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
export KILN_BIN_DIR=$BIN
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:log_path=$LOGS/asan:detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-}:log_path=$LOGS/ubsan:print_stacktrace=1
/usr/bin/python3 -m unittest discover -s "$(dirname "$0")" -v
rc=$?
if compgen -G "$LOGS/*" >/dev/null; then
  echo "sanitizer reports:"; cat "$LOGS"/*
  exit 1
fi
exit $rc
