#!/usr/bin/env bash
# Benchmark of `mopt fuse` on the models in ../shared/models: per model the time mopt took, node counts
# before, after mopt fuse and after ONNX Runtime 1.30's own basic-level offline optimization (run.js
# --opt basic --save-optimized), the largest output difference against the original on the model's
# inputs (mopt compare), and ONNX Runtime's latency of the fused model vs the original with graph
# optimizations off (so the ratio shows what the fusion itself saves; interleaved rounds, median of
# round medians). Then tool speed on a BERT-base-shaped model (../shared/tools/gen/bert_like.py,
# ~435 MB) against `cp` of the same file, with peak memory. Results go to bench/fuse.txt (and stdout).
#   scripts/bench_fuse.sh            THREADS=2 ROUNDS=3 RUNS=20 by default; BERT=0 skips the big model
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-build/mopt}
[ -x "$MOPT" ] || scripts/build.sh build >/dev/null
ORT=$(../shared/tools/ort/setup.sh)
export NODE_PATH="$ORT/node_modules"
M=../shared/models
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-3}; RUNS=${RUNS:-20}
PY=/usr/bin/python3
# model | inputs folder
cases=(
  "trained/digits_cnn.onnx|trained/inputs/digits_test"
  "trained/digits_mlp.onnx|trained/inputs/digits_test_flat"
  "trained/digits_vit.onnx|trained/inputs/digits_test"
  "tabular/iris_mlp.onnx|tabular/iris_inputs"
  "vision/squeezenet1.1_fp32.onnx|vision/inputs/squeezenet_fish_fp32"
  "vision/mnist_winml.onnx|vision/inputs/mnist_28"
  "audio/silero_vad_v5_16k_op15.onnx|audio/inputs/silero_v5_x1"
  "ocr/ppocrv4_det.onnx|ocr/inputs/det"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { $PY -c "import json,sys; print(json.load(sys.stdin)$1)"; }
ort_ms() {
  node ../shared/tools/ort/run.js "$1" --inputs-dir "$2" --threads "$THREADS" --runs "$RUNS" --warmup 3 --opt disabled \
    --json 2>/dev/null | sed -n 's/^JSON //p' | json_field '["median_ms"]'
}
nodes() { "$MOPT" inspect "$1" --json | json_field '["nodes"]'; }
out=$(mktemp)
{
  echo "# mopt fuse on ../shared/models, $(date -u +%F). nodes: original, after mopt fuse, after ONNX Runtime 1.30 basic"
  echo "# optimization; max_abs: largest |fused - original| over outputs (mopt compare on the inputs);"
  echo "# ORT: latency of fused/original with ORT's optimizations off, median of $ROUNDS interleaved rounds of $RUNS runs, $THREADS threads."
  printf '%-24s %8s %7s %7s %8s %10s %9s %9s %8s\n' model mopt_s nodes fused ort_bas max_abs ort_o_ms ort_f_ms f/o
} > "$out"
cat "$out"
for c in "${cases[@]}"; do
  IFS='|' read -r model inputs <<<"$c"
  name=$(basename "$model" .onnx)
  f="$T/$name.fused.onnx"
  start=$(date +%s.%N)
  "$MOPT" fuse "$M/$model" -o "$f" -q --threads "$THREADS" --accuracy off --no-compressed-size
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  node ../shared/tools/ort/run.js "$M/$model" --inputs-dir "$M/$inputs" --opt basic --save-optimized "$T/ort.onnx" \
    --runs 1 --warmup 0 >/dev/null 2>&1
  rel=$("$MOPT" compare "$M/$model" "$f" --data "$M/$inputs" --json -q | $PY -c '
import json, sys
r = json.load(sys.stdin)["accuracy"]["outputs"]
print("%.2e" % max(o["max_abs_error"] for o in r))')
  o_ms=(); f_ms=()
  for _ in $(seq "$ROUNDS"); do
    o_ms+=("$(ort_ms "$M/$model" "$M/$inputs")")
    f_ms+=("$(ort_ms "$f" "$M/$inputs")")
  done
  om=$(printf '%s\n' "${o_ms[@]}" | median)
  fm=$(printf '%s\n' "${f_ms[@]}" | median)
  awk -v n="$name" -v s="$secs" -v a="$(nodes "$M/$model")" -v b="$(nodes "$f")" -v o="$(nodes "$T/ort.onnx")" -v r="$rel" \
    -v om="$om" -v fm="$fm" 'BEGIN {printf "%-24s %8.2f %7d %7d %8d %10s %9.3f %9.3f %7.2fx\n", n, s, a, b, o, r, om, fm, fm / om}' |
    tee -a "$out"
done

if [ "${BERT:-1}" = 1 ] && $PY -c 'import torch' 2>/dev/null; then
  $PY ../shared/tools/gen/bert_like.py "$T/bert.onnx" >/dev/null
  size=$(stat -c %s "$T/bert.onnx")
  sync
  cp_s=$( { /usr/bin/time -f '%e' cp "$T/bert.onnx" "$T/copy.onnx"; } 2>&1 | tail -1 )
  rm -f "$T/copy.onnx"
  res=$( { /usr/bin/time -f '%e %M' "$MOPT" fuse "$T/bert.onnx" -o "$T/bf.onnx" -q --accuracy off --no-compressed-size; } 2>&1 | tail -1)
  read -r secs kb <<<"$res"
  {
    echo
    echo "# tool speed on bert_like.py ($((size / 1000000)) MB, random weights); cp of the file: ${cp_s} s; --accuracy off"
    printf '%-24s %9s %9s %10s %8s %8s\n' command seconds x_cp peak_MB nodes fused
    awk -v s="$secs" -v c="$cp_s" -v k="$kb" -v a="$(nodes "$T/bert.onnx")" -v b="$(nodes "$T/bf.onnx")" \
      'BEGIN {printf "%-24s %9.2f %8.1fx %10.0f %8d %8d\n", "mopt fuse", s, s / c, k / 1024, a, b}'
  } | tee -a "$out"
fi
mkdir -p bench
mv "$out" bench/fuse.txt
