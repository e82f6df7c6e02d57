#!/usr/bin/env bash
# End-to-end tests of the mopt command line: exit codes, messages, default file names, reports,
# atomic output (nothing written on failure), input never modified, determinism, external data.
set -u
MOPT=${1:?usage: cli_test.sh path/to/mopt}
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
pass() { :; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE PATTERN -- command...: runs the command, checks its exit code and that stderr+stdout match PATTERN.
expect() {
  local code=$1 pattern=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  [ "$rc" -eq "$code" ] || fail "'$*' exited $rc, expected $code. Output: $out"
  echo "$out" | grep -qE -- "$pattern" || fail "'$*' output does not match '$pattern'. Output: $out"
}
no_outputs() {  # no model, report or temporary files left in $T/work except the inputs
  local extra
  extra=$(ls -A "$T/work" | grep -vxE 'model.onnx|truncated.onnx|garbage.onnx|empty.onnx' || true)
  [ -z "$extra" ] || fail "files left behind after a failure: $extra"
}

mkdir -p "$T/work"
cp "$SRC/testdata/squeezenet1.1_fp32.onnx" "$T/work/model.onnx"
sum_before=$(sha256sum "$T/work/model.onnx" | cut -d' ' -f1)

# --- usage
expect 0 "^mopt [0-9]+\.[0-9]+\.[0-9]+" -- "$MOPT" --version
expect 0 "optimize" -- "$MOPT" --help
expect 0 "Examples:" -- "$MOPT" optimize --help
expect 0 "Examples:" -- "$MOPT" inspect --help
expect 2 "required|A subcommand" -- "$MOPT"
expect 2 "unknown command .frobnicate." -- "$MOPT" frobnicate
expect 2 "--no-such-flag" -- "$MOPT" optimize "$T/work/model.onnx" --no-such-flag
expect 0 "eliminate-dead-code" -- "$MOPT" passes
expect 0 '"name": "shape-inference"' -- "$MOPT" passes --json
# The README's pass table is `mopt passes --markdown`, from the same option tables.
readme_table=$(sed -n '/^<!-- mopt passes --markdown/,/^<!-- end of mopt passes --markdown/p' "$SRC/README.md" | sed '1d;$d')
[ -n "$readme_table" ] && [ "$readme_table" = "$("$MOPT" passes --markdown)" ] ||
  fail "README's pass table differs from 'mopt passes --markdown' (run scripts/update_readme_passes.sh)"

# --- bad input: one clear line, exit 1 or 2, nothing written
expect 1 "cannot open .*missing.onnx.*no such file" -- "$MOPT" optimize "$T/work/missing.onnx"
: > "$T/work/empty.onnx"
expect 1 "is empty" -- "$MOPT" optimize "$T/work/empty.onnx"
head -c 100000 "$T/work/model.onnx" > "$T/work/truncated.onnx"
expect 1 "truncated or malformed" -- "$MOPT" optimize "$T/work/truncated.onnx"
echo "not a model at all" > "$T/work/garbage.onnx"
expect 1 "garbage.onnx" -- "$MOPT" inspect "$T/work/garbage.onnx"
expect 2 "unknown pass 'eliminate-nop' \(did you mean 'eliminate-nops'\?\)" -- \
  "$MOPT" optimize "$T/work/model.onnx" --passes eliminate-nop
expect 2 "has no option 'bogus'" -- "$MOPT" optimize "$T/work/model.onnx" --passes 'shape-inference(bogus=1)'
expect 2 "is the input model; pass --in-place" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/model.onnx"
expect 2 "external-data takes a size" -- "$MOPT" optimize "$T/work/model.onnx" --external-data lots
expect 1 "does not exist" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/nowhere/out.onnx"
# A full disk, simulated with a file size limit: the write fails cleanly and leaves nothing.
expect 1 "cannot write .*model.opt.onnx" -- bash -c "ulimit -f 1000; exec '$MOPT' optimize '$T/work/model.onnx' --no-compressed-size"
expect 2 "the report path .* is the output model's path" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/o.onnx" --report "$T/work/o.onnx"
expect 1 "folder .*nowhere' does not exist" -- "$MOPT" optimize "$T/work/model.onnx" --report "$T/work/nowhere/r.json"
expect 2 "give the report a file with --report" -- "$MOPT" optimize "$T/work/model.onnx" -o -
no_outputs
[ "$(sha256sum "$T/work/model.onnx" | cut -d' ' -f1)" = "$sum_before" ] || fail "the input model changed"
# '-' is standard output: the model (summary on stderr) or the report.
"$MOPT" optimize "$T/work/model.onnx" -o - --report "$T/stdout.json" --no-compressed-size > "$T/stdout.onnx" 2>/dev/null || fail "-o - failed"
expect 0 "ir version" -- "$MOPT" inspect "$T/stdout.onnx"
# Through a pipe the kernel cannot copy file to file: the weights are written from memory instead.
"$MOPT" optimize "$T/work/model.onnx" -o - --report "$T/pipe.json" --no-compressed-size 2>/dev/null | cat > "$T/pipe.onnx" || fail "-o - into a pipe failed"
cmp -s "$T/stdout.onnx" "$T/pipe.onnx" || fail "-o - into a pipe wrote other bytes than into a file"
# The report's digest of what was written is the file's.
"$MOPT" optimize "$T/work/model.onnx" -o "$T/d.onnx" --report "$T/d.json" --no-compressed-size -q
python3 -c 'import json, sys; o = json.load(open(sys.argv[1]))["invocation"]["outputs"][0]; print(o["sha256"], o["bytes"])' "$T/d.json" > "$T/d.digest"
[ "$(cat "$T/d.digest")" = "$(sha256sum "$T/d.onnx" | cut -d' ' -f1) $(stat -c %s "$T/d.onnx")" ] || fail "the report's sha256 of the output is not the file's"
"$MOPT" optimize "$T/work/model.onnx" -o "$T/r.onnx" --report - --no-compressed-size -q | grep -q '"schema_version": 4' || fail "--report - printed no report"
[ ! -e "$T/work/-" ] && [ ! -e ./- ] || fail "'-' became a file"

# --- the main job, default names, report
expect 0 "nodes +66 +65" -- "$MOPT" optimize "$T/work/model.onnx"
[ -f "$T/work/model.opt.onnx" ] || fail "default output model.opt.onnx missing"
[ -f "$T/work/model.opt.onnx.report.json" ] || fail "default report missing"
grep -q '"schema_version": 4' "$T/work/model.opt.onnx.report.json" || fail "report has no schema_version"
grep -q '"dropout-removed": 1' "$T/work/model.opt.onnx.report.json" || fail "report lacks pass counters"
grep -q '"zstd_bytes": [0-9]' "$T/work/model.opt.onnx.report.json" || fail "report lacks the compressed size"
[ "$(sha256sum "$T/work/model.onnx" | cut -d' ' -f1)" = "$sum_before" ] || fail "the input model changed"
expect 0 "wrote" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/again.onnx" --report "$T/work/again.json" --verify-each
cmp -s "$T/work/model.opt.onnx" "$T/work/again.onnx" || fail "two runs gave different bytes"
[ -f "$T/work/again.json" ] || fail "--report path not honoured"
expect 0 "^$" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/quiet.onnx" -q
expect 0 "eliminate-nops,fixpoint\(max-iterations=3,eliminate-dead-code\)" -- \
  "$MOPT" optimize "$T/work/model.onnx" --print-pipeline --passes 'eliminate-nops, fixpoint(max-iterations=3, eliminate-dead-code)'
printf 'passes:\n  - eliminate-nops\n  - shape-inference: {strict: false}\n' > "$T/pipeline.yaml"
expect 0 "pass shape-inference|no change:.*shape-inference" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/yaml.onnx" --pipeline "$T/pipeline.yaml"

# --- inspect
expect 0 "Conv +26" -- "$MOPT" inspect "$T/work/model.onnx"
expect 0 '"parameters": 1235496' -- "$MOPT" inspect "$T/work/model.onnx" --json

# --- external data: out, back in, identical bytes
expect 0 "wrote" -- "$MOPT" optimize "$T/work/model.opt.onnx" -o "$T/work/ext.onnx" --external-data 1K
[ -f "$T/work/ext.onnx.data" ] || fail "external data file missing"
expect 0 "external data" -- "$MOPT" inspect "$T/work/ext.onnx"
ext_sum=$(cat "$T/work/ext.onnx" "$T/work/ext.onnx.data" | sha256sum)
expect 2 "is the input model's external data file" -- "$MOPT" optimize "$T/work/ext.onnx" -o "$T/work/ext.onnx.data"
expect 2 "is the input model's external data file" -- "$MOPT" optimize "$T/work/ext.onnx" -o "$T/work/x.onnx" --report "$T/work/ext.onnx.data"
[ "$(cat "$T/work/ext.onnx" "$T/work/ext.onnx.data" | sha256sum)" = "$ext_sum" ] || fail "an output onto the input's external data changed the input"
expect 0 "wrote" -- "$MOPT" optimize "$T/work/ext.onnx" -o "$T/work/inline.onnx" --external-data 0G --passes eliminate-dead-code
expect 0 "wrote" -- "$MOPT" optimize "$T/work/ext.onnx" -o "$T/work/inline.onnx" --external-data 100G --passes eliminate-dead-code
cmp -s "$T/work/model.opt.onnx" "$T/work/inline.onnx" || fail "external data round trip changed the model"

# --- in place
cp "$T/work/model.onnx" "$T/work/inplace.onnx"
expect 0 "wrote" -- "$MOPT" optimize "$T/work/inplace.onnx" --in-place
cmp -s "$T/work/inplace.onnx" "$T/work/model.opt.onnx" || fail "--in-place result differs"

# --- accuracy in the report, run, compare, bench, gates (exit 3)
grep -q '"cosine_similarity": 1' "$T/work/model.opt.onnx.report.json" || fail "report lacks the accuracy section"
grep -q '"top1_agreement": 1' "$T/work/model.opt.onnx.report.json" || fail "report lacks top-1 agreement"
expect 0 "wrote" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/noacc.onnx" --accuracy off
grep -q '"accuracy_skipped": "disabled' "$T/work/noacc.onnx.report.json" || fail "--accuracy off not reported"
expect 2 "accuracy gates need" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/x.onnx" --accuracy off --min-cosine 0.9
expect 0 "softmaxout_1 +float\[1,1000,1,1\]" -- "$MOPT" run "$T/work/model.onnx"
expect 0 "outputs saved" -- "$MOPT" run "$T/work/model.onnx" --save-outputs "$T/outs"
[ -f "$T/outs/softmaxout_1.npy" ] || fail "run --save-outputs wrote no .npy"
expect 0 "cosine 1.000000" -- "$MOPT" compare "$T/work/model.onnx" "$T/work/model.opt.onnx" --samples 2
expect 2 "--min-cosine would decide on random inputs" -- "$MOPT" compare "$T/work/model.onnx" "$T/work/model.opt.onnx" --min-cosine 0.999
expect 0 '"gate": "min-cosine"' -- "$MOPT" compare "$T/work/model.onnx" "$T/work/model.opt.onnx" --samples 1 --min-cosine 0.999 --json --data random
expect 3 "gate max-size failed: output size [0-9]+ bytes exceeds the limit of 1024 bytes" -- \
  "$MOPT" compare "$T/work/model.onnx" "$T/work/model.opt.onnx" --samples 1 --max-size 1K
expect 3 "gate max-size failed" -- "$MOPT" optimize "$T/work/model.onnx" -o "$T/work/gated.onnx" --max-size 1K
[ -f "$T/work/gated.onnx" ] && grep -q '"passed": false' "$T/work/gated.onnx.report.json" || fail "a failed gate must still write the model and say so in the report"
expect 0 "p50" -- "$MOPT" bench "$T/work/model.onnx" --runs 2 --warmup 1 --threads 1
expect 1 "data path .*nowhere does not exist" -- "$MOPT" run "$T/work/model.onnx" --data "$T/nowhere"
expect 2 "--shape expects NAME=VALUE" -- "$MOPT" run "$T/work/model.onnx" --shape data_0
expect 0 "timing mopt's reference executor" -- "$MOPT" bench "$T/work/model.onnx" --runs 1 --warmup 0
expect 2 "--shape nosuch: the model has no input named 'nosuch'" -- "$MOPT" run "$T/work/model.onnx" --shape nosuch=1,3
expect 2 "--dim nosuch: no input has a dimension named 'nosuch'" -- "$MOPT" optimize "$T/work/model.onnx" --dim nosuch=8
expect 2 "--value-range data_0: LO must not exceed HI" -- "$MOPT" run "$T/work/model.onnx" --value-range data_0=2:1
expect 0 "ran .* on random inputs" -- "$MOPT" run "$T/work/model.onnx" --value-range data_0=0:255
# Labelled accuracy on the real digits model (../shared/models), when present.
M="$SRC/../shared/models/trained"
if [ -f "$M/digits_cnn.onnx" ]; then
  expect 0 "original 100.00%  optimized 100.00%" -- "$MOPT" compare "$M/digits_cnn.onnx" "$M/digits_cnn.onnx" \
    --data "$M/digits_test_x.npy" --labels "$M/digits_test_y.npy" --max-accuracy-drop 0
  expect 0 "accuracy on 360 labels .*98.61%" -- "$MOPT" run "$M/digits_mlp.onnx" --data "$M/digits_test_xflat.npy" --labels "$M/digits_test_y.npy"
fi

# --- accuracy you can trust: real data by default, no verdict on unasked random data, no silent no-op
S="$SRC/../shared/models"
if [ -d "$S/vision/inputs/squeezenet_fish_fp32" ]; then
  mkdir -p "$T/trust/calib"
  cp "$S/vision/squeezenet1.1_fp32.onnx" "$T/trust/sq.onnx"
  cp -r "$S/vision/inputs/squeezenet_fish_fp32" "$T/trust/calib/fish"
  cp -r "$S/vision/inputs/squeezenet_kitten_224_fp32" "$T/trust/calib/kitten"
  # Quantize measures on its calibration data, says so, and agrees with compare on the same data.
  expect 0 "note: measured on the calibration data itself \(2 samples; too small .*not independent of the calibration" -- \
    "$MOPT" quantize "$T/trust/sq.onnx" --data "$T/trust/calib" --no-compressed-size
  expect 0 "^verdict: ok on the calibration data" -- "$MOPT" quantize "$T/trust/sq.onnx" --data "$T/trust/calib" --no-compressed-size
  grep -q '"kind": "calibration"' "$T/trust/sq.int8.onnx.report.json" || fail "report lacks accuracy.data.kind"
  expect 0 "top-1 agree 100.00%" -- "$MOPT" compare "$T/trust/sq.onnx" "$T/trust/sq.int8.onnx" --data "$T/trust/calib"
  expect 0 "^  Relu -> fire9/expand1x1_2 +Relu +rel-L2" -- "$MOPT" compare "$T/trust/sq.onnx" "$T/trust/sq.int8.onnx" \
    --data "$T/trust/calib" --per-layer
  grep -q '"worst_first"' "$T/trust/sq.int8.onnx.report.json" || fail "the quantize report lacks the per-layer table"
  # The accuracy-aware fallback decides on that real data and keeps (almost) every layer quantized.
  expect 0 "accuracy-aware: drop 0.00 pp -> 0.00 pp \(target 1.00\) with 0 layer\(s\) in float" -- \
    "$MOPT" quantize "$T/trust/sq.onnx" --data "$T/trust/calib" --max-accuracy-drop 1 -o "$T/trust/aware.onnx" --no-compressed-size
  grep -q '"nodes_quantized": 37' "$T/trust/aware.onnx.report.json" || fail "the fallback kept layers float on real data"
  # Dynamic quantization of a CNN quantizes nothing: an error that says why, and no output.
  expect 1 "quantize changed nothing: .*Conv is quantized only in static mode: pass --data" -- \
    "$MOPT" quantize "$T/trust/sq.onnx" -o "$T/trust/dyn.onnx"
  [ ! -e "$T/trust/dyn.onnx" ] && [ ! -e "$T/trust/dyn.onnx.report.json" ] || fail "a no-op quantize wrote output"
  expect 0 "^$" -- "$MOPT" quantize "$T/trust/sq.onnx" -o "$T/trust/dyn.onnx" --allow-unchanged -q
  [ -e "$T/trust/dyn.onnx" ] || fail "--allow-unchanged wrote no model"
  # A gate on random data nobody asked for is refused before any work; asked for, it is judged.
  expect 2 "--max-accuracy-drop would decide on random inputs" -- "$MOPT" prune "$T/trust/sq.onnx" -o "$T/trust/p.onnx" --max-accuracy-drop 1
  [ ! -e "$T/trust/p.onnx" ] || fail "a refused gate wrote a model"
  expect 2 "--fail-on-degraded would decide on random inputs" -- "$MOPT" convert "$T/trust/sq.onnx" --to fp16 -o "$T/trust/h.onnx" --fail-on-degraded
  expect 2 "--auto-mixed would decide on random inputs" -- "$MOPT" convert "$T/trust/sq.onnx" --to fp16 -o "$T/trust/h.onnx" --auto-mixed
  expect 0 "verdict: ok on random inputs \(not real data" -- "$MOPT" convert "$T/trust/sq.onnx" --to fp16 -o "$T/trust/h.onnx" \
    --fail-on-degraded --accuracy random
  # A collapse is never silent: DEGRADED on the terminal (even with -q) and in the report; the gate exits 3.
  expect 3 "verdict: DEGRADED on .*kitten: top-1 disagreement" -- "$MOPT" prune "$T/trust/sq.onnx" -o "$T/trust/p90.onnx" \
    --sparsity 0.9 --accuracy "$T/trust/calib/kitten" --fail-on-degraded -q
  expect 3 "gate fail-on-degraded failed" -- "$MOPT" prune "$T/trust/sq.onnx" -o "$T/trust/p90.onnx" \
    --sparsity 0.9 --accuracy "$T/trust/calib/kitten" --fail-on-degraded -q
  grep -q '"status": "degraded"' "$T/trust/p90.onnx.report.json" || fail "report lacks the DEGRADED verdict"
fi
if [ -f "$S/ocr/ppocrv4_det.onnx" ]; then
  # Random 1x3x1x1 inputs make both outputs near zero: no cosine, a warning naming the defaulted dims.
  expect 0 "random accuracy inputs set unknown dims to 1 \(x\[0\]" -- \
    "$MOPT" convert "$S/ocr/ppocrv4_det.onnx" --to fp16 -o "$T/trust/pp.onnx" --no-compressed-size
  expect 0 "^verdict: NOT JUDGED on random inputs .*near zero" -- \
    "$MOPT" convert "$S/ocr/ppocrv4_det.onnx" --to fp16 -o "$T/trust/pp.onnx" --no-compressed-size
  expect 3 "cosine similarity of output .* is undefined" -- "$MOPT" convert "$S/ocr/ppocrv4_det.onnx" --to fp16 \
    -o "$T/trust/pp.onnx" --no-compressed-size --accuracy random --min-cosine 0.999
  expect 0 "verdict: ok on .*ocr/inputs/det" -- "$MOPT" convert "$S/ocr/ppocrv4_det.onnx" --to fp16 -o "$T/trust/pp.onnx" \
    --no-compressed-size --accuracy "$S/ocr/inputs/det" --min-cosine 0.999
fi

# --- quantize
expect 0 "Examples:" -- "$MOPT" quantize --help
expect 2 "static quantization needs calibration data: --data" -- "$MOPT" quantize "$T/work/model.onnx" --mode static
expect 2 "dynamic mode does not use it" -- "$MOPT" quantize "$T/work/model.onnx" --mode dynamic --data "$T/work"
expect 2 "--percentile.*|percentile must be in" -- "$MOPT" quantize "$T/work/model.onnx" --data "$T/work/model.onnx" --calibration percentile --percentile 0
# Pass flags come from the pass's option table; the pipeline records the options given (and the mode).
expect 0 "quantize\(mode=weight-only\),eliminate-dead-code$" -- "$MOPT" quantize "$T/work/model.onnx" --weight-only --print-pipeline
expect 0 "quantize\(mode=weight-only,bits=8,block-size=64\)" -- "$MOPT" quantize "$T/work/model.onnx" --weight-only --bits 8 --block-size 64 --print-pipeline
expect 2 "option 'per-channel' of pass 'quantize' applies only with mode=dynamic\|static \(here mode=weight-only\)" -- \
  "$MOPT" quantize "$T/work/model.onnx" --weight-only --per-channel
expect 2 "option 'calibration' of pass 'quantize' applies only with mode=static \(here mode=dynamic\)" -- \
  "$MOPT" quantize "$T/work/model.onnx" --calibration entropy
expect 2 "option 'percentile' of pass 'quantize' applies only with calibration=percentile" -- \
  "$MOPT" quantize "$T/work/model.onnx" --data "$T/work" --percentile 99.9 --print-pipeline
expect 2 "tensor-range expects NAME=LO:HI, got 'data_0'" -- "$MOPT" quantize "$T/work/model.onnx" --data "$T/work" --tensor-range data_0
expect 2 "tensor-range: the main graph has no value named 'nosuch'" -- \
  "$MOPT" quantize "$T/work/model.onnx" --data "$T/work" --tensor-range nosuch=0:1 -o "$T/work/tr.onnx"
[ ! -e "$T/work/tr.onnx" ] || fail "a refused tensor-range wrote output"
expect 2 "--accuracy-level: Value 7 not in range 0 to 4" -- "$MOPT" quantize "$T/work/model.onnx" --weight-only --accuracy-level 7
expect 0 "--upgrade-opset,--no-upgrade-opset" -- "$MOPT" quantize --help
if [ -f "$M/digits_mlp.onnx" ]; then
  mkdir -p "$T/q"
  cp "$M/digits_mlp.onnx" "$M/digits_vit.onnx" "$T/q/"
  q_sum=$(sha256sum "$T/q/digits_mlp.onnx" | cut -d' ' -f1)
  expect 0 "quantization \(dynamic\): 3 layer\(s\) quantized" -- "$MOPT" quantize "$T/q/digits_mlp.onnx"
  [ -f "$T/q/digits_mlp.int8.onnx" ] || fail "quantize did not write <model>.int8.onnx"
  grep -q '"nodes_quantized": 3' "$T/q/digits_mlp.int8.onnx.report.json" || fail "quantize report lacks nodes_quantized"
  grep -q '"relative_l2"' "$T/q/digits_mlp.int8.onnx.report.json" || fail "quantize report lacks per-layer errors"
  "$MOPT" quantize "$T/q/digits_mlp.onnx" -o "$T/q/again.onnx" -q
  cmp -s "$T/q/digits_mlp.int8.onnx" "$T/q/again.onnx" || fail "quantize is not deterministic"
  [ "$(sha256sum "$T/q/digits_mlp.onnx" | cut -d' ' -f1)" = "$q_sum" ] || fail "quantize modified its input"
  expect 0 "wrote .*digits_vit.int4.onnx" -- "$MOPT" quantize "$T/q/digits_vit.onnx" --weight-only --accuracy off
  # Portable int4: blocked DequantizeLinear needs opset 21, reached by the upgrade the report names; refused
  # without it, nothing written.
  expect 0 "upgraded the model from opset 17 to 21 \(weight-only quantization with format=qdq needs it\)" -- \
    "$MOPT" quantize "$T/q/digits_vit.onnx" --weight-only --format qdq -o "$T/q/vit_qdq.onnx" --accuracy off
  expect 0 "opsets +ai.onnx 21" -- "$MOPT" inspect "$T/q/vit_qdq.onnx"
  grep -q '"int4 (blocked DequantizeLinear)"' "$T/q/vit_qdq.onnx.report.json" || fail "the qdq report lacks its int4 weights"
  expect 2 "format=qdq writes blocked DequantizeLinear \(opset 21\); the model imports opset 17" -- \
    "$MOPT" quantize "$T/q/digits_vit.onnx" --weight-only --format qdq --no-upgrade-opset -o "$T/q/vit_qdq2.onnx"
  [ ! -e "$T/q/vit_qdq2.onnx" ] || fail "a refused quantize wrote its output"
  expect 0 "accuracy-aware: drop [0-9.]+ pp -> 0.00 pp \(target 0.00\) with [1-9][0-9]* layer\(s\) in float" -- \
    "$MOPT" quantize "$T/q/digits_vit.onnx" -o "$T/q/aware.onnx" --weight-only --accuracy "$M/digits_test_x.npy" \
    --labels "$M/digits_test_y.npy" --max-accuracy-drop 0
  grep -q '"kept_float"' "$T/q/aware.onnx.report.json" || fail "accuracy-aware result missing from the report"
  # The overrides file: a node kept float, one tensor 16-bit, one with its own range, each in the report;
  # bad keys, values and names are usage errors naming the file, and nothing is written.
  cat >"$T/q/overrides.json" <<'JSON'
{"keep_float": ["/fc2/Gemm"],
 "tensors": {"/fc1/Gemm_output_0": {"type": "uint16"}, "input": {"range": [0, 16]}, "/b1/BatchNormalization_output_0": {"symmetric": true}}}
JSON
  expect 0 "quantize: skipped '/fc2/Gemm': excluded by name" -- "$MOPT" quantize "$M/digits_cnn.onnx" -o "$T/q/over.onnx" \
    --data "$M/digits_train_x.npy" --target portable --overrides "$T/q/overrides.json" --accuracy off --explain
  grep -q "tensor-type overrides applied: '/fc1/Gemm_output_0' uint16" "$T/q/over.onnx.report.json" || fail "overrides: the uint16 tensor is not in the report"
  grep -q "tensor-range overrides applied: 'input' \[0, 16\]" "$T/q/over.onnx.report.json" || fail "overrides: the input range is not in the report"
  grep -q "symmetry overrides applied: '/b1/BatchNormalization_output_0' symmetric" "$T/q/over.onnx.report.json" ||
    fail "overrides: the symmetric tensor is not in the report"
  for bad in '{"keep_float": ["/nope"]}|keep_float: the main graph has no node named ./nope.' \
             '{"tensors": {"input": {"type": "int32"}}}|unknown quantized type .int32.' \
             '{"tensors": {"input": {"range": [2, 1]}}}|"range" \[2, 1\] must be finite with lo <= hi' \
             '{"tensor": {}}|unknown key "tensor" \(keep_float, tensors\)' \
             '{"tensors": {"input": {"symmetric": 1}}}|"symmetric" must be true or false' \
             '{"tensors": {"nope": {"type": "int16"}}}|tensor-type: the main graph has no value named .nope.'; do
    printf '%s' "${bad%%|*}" >"$T/q/bad.json"
    expect 2 "${bad#*|}" -- "$MOPT" quantize "$M/digits_cnn.onnx" -o "$T/q/bad.onnx" --data "$M/digits_train_x.npy" --overrides "$T/q/bad.json"
    [ ! -e "$T/q/bad.onnx" ] || fail "a refused overrides file still wrote a model"
  done
  expect 0 "calibration +minmax on 1437 row" -- "$MOPT" quantize "$M/digits_cnn.onnx" -o "$T/q/cnn.onnx" \
    --data "$M/digits_train_x.npy" --accuracy "$M/digits_test_x.npy" --labels "$M/digits_test_y.npy" --max-accuracy-drop 1
fi

# --- fuse
expect 0 "Examples:" -- "$MOPT" fuse --help
expect 0 "^fixpoint\(upgrade-ir-version,shape-inference\(data-propagation=true\),simplify-shapes,fold-constants.*fold-batchnorm" -- "$MOPT" fuse "$T/work/model.onnx" --print-pipeline
expect 0 "fold-constants\(max-folded-bytes=65536\)" -- "$MOPT" fuse "$T/work/model.onnx" --print-pipeline --max-folded-bytes 64K
expect 2 "--skip: 'fuse-everything' is not a pass of the fuse group" -- "$MOPT" fuse "$T/work/model.onnx" --skip fuse-everything
expect 2 "--verify-numerics runs the model on the accuracy data" -- "$MOPT" fuse "$T/work/model.onnx" --verify-numerics --accuracy off
[ ! -e "$T/work/model.fused.onnx" ] || fail "a refused fuse wrote a model"
if [ -f "$M/digits_cnn.onnx" ]; then
  mkdir -p "$T/f"
  cp "$M/digits_cnn.onnx" "$T/f/"
  f_sum=$(sha256sum "$T/f/digits_cnn.onnx" | cut -d' ' -f1)
  expect 0 "batchnorm-folded-into-conv 3" -- "$MOPT" fuse "$T/f/digits_cnn.onnx" --verify-numerics
  [ -f "$T/f/digits_cnn.fused.onnx" ] || fail "fuse did not write <model>.fused.onnx"
  grep -q '"batchnorm-folded-into-conv": 3' "$T/f/digits_cnn.fused.onnx.report.json" || fail "fuse report lacks its counters"
  "$MOPT" fuse "$T/f/digits_cnn.onnx" -o "$T/f/again.onnx" -q
  cmp -s "$T/f/digits_cnn.fused.onnx" "$T/f/again.onnx" || fail "fuse is not deterministic"
  [ "$(sha256sum "$T/f/digits_cnn.onnx" | cut -d' ' -f1)" = "$f_sum" ] || fail "fuse modified its input"
  expect 0 "fold-batchnorm changed the outputs .*rolled back" -- \
    "$MOPT" fuse "$T/f/digits_cnn.onnx" -o "$T/f/strict.onnx" --verify-numerics --numerics-tolerance 0
  grep -q '"rolled_back": 1' "$T/f/strict.onnx.report.json" || fail "the report does not say what was rolled back"
fi

# --- prune
expect 0 "Examples:" -- "$MOPT" prune --help
expect 0 "prune\(method=nm\),eliminate-dead-code$" -- "$MOPT" prune "$T/work/model.onnx" --method nm --print-pipeline
expect 2 "option 'n' of pass 'prune' applies only with method=nm \(here method=magnitude\)" -- "$MOPT" prune "$T/work/model.onnx" --n 1
expect 0 "prune\(method=channels,sparsity=0.25" -- "$MOPT" prune "$T/work/model.onnx" --method channels --sparsity 0.25 --print-pipeline
expect 2 "sparsity must be in \[0, 1\)" -- "$MOPT" prune "$T/work/model.onnx" --sparsity 1.5
[ ! -e "$T/work/model.pruned.onnx" ] || fail "a refused prune wrote a model"
if [ -f "$M/digits_mlp.onnx" ]; then
  mkdir -p "$T/p"
  cp "$M/digits_mlp.onnx" "$T/p/"
  p_sum=$(sha256sum "$T/p/digits_mlp.onnx" | cut -d' ' -f1)
  expect 0 "tensors-pruned 3" -- "$MOPT" prune "$T/p/digits_mlp.onnx" --accuracy "$M/digits_test_xflat.npy" \
    --labels "$M/digits_test_y.npy" --max-accuracy-drop 2
  [ -f "$T/p/digits_mlp.pruned.onnx" ] || fail "prune did not write <model>.pruned.onnx"
  grep -q '"sparsity_of_pruned_tensors": 0.5' "$T/p/digits_mlp.pruned.onnx.report.json" || fail "prune report lacks the sparsity"
  "$MOPT" prune "$T/p/digits_mlp.onnx" -o "$T/p/again.onnx" -q
  cmp -s "$T/p/digits_mlp.pruned.onnx" "$T/p/again.onnx" || fail "prune is not deterministic"
  [ "$(sha256sum "$T/p/digits_mlp.onnx" | cut -d' ' -f1)" = "$p_sum" ] || fail "prune modified its input"
  expect 3 "gate max-accuracy-drop failed" -- "$MOPT" prune "$T/p/digits_mlp.onnx" -o "$T/p/gated.onnx" --sparsity 0.97 \
    --accuracy "$M/digits_test_xflat.npy" --labels "$M/digits_test_y.npy" --max-accuracy-drop 2
fi

# --- clip
expect 0 "Examples:" -- "$MOPT" clip --help
expect 2 "exactly one of range=, percentile= or sigma=" -- "$MOPT" clip "$T/work/model.onnx" --percentile 99 --sigma 3
expect 2 "clip: nothing to do; give range=, percentile=, sigma=, data= or fp16-range=true" -- "$MOPT" clip "$T/work/model.onnx" --print-pipeline
expect 0 "\),clip-weights\(range=-1:1\),eliminate-dead-code$" -- "$MOPT" clip "$T/work/model.onnx" --range -1:1 --print-pipeline
expect 0 "\),clip-fp16-range,eliminate-dead-code$" -- "$MOPT" clip "$T/work/model.onnx" --fp16-range --print-pipeline
[ ! -e "$T/work/model.clipped.onnx" ] || fail "a refused clip wrote a model"
if [ -f "$M/digits_mlp.onnx" ]; then
  mkdir -p "$T/c"
  cp "$M/digits_mlp.onnx" "$T/c/"
  expect 0 "tensors-clipped 3, values-moved [1-9]" -- "$MOPT" clip "$T/c/digits_mlp.onnx" --percentile 99.9
  [ -f "$T/c/digits_mlp.clipped.onnx" ] || fail "clip did not write <model>.clipped.onnx"
  grep -q '"values_moved"' "$T/c/digits_mlp.clipped.onnx.report.json" || fail "clip report lacks values_moved"
fi

# --- convert
expect 0 "Examples:" -- "$MOPT" convert --help
expect 2 "nothing to do" -- "$MOPT" convert "$T/work/model.onnx"
expect 2 "option 'auto-mixed' of 'convert' applies only with to=$" -- "$MOPT" convert "$T/work/model.onnx" --auto-mixed
expect 2 "--to: .*fp32 not in" -- "$MOPT" convert "$T/work/model.onnx" --to fp32
expect 2 "--opset: Value 99 not in range" -- "$MOPT" convert "$T/work/model.onnx" --opset 99
expect 2 "needs the accuracy check" -- "$MOPT" convert "$T/work/model.onnx" --to fp16 --auto-mixed --accuracy off
expect 2 "no input named 'nope'" -- "$MOPT" convert "$T/work/model.onnx" --shape nope=1,2
expect 0 "^convert-opset\(opset=13\),convert-precision\(to=fp16,op-block-list=\"default,Softmax\"\)$" -- \
  "$MOPT" convert "$T/work/model.onnx" --to fp16 --opset 13 --op-block-list default,Softmax --print-pipeline
[ ! -e "$T/work/model.fp16.onnx" ] && [ ! -e "$T/work/model.converted.onnx" ] || fail "a refused convert wrote a model"
# rename-values is a pass of the convert preset: its option is the --rename flag with no CLI code.
if [ -f "$M/digits_cnn.onnx" ]; then
  expect 0 "values-renamed 2" -- "$MOPT" convert "$M/digits_cnn.onnx" --rename input=image,logits=scores -o "$T/work/renamed.onnx"
  expect 0 "image .*float\[batch,1,8,8\]" -- "$MOPT" inspect "$T/work/renamed.onnx"
  expect 2 "the main graph has no value named 'nope'" -- "$MOPT" convert "$M/digits_cnn.onnx" --rename nope=x -o "$T/work/renamed2.onnx"
  [ ! -e "$T/work/renamed2.onnx" ] || fail "a refused rename wrote a model"
fi
if [ -f "$M/digits_cnn.onnx" ]; then
  mkdir -p "$T/v"
  cp "$M/digits_cnn.onnx" "$T/v/"
  v_sum=$(sha256sum "$T/v/digits_cnn.onnx" | cut -d' ' -f1)
  expect 0 "nodes-converted 15, .*tensors-converted 22" -- "$MOPT" convert "$T/v/digits_cnn.onnx" --to fp16 \
    --accuracy "$M/digits_test_x.npy" --labels "$M/digits_test_y.npy" --max-accuracy-drop 0.5 --min-cosine 0.999
  [ -f "$T/v/digits_cnn.fp16.onnx" ] || fail "convert did not write <model>.fp16.onnx"
  grep -q '"nodes_converted": 15' "$T/v/digits_cnn.fp16.onnx.report.json" || fail "convert report lacks its precision details"
  "$MOPT" convert "$T/v/digits_cnn.onnx" --to fp16 -o "$T/v/again.onnx" -q
  cmp -s "$T/v/digits_cnn.fp16.onnx" "$T/v/again.onnx" || fail "convert is not deterministic"
  [ "$(sha256sum "$T/v/digits_cnn.onnx" | cut -d' ' -f1)" = "$v_sum" ] || fail "convert modified its input"
  expect 0 "input +float\[8,1,8,8\]" -- sh -c "'$MOPT' convert '$T/v/digits_cnn.onnx' --batch 8 -q && '$MOPT' inspect '$T/v/digits_cnn.converted.onnx'"
  expect 1 "LayerNormalization does not exist in the older opset" -- "$MOPT" convert "$M/digits_vit.onnx" --opset 13 -o "$T/v/vit13.onnx"
  [ ! -e "$T/v/vit13.onnx" ] || fail "a failed opset conversion wrote a model"
  expect 0 "auto-mixed-evaluations 1" -- "$MOPT" convert "$T/v/digits_cnn.onnx" --to fp16 --auto-mixed -o "$T/v/mixed.onnx" \
    --accuracy "$M/digits_test_x.npy"
fi

# Every option of a command's pass is a flag of the command (generated from the pass's table), except the
# ones the command derives from its other flags; renamed flags are listed here.
for cmd in quantize prune clip convert; do
  missing=$("$MOPT" passes --json | CMD=$cmd HELP="$("$MOPT" $cmd --help)" node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const derived = { quantize: ["max-accuracy-drop", "min-cosine"], convert: ["shapes", "dims", "min-cosine", "max-accuracy-drop"] };
      const renamed = { "max-samples": "max-calibration-samples" };
      const pass = JSON.parse(s).passes.find((p) => p.name === process.env.CMD);
      const out = pass.options.filter((o) => !(derived[process.env.CMD] || []).includes(o.name))
        .map((o) => "--" + (renamed[o.name] || o.name)).filter((f) => !process.env.HELP.includes(f + " ") && !process.env.HELP.includes(f + ","));
      console.log(out.join(" "));
    });')
  [ -z "$missing" ] || fail "mopt $cmd --help lacks the flags of its pass's options: $missing"
