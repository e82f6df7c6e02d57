#!/usr/bin/env bash
# What `mopt quantize --data CALIB` reports by default on the shared models: which data the accuracy was
# measured on (never random when data was given), the verdict, labelled accuracy where labels exist, the
# accuracy-aware fallback on squeezenet's fish/kitten data, and the per-layer tables by original node name.
# Usage: scripts/bench_accuracy.sh [path/to/mopt] > bench/accuracy.txt
set -u
cd "$(dirname "$0")/.."
MOPT=$(realpath "${1:-build/mopt}")
M=$(realpath ../shared/models)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
summary() {  # report.json: data kind, samples, verdict, outputs
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1])); const a = r.accuracy;
    console.log(`  data      ${a.data.kind}: ${a.data.description} (${a.samples} sample${a.samples === 1 ? "" : "s"})`);
    if (a.data.note) console.log(`  note      ${a.data.note}`);
    for (const o of a.outputs) console.log(`  output    ${o.name}: cosine ${o.cosine_similarity === null ? "n/a" : o.cosine_similarity.toFixed(6)}` +
      (o.top1_agreement !== undefined ? `, top-1 agreement ${(100 * o.top1_agreement).toFixed(2)}%` : ""));
    if (a.labels) console.log(`  labels    ${a.labels.count}: ${(100 * a.labels.original_accuracy).toFixed(2)}% -> ${(100 * a.labels.optimized_accuracy).toFixed(2)}%`);
    console.log(`  verdict   ${a.verdict.status}${a.verdict.reasons.length ? ": " + a.verdict.reasons.join("; ") : ""}`);
    const q = r.passes.find((p) => p.name === "quantize");
    if (q && q.details) console.log(`  quantized ${q.details.nodes_quantized} layer(s)` + (q.details.accuracy_aware ?
      `, accuracy-aware kept ${q.details.accuracy_aware.kept_float.length} in float (drop ${q.details.accuracy_aware.final_drop_pp.toFixed(2)} pp)` : ""));
    if (Number(process.argv[2]) > 0 && a.layers) { console.log("  worst layers by original node:");
      for (const l of a.layers.worst_first.slice(0, Number(process.argv[2])))
        console.log(`    ${l.node.padEnd(36)} ${l.op_type.padEnd(16)} rel-L2 ${l.relative_l2_error === null ? "inf" : l.relative_l2_error.toFixed(4)}`); }' "$@"
}
run() {  # label, layers-to-list, mopt arguments...
  local label=$1 layers=$2; shift 2
  echo "$label"
  echo "  \$ mopt $(echo "$*" | sed "s|$M/||g; s|$T/||g")"
  if "$MOPT" "$@" -o "$T/out.onnx" --no-compressed-size -q 2>"$T/err"; then :; else echo "  exit $? $(head -c 200 "$T/err")"; fi
  [ -f "$T/out.onnx.report.json" ] && summary "$T/out.onnx.report.json" "$layers"
  rm -f "$T"/out.onnx*
  echo
}
mkdir -p "$T/fishkitten"
cp -r "$M/vision/inputs/squeezenet_fish_fp32" "$T/fishkitten/fish"
cp -r "$M/vision/inputs/squeezenet_kitten_224_fp32" "$T/fishkitten/kitten"

echo "# scripts/bench_accuracy.sh, $(date -u +%F), build $(git rev-parse --short HEAD)"
echo "# static int8 with only --data: the accuracy is measured on that data (held out when there are >= 10 samples)"
echo
run "squeezenet static int8 (fish + kitten)" 5 quantize "$M/vision/squeezenet1.1_fp32.onnx" --data "$T/fishkitten"
run "squeezenet static int8, --max-accuracy-drop 1 (fish + kitten)" 0 quantize "$M/vision/squeezenet1.1_fp32.onnx" --data "$T/fishkitten" --max-accuracy-drop 1
run "digits_cnn static int8 (train set as calibration)" 0 quantize "$M/trained/digits_cnn.onnx" --data "$M/trained/digits_train_x.npy"
run "digits_cnn static int8, labelled test set" 0 quantize "$M/trained/digits_cnn.onnx" --data "$M/trained/digits_train_x.npy" --accuracy "$M/trained/digits_test_x.npy" --labels "$M/trained/digits_test_y.npy"
run "digits_vit static int8 (train set as calibration)" 0 quantize "$M/trained/digits_vit.onnx" --data "$M/trained/digits_train_x.npy"
run "digits_vit static int8, labelled test set" 0 quantize "$M/trained/digits_vit.onnx" --data "$M/trained/digits_train_x.npy" --accuracy "$M/trained/digits_test_x.npy" --labels "$M/trained/digits_test_y.npy"
run "mnist_winml static int8 (its digit 8)" 0 quantize "$M/vision/mnist_winml.onnx" --data "$M/vision/inputs/mnist_28"
run "ppocrv4_det static int8 (its text page)" 8 quantize "$M/ocr/ppocrv4_det.onnx" --data "$M/ocr/inputs/det"
