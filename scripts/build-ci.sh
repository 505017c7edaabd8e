#!/usr/bin/env bash
# Configures and builds the CI build into build-ci/ (or $BUILD_DIR): clang, the CI
# build type (-O1 -g1), AddressSanitizer + UBSan, libFuzzer coverage in every
# library and the fuzz targets. Tests, fuzzers and clang-tidy all use it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-ci}
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=CI -DKILN_SANITIZE=ON -DKILN_FUZZ=ON \
  "$@" >/dev/null
ninja -C "$BUILD_DIR"