done
expect 0 "n=2  nm: nonzeros kept per group \[1, \] \[with method=nm\]" -- "$MOPT" passes

# The executor's tensor budget: an Expand to 1e5 x 1e4 floats (4 GB) is refused with a message, not
# allocated; sizes that overflow 64 bits are usage errors.
cat >"$T/expand.onnxtxt" <<'TXT'
<ir_version: 8, opset_import: ["" : 13]>
g (float[1] x) => (float[100000,10000] y) <int64[2] s = {100000, 10000}> { y = Expand(x, s) }
TXT
expect 1 "a float tensor of shape \[100000,10000\] needs 3814.7 MiB, over the executor's limit of 1.0 MiB" -- \
  "$MOPT" run "$T/expand.onnxtxt" --max-tensor-bytes 1M
expect 2 "--max-tensor-bytes takes a size in bytes" -- "$MOPT" run "$T/expand.onnxtxt" --max-tensor-bytes 99999999999999999G

# --- the report explains the size: weights vs graph structure add up to the file, and the largest float
# weights left carry the reason a pass kept their readers float (dynamic mode leaves Convs float)
"$MOPT" quantize "$M/digits_cnn.onnx" -o "$T/sz.onnx" --accuracy off -q || fail "quantize for the size section"
/usr/bin/python3 - "$T/sz.onnx.report.json" <<'PY' || fail "the report's size section (above)"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["size"]
assert s["weight_bytes"] + s["graph_bytes"] == r["output"]["total_bytes"], s
top = s["largest_float_weights"][0]
assert top["tensor"].startswith("c3.weight") and top["bytes"] == 294912 and top["read_by"] == ["/c3/Conv"], top
assert "static mode" in top["reason"], top
assert any(w["reason"] is None for w in s["largest_float_weights"]), "a bias read by a quantized Gemm has no reason"
assert sum(s["weight_bytes_by_dtype"].values()) == s["weight_bytes"] and s["weight_bytes_by_dtype"]["int8"] > 0, s["weight_bytes_by_dtype"]
PY
# Weights held in Constant nodes (ppocrv4_det's convs) and 16-bit floats are weights too: convert --to fp16
# lists them as constant-node float16, and by type the float32 bytes left are few.
"$MOPT" convert "$SRC/../shared/models/ocr/ppocrv4_det.onnx" --to fp16 -o "$T/sz16.onnx" --accuracy off --no-compressed-size -q \
  || fail "convert for the size section"
