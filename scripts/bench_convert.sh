#!/usr/bin/env bash
# Benchmark of `mopt convert --to fp16` on the models in ../shared/models: per model the time mopt took,
# weight bytes and file size before and after, the worst output cosine against ONNX Runtime's golden
# outputs when ONNX Runtime 1.30 runs the float16 model on the model's inputs, and ONNX Runtime's CPU
# latency of the float16 model vs the original (interleaved rounds, median of round medians; on CPU
# ONNX Runtime computes most float16 operators through float32, so this is the cost of the Casts, not a
# speed-up). Then tool speed on a BERT-base-shaped model (../shared/tools/gen/bert_like.py, ~435 MB)
# against `cp` of the same file, with peak memory. Results go to bench/convert.txt (and stdout).
#   scripts/bench_convert.sh         THREADS=2 ROUNDS=3 RUNS=20 by default; BERT=0 skips the big model
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
# model | inputs folder | golden folder
cases=(
  "trained/digits_cnn.onnx|trained/inputs/digits_test|trained/golden/digits_cnn"
  "trained/digits_mlp.onnx|trained/inputs/digits_test_flat|trained/golden/digits_mlp"
  "trained/digits_vit.onnx|trained/inputs/digits_test|trained/golden/digits_vit"
  "vision/squeezenet1.1_fp32.onnx|vision/inputs/squeezenet_fish_fp32|vision/golden/squeezenet_fp32"
  "vision/mnist_winml.onnx|vision/inputs/mnist_28|vision/golden/mnist_winml"
  "audio/silero_vad_v5_16k_op15.onnx|audio/inputs/silero_v5_x1|audio/golden/silero_vad_v5_16k_op15_x1"
  "ocr/ppocrv4_det.onnx|ocr/inputs/det|ocr/golden/ppocrv4_det"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { $PY -c "import json,sys; print(json.load(sys.stdin)$1)"; }
ort_ms() {
  node ../shared/tools/ort/run.js "$1" --inputs-dir "$2" --threads "$THREADS" --runs "$RUNS" --warmup 3 \
    --json 2>/dev/null | sed -n 's/^JSON //p' | json_field '["median_ms"]'
}
ort_cosine() {
  node ../shared/tools/ort/run.js "$1" --inputs-dir "$2" --compare "$3" --runs 1 --warmup 0 --json 2>/dev/null |
    sed -n 's/^JSON //p' | $PY -c 'import json,sys; print("%.6f" % min(c["cosine"] for c in json.load(sys.stdin)["comparisons"].values()))'
}
weights() { "$MOPT" inspect "$1" --json | json_field '["parameter_bytes"]'; }
out=$(mktemp)
{
  echo "# mopt convert --to fp16 on ../shared/models, $(date -u +%F). weights/file: bytes after/before;"
  echo "# cosine: worst output of the fp16 model in ONNX Runtime 1.30 vs the golden outputs of the original;"
  echo "# ORT ms: CPU latency (default optimizations), median of $ROUNDS interleaved rounds of $RUNS runs, $THREADS threads."
  printf '%-24s %8s %8s %8s %9s %9s %9s %8s\n' model mopt_s weights file cosine ort_f32 ort_f16 f16/f32
} > "$out"
cat "$out"
for c in "${cases[@]}"; do
  IFS='|' read -r model inputs golden <<<"$c"
  name=$(basename "$model" .onnx)
  f="$T/$name.fp16.onnx"
  start=$(date +%s.%N)
  "$MOPT" convert "$M/$model" --to fp16 -o "$f" -q --accuracy off --no-compressed-size
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  cos=$(ort_cosine "$f" "$M/$inputs" "$M/$golden")
  o_ms=(); f_ms=()
  for _ in $(seq "$ROUNDS"); do
    o_ms+=("$(ort_ms "$M/$model" "$M/$inputs")")
    f_ms+=("$(ort_ms "$f" "$M/$inputs")")
  done
  om=$(printf '%s\n' "${o_ms[@]}" | median)
  fm=$(printf '%s\n' "${f_ms[@]}" | median)
  awk -v n="$name" -v s="$secs" -v wa="$(weights "$M/$model")" -v wb="$(weights "$f")" -v fa="$(stat -c %s "$M/$model")" \
    -v fb="$(stat -c %s "$f")" -v c="$cos" -v om="$om" -v fm="$fm" \
    'BEGIN {printf "%-24s %8.2f %7.3fx %7.3fx %9s %9.3f %9.3f %7.2fx\n", n, s, wb / wa, fb / fa, c, om, fm, fm / om}' | tee -a "$out"
done

if [ "${BERT:-1}" = 1 ] && $PY -c 'import torch' 2>/dev/null; then
  $PY ../shared/tools/gen/bert_like.py "$T/bert.onnx" >/dev/null
  size=$(stat -c %s "$T/bert.onnx")
  sync
  cp_s=$( { /usr/bin/time -f '%e' cp "$T/bert.onnx" "$T/copy.onnx"; } 2>&1 | tail -1 )
  rm -f "$T/copy.onnx"
  {
    echo
    echo "# tool speed on bert_like.py ($((size / 1000000)) MB, random weights); cp of the file: ${cp_s} s; --accuracy off"
    printf '%-32s %9s %9s %10s %10s\n' command seconds x_cp peak_MB out_MB
  } | tee -a "$out"
  for args in "--to fp16" "--to bf16" "--to fp16 --external-data 1M" "--batch 1"; do
    rm -f "$T/bc.onnx" "$T/bc.onnx.data"
    # shellcheck disable=SC2086
    res=$( { /usr/bin/time -f '%e %M' "$MOPT" convert "$T/bert.onnx" $args -o "$T/bc.onnx" -q --accuracy off --no-compressed-size; } 2>&1 | tail -1)
    read -r secs kb <<<"$res"
    outb=$(( $(stat -c %s "$T/bc.onnx") + $( [ -f "$T/bc.onnx.data" ] && stat -c %s "$T/bc.onnx.data" || echo 0) ))
    awk -v a="convert $args" -v s="$secs" -v c="$cp_s" -v k="$kb" -v o="$outb" \
      'BEGIN {printf "%-32s %9.2f %8.1fx %10.0f %10.0f\n", a, s, s / c, k / 1024, o / 1e6}' | tee -a "$out"
  done
fi
mkdir -p bench
mv "$out" bench/convert.txt
