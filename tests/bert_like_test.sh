#!/usr/bin/env bash
# Convergence on a transformer as PyTorch exports it: a small BERT-shaped model (../shared/tools/gen/
# bert_like.py --layers 2 --hidden 128, random weights; Debian's python3-torch, installed by
# scripts/setup.sh) must go through the fuse group in at most 3 rounds without the cap's warning, keep its
# outputs, and every pass of the group run again on the result must change nothing (idempotence).
# Usage: tests/bert_like_test.sh path/to/mopt
set -euo pipefail
MOPT=$(realpath "$1")
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
/usr/bin/python3 "$SRC/../shared/tools/gen/bert_like.py" "$T/bert.onnx" --layers 2 --hidden 128 >"$T/gen.log" 2>&1 ||
  { echo "FAIL: could not generate bert_like (is python3-torch installed? scripts/setup.sh installs it):"; tail -3 "$T/gen.log"; exit 1; }
# Real token ids would be better than random ones, but any ids run the same graph; --value-range keeps them valid.
"$MOPT" fuse "$T/bert.onnx" -o "$T/fused.onnx" --dim batch=1 --dim seq=16 --value-range input_ids=0:30521 \
  --value-range attention_mask=0:1 --accuracy random --min-cosine 0.99999 -q
node -e '
  const r = require(process.argv[1]);
  const fail = (m) => { console.error("FAIL: " + m); process.exit(1); };
  const rounds = Math.max(...r.passes.map((p) => p.runs));
  for (const w of r.warnings) if (w.includes("did not converge")) fail(w);
  if (rounds > 3) fail(`the fuse group took ${rounds} rounds on bert_like (at most 3)`);
  console.log(`bert_like: fuse converged in ${rounds} rounds`);
  for (const p of r.passes) console.log(p.spec);
' "$T/fused.onnx.report.json" > "$T/passes.txt"
head -1 "$T/passes.txt"
failed=0
tail -n +2 "$T/passes.txt" | while read -r spec; do
  "$MOPT" optimize "$T/fused.onnx" --passes "$spec" -o "$T/again.onnx" --accuracy off --no-compressed-size -q --allow-unchanged
  node -e 'const r = require(process.argv[1]); if (r.passes[0].changed) { console.log("FAIL: " + process.argv[2] + " changed the fused bert_like again: " + JSON.stringify(r.passes[0].counters)); process.exit(1); }' \
    "$T/again.onnx.report.json" "$spec" || exit 1
done || failed=1
[ "$failed" = 0 ] || exit 1
echo "bert_like: every pass of the group is idempotent on the fused model"