/usr/bin/python3 - "$T/sz16.onnx.report.json" "$T/sz16.md" <<'PY' || fail "the size section of an fp16 model with Constant-node weights (above)"
import json, sys
s = json.load(open(sys.argv[1]))["size"]
top = s["largest_float_weights"][0]
assert top["kind"] == "constant-node" and top["dtype"] == "float16" and top["read_by"], top
by = s["weight_bytes_by_dtype"]
assert sum(by.values()) == s["weight_bytes"] and by["float16"] > 100 * by.get("float", 0), by
PY
"$MOPT" report "$T/sz16.onnx.report.json" | grep -q "| float16 already |" || fail "the Markdown size table does not say the fp16 weights are 16-bit already"

# An unknown option followed by a value is named as such, not taken for a second model (a batch).
expect 2 "calibration-method" -- "$MOPT" quantize "$M/digits_cnn.onnx" --calibration-method percentile -o "$T/x.onnx"

# Per-tensor int8 of re-parameterized convs (silero_vad's encoder) rounds most channels to a few codes: said,
# with the layers, and not said per channel.
A="$SRC/../shared/models/audio"
expect 0 "per-tensor int8 weights leave many output channels with fewer than 8 of 255 levels .*'/model/encoder/3/reparam_conv/Conv' \(126 of 128 channels\)" -- \
  "$MOPT" quantize "$A/silero_vad_v5_16k_op15.onnx" --data "$A/inputs/silero_v5_x100" -o "$T/sil.onnx" --accuracy off --no-compressed-size
