#!/usr/bin/env bash
# Quick start, step two (and CI): install dependencies, build, run the whole test suite through CTest.
# Then the same suite again under AddressSanitizer + UndefinedBehaviorSanitizer (skip with MOPT_NO_ASAN=1),
# then the fuzzers for MOPT_FUZZ_SECONDS each (default 60; skip with MOPT_NO_FUZZ=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export MOPT_REQUIRE_ORT=1  # the ONNX Runtime interop test must run, not skip
export MOPT_REQUIRE_SLURM=1  # so must the Slurm cluster test
export MOPT_REQUIRE_CHROMIUM=1  # and the HTML report test in headless Chromium
scripts/build.sh build
(cd build && ctest --output-on-failure -j2)
if [ "${MOPT_NO_ASAN:-0}" != 1 ]; then
  MOPT_SANITIZE=1 scripts/build.sh build-asan
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j2)
fi
# The libFuzzer targets for a bounded time each (clang, ASan + UBSan); any finding fails the run.
if [ "${MOPT_NO_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh "${MOPT_FUZZ_SECONDS:-60}"
fi
