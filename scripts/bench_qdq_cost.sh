#!/usr/bin/env bash
# Where int8 stops paying in ONNX Runtime's CPU kernels: a lone MatMul (2048xK by KxK) and a lone 3x3 Conv
# (C->C channels on 56x56), each followed by a float Sigmoid, quantized static QDQ with --target portable
# (input quantized, output dequantized: about two border conversions per output), against the float model,
# interleaved rounds in ONNX Runtime 1.30. The break-even reduction depth K over the two conversions is
# what lib/quant/quantize.h's kMultiplyAddsPerConvertedValue rests on.
# Results go to bench/qdq_cost.txt (and stdout).
#   scripts/bench_qdq_cost.sh      THREADS=2 ROUNDS=5 RUNS=30 by default
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-build/mopt}
[ -x "$MOPT" ] || scripts/build.sh build >/dev/null
ORT=$(../shared/tools/ort/setup.sh)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
THREADS=${THREADS:-2}; ROUNDS=${ROUNDS:-5}; RUNS=${RUNS:-30}
PY=/usr/bin/python3
$PY - "$T" <<'PYEOF'
import os, sys, numpy as np, torch
out = sys.argv[1]
torch.manual_seed(0)
class MatMul(torch.nn.Module):
    def __init__(self, k): super().__init__(); self.l = torch.nn.Linear(k, k, bias=False)
    def forward(self, x): return torch.sigmoid(self.l(x))
class Conv(torch.nn.Module):
    def __init__(self, c): super().__init__(); self.c = torch.nn.Conv2d(c, c, 3, padding=1)
    def forward(self, x): return torch.sigmoid(self.c(x))
cases = [(f"matmul_K{k}", MatMul(k), (2048, k), k) for k in (32, 64, 128, 256, 512)]
cases += [(f"conv3x3_C{c}", Conv(c), (1, c, 56, 56), 9 * c) for c in (4, 8, 16, 32, 64)]
for name, m, shape, k in cases:
    x = torch.randn(*shape)
    os.makedirs(f"{out}/{name}", exist_ok=True)
    np.save(f"{out}/{name}/x.npy", x.numpy())
    torch.onnx.export(m, x, f"{out}/{name}.onnx", input_names=["x"], output_names=["y"], opset_version=13)
    open(f"{out}/{name}.k", "w").write(str(k))
PYEOF
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ort_ms() {
  NODE_PATH="$ORT/node_modules" node ../shared/tools/ort/run.js "$1" --inputs-dir "$2" --threads "$THREADS" --runs "$RUNS" \
    --warmup 5 --json 2>/dev/null | sed -n 's/^JSON //p' | $PY -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])'
}
out=$(mktemp)
{
  echo "# int8 vs float in ONNX Runtime 1.30, $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads:"
  echo "# one op with a quantized input and a dequantized output (static QDQ, --target portable), then a float Sigmoid;"
  echo "# K = multiply-adds per output; K/2 = multiply-adds per border conversion. Median of $ROUNDS interleaved rounds of $RUNS runs."
  printf '%-16s %6s %6s %10s %10s %8s\n' case K K/2 float_ms int8_ms int8/f
} > "$out"
cat "$out"
for model in "$T"/*.onnx; do
  name=$(basename "$model" .onnx)
  "$MOPT" quantize "$model" -o "$T/$name.q" -q --data "$T/$name" --accuracy off --target portable --no-compressed-size
  f=(); q=()
  for _ in $(seq "$ROUNDS"); do
    f+=("$(ort_ms "$model" "$T/$name")")
    q+=("$(ort_ms "$T/$name.q" "$T/$name")")
  done
  k=$(cat "$T/$name.k")
  awk -v n="$name" -v k="$k" -v f="$(printf '%s\n' "${f[@]}" | median)" -v q="$(printf '%s\n' "${q[@]}" | median)" \
    'BEGIN {printf "%-16s %6d %6d %10.3f %10.3f %7.2fx\n", n, k, k / 2, f, q, q / f}' | tee -a "$out"
done
mkdir -p bench
mv "$out" bench/qdq_cost.txt
