#!/usr/bin/env bash
# Benchmark: latency of mopt's reference executor vs ONNX Runtime 1.30 (CPU, Node.js binding) on every
# model in ../shared/models with its real inputs, same thread count, interleaved rounds so machine
# noise hits both alike. Reports median-of-rounds p50 latency and the ratio mopt/ORT (target: <= 3x).
# Results go to bench/exec.txt (and stdout).
#   scripts/bench_exec.sh            THREADS=2 ROUNDS=3 RUNS=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-build/mopt}
[ -x "$MOPT" ] || scripts/build.sh build >/dev/null
ORT=$(../shared/tools/ort/setup.sh)
M=../shared/models
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-3}; RUNS=${RUNS:-10}
cases=(
  "digits_cnn trained/digits_cnn.onnx trained/inputs/digits_test"
  "digits_mlp trained/digits_mlp.onnx trained/inputs/digits_test_flat"
  "digits_vit trained/digits_vit.onnx trained/inputs/digits_test"
  "iris_mlp tabular/iris_mlp.onnx tabular/iris_inputs"
  "squeezenet vision/squeezenet1.1_fp32.onnx vision/inputs/squeezenet_fish_fp32"
  "mnist_winml vision/mnist_winml.onnx vision/inputs/mnist_28"
  "silero_vad audio/silero_vad_v5_16k_op15.onnx audio/inputs/silero_v5_x1"
  "silero_vad_x100 audio/silero_vad_v5_16k_op15.onnx audio/inputs/silero_v5_x100"
  "ppocrv4_det ocr/ppocrv4_det.onnx ocr/inputs/det"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
out=$(mktemp)
{
  echo "# mopt executor vs ONNX Runtime 1.30 (Node.js, CPU EP, graph optimizations 'all'), $THREADS threads,"
  echo "# p50 latency in ms, median of $ROUNDS interleaved rounds of $RUNS runs each (3 warm-up runs per round). $(date -u +%F)"
  printf '%-18s %12s %12s %8s\n' model mopt_ms ort_ms ratio
} > "$out"
cat "$out"
for c in "${cases[@]}"; do
  set -- $c
  mopt_p50=(); ort_p50=()
  for _ in $(seq "$ROUNDS"); do
    mopt_p50+=("$("$MOPT" bench "$M/$2" --data "$M/$3" --threads "$THREADS" --runs "$RUNS" --warmup 3 --json -q |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_ms"]["p50"])')")
    ort_p50+=("$(NODE_PATH="$ORT/node_modules" node ../shared/tools/ort/run.js "$M/$2" --inputs-dir "$M/$3" \
      --threads "$THREADS" --runs "$RUNS" --warmup 3 --json 2>/dev/null | sed -n 's/^JSON //p' |
      /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')")
  done
  m=$(printf '%s\n' "${mopt_p50[@]}" | median)
  o=$(printf '%s\n' "${ort_p50[@]}" | median)
  line=$(awk -v n="$1" -v m="$m" -v o="$o" 'BEGIN {printf "%-18s %12.3f %12.3f %7.2fx\n", n, m, o, m / o}')
  echo "$line" | tee -a "$out"
done
mkdir -p bench
mv "$out" bench/exec.txt
