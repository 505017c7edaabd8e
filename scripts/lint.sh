#!/usr/bin/env bash
# clang-format (must be clean) and clang-tidy (warnings are errors) over src/ and cmd/.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files 'src/*.cc' 'src/*.h' 'cmd/*.cc' 'bench/*.cc' 'fuzz/*.cc')
echo "== clang-format"
clang-format --dry-run -Werror $files
echo "== clang-tidy"
[ -f build/compile_commands.json ] || scripts/build.sh
tidy_files=$(git ls-files 'src/*.cc' 'cmd/*.cc' | grep -v '_test.cc$')
printf '%s\n' $tidy_files | xargs -P2 -n4 clang-tidy -p build --quiet 2>/dev/null
echo "== lint clean"