"$MOPT" quantize "$A/silero_vad_v5_16k_op15.onnx" --data "$A/inputs/silero_v5_x100" -o "$T/sil.onnx" --accuracy off --per-channel 2>&1 \
  | grep -q "fewer than 8 of 255 levels" && fail "the coarse-channel warning fires per channel"

# --- --min-cosine is the accuracy-aware search's target too: no labels needed. int4 digits_vit starts near
# cosine 0.992; the search keeps some MatMuls float (not all) until every output reaches 0.999.
"$MOPT" quantize "$M/digits_vit.onnx" --weight-only -o "$T/vit4.onnx" --accuracy "$M/digits_test_x.npy" --min-cosine 0.999 -q \
  || fail "quantize --weight-only --min-cosine 0.999"
/usr/bin/python3 - "$T/vit4.onnx.report.json" <<'PY' || fail "the cosine-driven accuracy-aware search (above)"
import json, sys
r = json.load(open(sys.argv[1]))
a = r["passes"][[p["name"] for p in r["passes"]].index("quantize")]["details"]["accuracy_aware"]
assert a["target_cosine"] == 0.999 and a["initial_cosine"] < 0.999 <= a["final_cosine"] and a["met"], a
assert 0 < len(a["kept_float"]) < len(a["sensitivity"]) and "target_drop_pp" not in a, a
assert min(o["cosine_similarity"] for o in r["accuracy"]["outputs"]) >= 0.999, r["accuracy"]["outputs"]
assert r["gates"][0]["gate"] == "min-cosine" and r["gates"][0]["passed"], r["gates"]
PY
expect 2 "--min-cosine would decide on random inputs" -- "$MOPT" quantize "$M/digits_vit.onnx" --weight-only -o "$T/vit4r.onnx" --min-cosine 0.999

