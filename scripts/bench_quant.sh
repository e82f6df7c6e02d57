#!/usr/bin/env bash
# Benchmark of `mopt quantize` on the models in ../shared/models: per case the weight bytes after/before,
# the accuracy against the float model (labelled drop where labels exist, else top-1 agreement and
# cosine), the time mopt took, and ONNX Runtime 1.30's latency of the quantized model vs the float one
# (same thread count, interleaved rounds, median of round medians). Then tool speed on a BERT-base-shaped
# model (../shared/tools/gen/bert_like.py, ~435 MB) against `cp` of the same file.
# Results go to bench/quant.txt (and stdout).
#   scripts/bench_quant.sh            THREADS=2 ROUNDS=5 RUNS=20 by default; BERT=0 skips the big model
# Exits 1 when a gate row (default static int8) ran slower than float in ONNX Runtime or failed.
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-build/mopt}
[ -x "$MOPT" ] || scripts/build.sh build >/dev/null
ORT=$(../shared/tools/ort/setup.sh)
M=../shared/models
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-5}; RUNS=${RUNS:-20}
PY=/usr/bin/python3
mkdir -p "$T/sq_calib/fish" "$T/sq_calib/kitten"
cp "$M/vision/inputs/squeezenet_fish_fp32/data_0.npy" "$T/sq_calib/fish/"
cp "$M/vision/inputs/squeezenet_kitten_224_fp32/data_0.npy" "$T/sq_calib/kitten/"
D=$M/trained
# name | model | ORT inputs | mopt quantize flags | role: "gate" rows are the default static int8 (--target
# ort-cpu) that must be no slower than float in ONNX Runtime or kept float with a stated reason; "info" rows
# (other modes, --target portable) show what the gate avoids and are not judged.
A=$M/audio/inputs
cases=(
  "digits_cnn static|trained/digits_cnn.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|gate"
  "digits_cnn static per-ch|trained/digits_cnn.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --per-channel --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|gate"
  "digits_cnn static qop|trained/digits_cnn.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --format qoperator --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|gate"
  "digits_cnn entropy|trained/digits_cnn.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --calibration entropy --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_mlp dynamic|trained/digits_mlp.onnx|trained/inputs/digits_test_flat|--accuracy $D/digits_test_xflat.npy --labels $D/digits_test_y.npy|info"
  "digits_mlp static|trained/digits_mlp.onnx|trained/inputs/digits_test_flat|--data $D/digits_test_xflat.npy --accuracy $D/digits_test_xflat.npy --labels $D/digits_test_y.npy|gate"
  "digits_vit dynamic|trained/digits_vit.onnx|trained/inputs/digits_test|--accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_vit int4 w-only|trained/digits_vit.onnx|trained/inputs/digits_test|--weight-only --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_vit int4 mse|trained/digits_vit.onnx|trained/inputs/digits_test|--weight-only --block-search mse --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_vit int4 qdq|trained/digits_vit.onnx|trained/inputs/digits_test|--weight-only --format qdq --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_vit int4 aware|trained/digits_vit.onnx|trained/inputs/digits_test|--weight-only --max-accuracy-drop 0 --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "digits_vit static|trained/digits_vit.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|gate"
  "digits_vit static portable|trained/digits_vit.onnx|trained/inputs/digits_test|--data $D/digits_train_x.npy --target portable --accuracy $D/digits_test_x.npy --labels $D/digits_test_y.npy|info"
  "iris_mlp static|tabular/iris_mlp.onnx|tabular/iris_inputs|--data $M/tabular/iris_inputs --accuracy $M/tabular/iris_inputs --labels $M/tabular/iris_labels.npy|gate"
  "squeezenet static per-ch|vision/squeezenet1.1_fp32.onnx|vision/inputs/squeezenet_fish_fp32|--data $T/sq_calib --per-channel --accuracy $T/sq_calib|gate"
  "squeezenet static qop|vision/squeezenet1.1_fp32.onnx|vision/inputs/squeezenet_fish_fp32|--data $T/sq_calib --per-channel --format qoperator --accuracy $T/sq_calib|gate"
  "mnist_winml static|vision/mnist_winml.onnx|vision/inputs/mnist_28|--data $M/vision/inputs/mnist_28/Input3.npy --accuracy $M/vision/inputs/mnist_28/Input3.npy|gate"
  "mnist_winml static portable|vision/mnist_winml.onnx|vision/inputs/mnist_28|--data $M/vision/inputs/mnist_28/Input3.npy --target portable --accuracy $M/vision/inputs/mnist_28/Input3.npy|info"
  "silero_vad static|audio/silero_vad_v5_16k_op15.onnx|audio/inputs/silero_v5_x1|--data $A/silero_v5_x100 --accuracy $A/silero_v5_x100|gate"
  "silero_vad per-ch cos0.99|audio/silero_vad_v5_16k_op15.onnx|audio/inputs/silero_v5_x1|--data $A/silero_v5_x100 --per-channel --min-cosine 0.99 --accuracy $A/silero_v5_x100|gate"
  "ppocrv4_det static|ocr/ppocrv4_det.onnx|ocr/inputs/det|--data $M/ocr/inputs/det --accuracy $M/ocr/inputs/det|gate"
  "ppocrv4_det static portable|ocr/ppocrv4_det.onnx|ocr/inputs/det|--data $M/ocr/inputs/det --target portable --accuracy $M/ocr/inputs/det|info"
  "ppocrv4_det cos0.99|ocr/ppocrv4_det.onnx|ocr/inputs/det|--data $M/ocr/inputs/det --min-cosine 0.99 --accuracy $M/ocr/inputs/det|gate"
  "ppocrv4_det per-ch mse|ocr/ppocrv4_det.onnx|ocr/inputs/det|--data $M/ocr/inputs/det --per-channel --calibration mse --accuracy $M/ocr/inputs/det|gate"
  "ppocrv4_det per-ch mse qop|ocr/ppocrv4_det.onnx|ocr/inputs/det|--data $M/ocr/inputs/det --per-channel --calibration mse --format qoperator --accuracy $M/ocr/inputs/det|gate"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ort_ms() {
  NODE_PATH="$ORT/node_modules" node ../shared/tools/ort/run.js "$1" --inputs-dir "$2" --threads "$THREADS" --runs "$RUNS" \
    --warmup 3 --json 2>/dev/null | sed -n 's/^JSON //p' | $PY -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])'
}
out=$(mktemp)
{
  echo "# mopt quantize on ../shared/models, $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "# weights = parameter bytes after/before; accuracy vs the float model (labelled drop in points where labels"
  echo "# exist, else top-1 agreement); ORT = ONNX Runtime 1.30 latency, quantized/float, median of $ROUNDS interleaved"
  echo "# rounds of $RUNS runs, $THREADS threads (< 1 = faster). verdict: gate rows must be <= 1.00x or kept float with"
  echo "# the reason mopt gave (--target ort-cpu); info rows are not judged."
  printf '%-28s %8s %11s %9s %9s %9s %9s %8s  %s\n' case weights accuracy cosine mopt_s ort_f_ms ort_q_ms ort_q/f verdict
} > "$out"
cat "$out"
slower=0
for c in "${cases[@]}"; do
  IFS='|' read -r name model inputs flags role <<<"$c"
  q="$T/q.onnx"
  rm -f "$q" "$q.report.json"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  log=$("$MOPT" quantize "$M/$model" -o "$q" -q --threads "$THREADS" $flags 2>&1) || true
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  if [ ! -f "$q" ]; then
    # Nothing written: kept float (a gate row passes only when the reason is the ort-cpu placement).
    why=$(echo "$log" | grep -m1 -o 'quantize changed nothing.*')
    verdict="kept float"
    case "$why" in *"--target ort-cpu"*) ;; *) verdict="FAILED"; [ "$role" = gate ] && slower=$((slower + 1)) ;; esac
    why=$(echo "${why:-$log}" | cut -c1-220)
    printf '%-28s %8s %11s %9s %9.2f %9s %9s %8s  %s: %s\n' "$name" - - - "$secs" - - - "$verdict" "$why" | tee -a "$out"
    continue
  fi
  read -r weights acc cos < <($PY - "$q.report.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
w = r["output"]["stats"]["parameter_bytes"] / r["input"]["stats"]["parameter_bytes"]
a = r.get("accuracy") or {}
out = a.get("outputs", [{}])[0]
if a.get("labels"):
    acc = "%+.2fpp" % (-a["labels"]["accuracy_drop_pp"])
elif "top1_agreement" in out:
    acc = "top1 %.0f%%" % (out["top1_agreement"] * 100)
else:
    acc = "-"
print("%.3fx" % w, acc, "%.5f" % out.get("cosine_similarity", float("nan")))
PYEOF
)
  f_ms=(); q_ms=()
  for _ in $(seq "$ROUNDS"); do
    f_ms+=("$(ort_ms "$M/$model" "$M/$inputs")")
    q_ms+=("$(ort_ms "$q" "$M/$inputs")")
  done
  f=$(printf '%s\n' "${f_ms[@]}" | median)
  qm=$(printf '%s\n' "${q_ms[@]}" | median)
  verdict=$(awk -v f="$f" -v q="$qm" -v r="$role" 'BEGIN {print r != "gate" ? "info" : (q <= f ? "ok" : "SLOWER")}')
  [ "$verdict" = SLOWER ] && slower=$((slower + 1))
  awk -v n="$name" -v w="$weights" -v a="$acc" -v c="$cos" -v s="$secs" -v f="$f" -v q="$qm" -v v="$verdict" \
    'BEGIN {printf "%-28s %8s %11s %9s %9.2f %9.3f %9.3f %7.2fx  %s\n", n, w, a, c, s, f, q, q / f, v}' | tee -a "$out"
