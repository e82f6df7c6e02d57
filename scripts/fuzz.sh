#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, build-fuzz/) and runs each for SECONDS (default 60)
# from a seed corpus: ONNX's own node-test models (libonnx-testdata) and the small shared models for
# fuzz_model; .npy/.npz/.pb files from testdata/, ../shared/models and libonnx-testdata for fuzz_data;
# fuzz_passes (differential: random valid graphs through every output-keeping pass) starts from nothing.
# Exits non-zero on any finding (a crash, sanitizer report, timeout or out-of-memory), leaving the
# reproducer in build-fuzz/findings/. Usage: scripts/fuzz.sh [SECONDS] ; FUZZ_WORK=DIR keeps the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
# -O1 with line tables, as scripts/build.sh builds for the sanitizers: half the compile time of -O2 -g.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
  -DMOPT_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_model fuzz_data fuzz_passes
work=${FUZZ_WORK:-$(mktemp -d)}
[ -n "${FUZZ_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
findings=build-fuzz/findings
mkdir -p "$work/seeds_model" "$work/seeds_data" "$work/seeds_passes" "$work/corpus_model" "$work/corpus_data" \
  "$work/corpus_passes" "$findings"
testdata=/usr/share/libonnx-testdata/data
i=0
for m in "$testdata"/node/*/model.onnx; do
  cp "$m" "$work/seeds_model/node_$i.onnx"
  i=$((i + 1))
done
find ../shared/models testdata -name '*.onnx' -size -600k -exec cp {} "$work/seeds_model/" \; 2>/dev/null || true
i=0
for f in "$testdata"/node/test_{add,conv,gather,reshape,slice,cast}*/test_data_set_0/input_0.pb; do
  [ -f "$f" ] && cp "$f" "$work/seeds_data/pb_$i.pb" && i=$((i + 1))
done
find testdata/data ../shared/models -name '*.np[yz]' -size -200k -exec cp {} "$work/seeds_data/" \; 2>/dev/null || true
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
status=0
for target in fuzz_model fuzz_data fuzz_passes; do
  echo "fuzz: $target for ${seconds}s ($(ls "$work/seeds_${target#fuzz_}" | wc -l) seeds)" >&2
  # fuzz_passes reads one byte per decision: a graph needs a few hundred, from the first input on.
  len=(-max_len=1048576); [ "$target" = fuzz_passes ] && len=(-max_len=512 -len_control=0)
  if ! build-fuzz/"$target" -seed=1 -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 "${len[@]}" \
      -artifact_prefix="$findings/$target-" -print_final_stats=1 "$work/corpus_${target#fuzz_}" "$work/seeds_${target#fuzz_}" \
      >"$work/$target.log" 2>&1; then
    status=1
    echo "fuzz: $target found a problem; reproducer in $findings:" >&2
    # The report and the first frames of its stack, so that a CI log alone shows where it happened.
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|^ +#[0-9]+ " "$work/$target.log" | head -30 >&2 ||
      tail -30 "$work/$target.log" >&2
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|cov: " "$work/$target.log" | tail -3 >&2 || true
done
exit $status
