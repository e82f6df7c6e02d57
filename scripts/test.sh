#!/usr/bin/env bash
# Quick start, step two (and CI): install dependencies, build, run the whole test suite through CTest.
# Then the suite again under AddressSanitizer + UndefinedBehaviorSanitizer, less the tests labelled
# integration (skip with MOPT_NO_ASAN=1),
# then the fuzzers for MOPT_FUZZ_SECONDS each (default 60; skip with MOPT_NO_FUZZ=1).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says when it ends and how long it took, so a slow CI run shows where its time went.
start=$SECONDS
phase() { echo "== test.sh: $1 done at $(date -u +%H:%M:%S), $((SECONDS - start)) s since the start" >&2; }
# A test that hangs fails after this many seconds instead of eating the CI run's time (tests that need
# longer set their own TIMEOUT in tests/CMakeLists.txt).
ctest_args=(--output-on-failure -j2 --timeout "${MOPT_TEST_TIMEOUT:-1200}")
scripts/setup.sh
phase setup
# ctest runs two tests at once: OpenMP's idle threads (the executor's, oneDNN's) spin tens of microseconds,
# not libgomp's default 3 ms, on the cores the other test needs (README "Threads").
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-3000}
export MOPT_REQUIRE_ORT=1  # the ONNX Runtime interop test must run, not skip
export MOPT_REQUIRE_SLURM=1  # so must the Slurm cluster test
export MOPT_REQUIRE_CHROMIUM=1  # and the HTML report test in headless Chromium
scripts/build.sh build
phase "Release build"
(cd build && ctest "${ctest_args[@]}")
phase "Release tests"
if [ "${MOPT_NO_ASAN:-0}" != 1 ]; then
  MOPT_SANITIZE=1 scripts/build.sh build-asan
  phase "sanitizer build"
  # Without the integration label (ONNX Runtime, Slurm, Chromium, the .deb): those ran in the Release pass.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest "${ctest_args[@]}" -LE integration)
  phase "sanitizer tests"
fi
# The libFuzzer targets for a bounded time each (clang, ASan + UBSan); any finding fails the run.
if [ "${MOPT_NO_FUZZ:-0}" != 1 ]; then
  scripts/fuzz.sh "${MOPT_FUZZ_SECONDS:-60}"
  phase fuzzing
fi
