#!/usr/bin/env bash
# clang-format (must be clean) and clang-tidy (warnings are errors) over src/ and cmd/,
# with the CI build's compile_commands.json (scripts/build-ci.sh). clang-tidy skips a
# file whose preprocessed text, flags and config it already found clean
# (scripts/tidy.py, .ci/tidy-clean.txt): commit that list after a local run.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files 'src/*.cc' 'src/*.h' 'cmd/*.cc' 'bench/*.cc' 'fuzz/*.cc')
echo "== clang-format"
clang-format --dry-run -Werror $files
echo "== clang-tidy"
BUILD_DIR=${BUILD_DIR:-build-ci}
[ -f "$BUILD_DIR/compile_commands.json" ] || BUILD_DIR=$BUILD_DIR scripts/build-ci.sh
tidy_files=$(git ls-files 'src/*.cc' 'cmd/*.cc' | grep -v '_test.cc$')
/usr/bin/python3 scripts/tidy.py "$BUILD_DIR" $tidy_files
echo "== lint clean"
