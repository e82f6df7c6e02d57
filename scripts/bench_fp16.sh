#!/usr/bin/env bash
# Does mopt's executor compute a float16 model the way ONNX Runtime's CPU provider does? Converts every shared
# model with `mopt convert --to fp16`, runs the float16 model on the model's real inputs in mopt's executor and
# in ONNX Runtime 1.30 (CPU), and prints per output: executor vs ORT (cosine, max |diff|, max |diff| / RMS),
# and the cosine each of them gives against ORT's outputs of the float32 original (the number a verdict uses).
# Usage: scripts/bench_fp16.sh [path/to/mopt] > bench/fp16.txt
set -u
cd "$(dirname "$0")/.."
MOPT=$(realpath "${1:-build/mopt}")
MODELS=$(realpath ../shared/models)
TOOLS=$(realpath ../shared/tools/ort)
ORT=$("$TOOLS/setup.sh" 2>/dev/null) || { echo "bench_fp16: could not set up onnxruntime-node" >&2; exit 1; }
export NODE_PATH="$ORT/node_modules"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# shellcheck source=tests/shared_model_cases.sh
. tests/shared_model_cases.sh

echo "# scripts/bench_fp16.sh: float16 models (mopt convert --to fp16) in mopt's executor vs ONNX Runtime 1.30 CPU,"
echo "# on each model's real inputs. $(date -u +%F), build $(git rev-parse --short HEAD 2>/dev/null)"
echo "# exec~ort: executor vs ORT on the same fp16 model; cos(fp32): each against ORT's outputs of the fp32 original"
printf '%-24s %-10s %-11s %-10s %-10s %-13s %-13s\n' model output 'exec~ort' 'max|d|' 'max|d|/rms' 'exec cos(fp32)' 'ort cos(fp32)'
for c in "${shared_model_cases[@]}"; do
  IFS='|' read -r model inputs golden <<<"$c"
  name=$(basename "$model" .onnx)
  rm -rf "$T"/*
  if ! "$MOPT" convert "$MODELS/$model" --to fp16 -o "$T/m16.onnx" --accuracy off --no-compressed-size -q 2>"$T/log"; then
    echo "$name: convert failed: $(head -c 200 "$T/log")"; continue
  fi
  "$MOPT" run "$T/m16.onnx" --data "$MODELS/$inputs" --save-outputs "$T/exec" -q 2>"$T/log" || { echo "$name: mopt run failed: $(head -c 200 "$T/log")"; continue; }
  node "$TOOLS/run.js" "$T/m16.onnx" --inputs-dir "$MODELS/$inputs" --runs 1 --warmup 0 --save-outputs "$T/ort" >"$T/log" 2>&1 || { echo "$name: ORT failed: $(head -c 200 "$T/log")"; continue; }
  node scripts/npy_diff.js "$T/ort" "$T/exec" >"$T/d_exec_ort"
  node scripts/npy_diff.js "$MODELS/$golden" "$T/exec" expected_ >"$T/d_exec_gold"
  node scripts/npy_diff.js "$MODELS/$golden" "$T/ort" expected_ >"$T/d_ort_gold"
  while read -r out cos maxd rel _ _; do
    ce=$(awk -v o="$out" '$1 == o { print $2 }' "$T/d_exec_gold")
    co=$(awk -v o="$out" '$1 == o { print $2 }' "$T/d_ort_gold")
    printf '%-24s %-10s %-11s %-10s %-10s %-13s %-13s\n' "$name" "$out" "$cos" "$maxd" "$rel" "$ce" "$co"
  done <"$T/d_exec_ort"
done