# --- colour: only on a terminal (script(1) gives one), never with NO_COLOR or --color never, always with --color always
esc=$(printf '\033')
"$MOPT" quantize "$T/none.onnx" >"$T/c.out" 2>&1 || true
grep -q "$esc" "$T/c.out" && fail "colour in a pipe: $(cat -v "$T/c.out")"
"$MOPT" quantize "$T/none.onnx" --color always >"$T/c.out" 2>&1 || true
grep -q "$esc\[1;31mmopt: error:" "$T/c.out" || fail "--color always: $(cat -v "$T/c.out")"
script -qec "$MOPT quantize $T/none.onnx" /dev/null >"$T/c.out" 2>&1 || true
grep -q "$esc\[1;31mmopt: error:" "$T/c.out" || fail "no colour on a terminal: $(cat -v "$T/c.out")"
NO_COLOR=1 script -qec "$MOPT quantize $T/none.onnx" /dev/null >"$T/c.out" 2>&1 || true
grep -q "$esc\[[0-9;]*m" "$T/c.out" && fail "colour on a terminal with NO_COLOR: $(cat -v "$T/c.out")"
script -qec "$MOPT quantize $T/none.onnx --color never" /dev/null >"$T/c.out" 2>&1 || true
grep -q "$esc\[[0-9;]*m" "$T/c.out" && fail "colour with --color never: $(cat -v "$T/c.out")"
script -qec "$MOPT prune $M/digits_cnn.onnx -o $T/pr.onnx --sparsity 0.5 --accuracy $M/digits_test_x.npy" /dev/null >"$T/c.out" 2>&1 || true
grep -q "verdict: $esc\[1;31mDEGRADED" "$T/c.out" || fail "a DEGRADED verdict is not red on a terminal: $(cat -v "$T/c.out")"
expect 2 "color" -- "$MOPT" quantize "$T/none.onnx" --color sometimes

