#!/usr/bin/env bash
# Installs what is missing, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer, runs every test (ctest), then runs each fuzz
# target for a bounded time in a clang libFuzzer build. Non-zero on any
# failure.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh

jobs=$(nproc)
echo "== sanitizer build (build-asan)"
CC=gcc cmake -S . -B build-asan -DSANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j "$jobs"
echo "== tests"
(cd build-asan && ctest --output-on-failure -j 2 --label-exclude fuzz)

echo "== fuzz targets (clang, libFuzzer, build-fuzz)"
CC=clang cmake -S . -B build-fuzz -DFUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzzers
(cd build-fuzz && ctest --output-on-failure -j 2 --label-regex fuzz)