done
echo "# gate rows slower than float or failed: $slower" | tee -a "$out"

if [ "${BERT:-1}" = 1 ] && $PY -c 'import torch' 2>/dev/null; then
  $PY ../shared/tools/gen/bert_like.py "$T/bert.onnx" >/dev/null
  size=$(stat -c %s "$T/bert.onnx")
  sync
  cp_s=$( { /usr/bin/time -f '%e' cp "$T/bert.onnx" "$T/copy.onnx"; } 2>&1 | tail -1 )
  rm -f "$T/copy.onnx"
  {
    echo
    echo "# tool speed on bert_like.py ($((size / 1000000)) MB, random weights); cp of the file: ${cp_s} s; --accuracy off"
    printf '%-28s %9s %9s %10s %12s\n' mode seconds x_cp peak_MB out_MB
  } | tee -a "$out"
  for mode in "dynamic|" "int4 weight-only|--weight-only" "int4 weight-only qdq|--weight-only --format qdq" \
    "int4 weight-only mse|--weight-only --block-search mse" "int8 weight-only|--weight-only --bits 8"; do
    IFS='|' read -r name flags <<<"$mode"
    # shellcheck disable=SC2086
    res=$( { /usr/bin/time -f '%e %M' "$MOPT" quantize "$T/bert.onnx" -o "$T/bq.onnx" -q --accuracy off --no-compressed-size $flags; } 2>&1 | tail -1)
    read -r secs kb <<<"$res"
    awk -v n="$name" -v s="$secs" -v c="$cp_s" -v k="$kb" -v o="$(stat -c %s "$T/bq.onnx")" \
      'BEGIN {printf "%-28s %9.2f %8.1fx %10.0f %12.1f\n", n, s, s / c, k / 1024, o / 1e6}' | tee -a "$out"
  done
fi
mkdir -p bench
mv "$out" bench/quant.txt
[ "$slower" -eq 0 ]