# --- progress and width. On a 60-column terminal: a redrawn status line with a bar for calibration, and
# every line that stays (after the last carriage return, colours removed) fits in 60 columns.
qargs="$M/digits_cnn.onnx -o $T/p.onnx --data $M/digits_train_x.npy --accuracy $M/digits_test_x.npy --labels $M/digits_test_y.npy"
script -qec "stty cols 60; $MOPT quantize $qargs" /dev/null >"$T/c.out" 2>&1 || fail "quantize on a terminal: $(cat -v "$T/c.out")"
grep -q "calibrating \[#*-*\] [0-9]*/[0-9]* samples" "$T/c.out" || fail "no calibration progress bar on a terminal: $(cat -v "$T/c.out")"
grep -q "$(printf '\r')$esc\[K" "$T/c.out" || fail "the status line is not redrawn in place: $(cat -v "$T/c.out")"
/usr/bin/python3 - "$T/c.out" <<'PY' || fail "a line is wider than the 60-column terminal"
import re, sys
text = open(sys.argv[1], encoding="utf-8").read().replace("\r\n", "\n")
wide = [l for l in (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", l.split("\r")[-1]) for l in text.split("\n")) if len(l) > 60]
assert not wide, "\n".join(wide)
assert "\u2026" in text, "nothing was elided: the test no longer exercises long names"
PY
# Off a terminal: one line per phase with its time, nested phases with -v, nothing with -q; lines whole.
"$MOPT" quantize $qargs 2>"$T/phases.err" >/dev/null || fail "quantize off a terminal"
for phase in "loading digits_cnn.onnx" "reference outputs of the original model" "passes" "accuracy of the optimized model" "writing p.onnx"; do
  grep -Eq "^mopt: $phase: .*[0-9.]+ s" "$T/phases.err" || fail "off a terminal, no line for phase '$phase': $(cat "$T/phases.err")"
done
grep -q "$esc" "$T/phases.err" && fail "escapes off a terminal: $(cat -v "$T/phases.err")"
grep -q "calibrating" "$T/phases.err" && fail "a nested phase without -v: $(cat "$T/phases.err")"
"$MOPT" quantize $qargs -v 2>"$T/phases.err" >/dev/null || fail "quantize -v"
grep -q "^mopt: passes › calibrating: 1/1 samples, " "$T/phases.err" || fail "-v does not show the nested calibration phase: $(grep mopt: "$T/phases.err")"
"$MOPT" quantize $qargs -q >"$T/q.out" 2>&1 || fail "quantize -q"
[ -s "$T/q.out" ] && fail "-q printed: $(cat "$T/q.out")"
# -q keeps a warning that changes the meaning of the result: the accuracy asked for was not measured.
cat >"$T/custom.onnxtxt" <<'TXT'
<ir_version: 8, opset_import: ["" : 13, "custom.domain" : 1]>
g (float[2] x) => (float[2] y) { t = Relu(x)  y = custom.domain.Mystery(t) }
TXT
expect 0 "^mopt: warning: accuracy not measured: the executor cannot run this model: not supported: operator Mystery" -- \
  "$MOPT" fuse "$T/custom.onnxtxt" -o "$T/custom.onnx" -q

if [ "$failures" -gt 0 ]; then echo "$failures CLI check(s) failed"; exit 1; fi
echo "all CLI checks passed"
