#!/usr/bin/env bash
# The verdict sweep: every optimizing command with its defaults (and the common variants) on every shared
# model, measured by mopt on the model's real inputs, and every written model run in ONNX Runtime 1.30 and
# judged against ONNX Runtime's outputs of the original (scripts/sweep_judge.js, mopt's documented
# thresholds, its own code). Counts what the issue on trustworthy accuracy asks to be zero:
#   silent   wrong in ONNX Runtime but no DEGRADED verdict from mopt
#   alarm    DEGRADED from mopt but right in ONNX Runtime (a false alarm)
# A command that refuses (exit 1, e.g. "quantize changed nothing") must leave no output.
# Usage: scripts/sweep.sh [path/to/mopt] > bench/sweep.txt
set -u
cd "$(dirname "$0")/.."
MOPT=$(realpath "${1:-build/mopt}")
MODELS=$(realpath ../shared/models)
TOOLS=$(realpath ../shared/tools/ort)
ORT=$("$TOOLS/setup.sh" 2>/dev/null) || { echo "sweep: could not set up onnxruntime-node" >&2; exit 1; }
export NODE_PATH="$ORT/node_modules"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# shellcheck source=tests/shared_model_cases.sh
. tests/shared_model_cases.sh
cases=("${shared_model_cases[@]}")
# command | extra flags ({IN} is the model's real inputs)
commands=(
  "optimize|"
  "fuse|"
  "quantize|"
  "quantize|--data {IN}"
  "quantize|--data {IN} --per-channel"
  "quantize|--weight-only"
  "prune|"
  "prune|--method nm"
  "clip|--percentile 99.9"
  "convert|--to fp16"
)

runs=0 silent=0 alarms=0 refused=0 leftovers=0 agree=0
printf '%-20s %-36s %-5s %-11s %-6s %s\n' model command exit mopt ort note
for c in "${cases[@]}"; do
  IFS='|' read -r model inputs golden <<<"$c"
  name=$(basename "$model" .onnx)
  for cmd in "${commands[@]}"; do
    IFS='|' read -r command flags <<<"$cmd"
    flags=${flags//\{IN\}/$MODELS/$inputs}
    out="$T/out.onnx"
    rm -rf "$T"/out* "$T/ort"
    # shellcheck disable=SC2086
    "$MOPT" "$command" "$MODELS/$model" -o "$out" --accuracy "$MODELS/$inputs" --no-compressed-size -q $flags >"$T/log" 2>&1
    rc=$?
    runs=$((runs + 1))
    label="$command ${flags//$MODELS\//}"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
      refused=$((refused + 1))
      [ -e "$out" ] && leftovers=$((leftovers + 1))
      printf '%-20s %-36s %-5s %-11s %-6s %s\n' "$name" "$label" "$rc" refused - "$(head -c 110 "$T/log" | tr '\n' ' ')"
      continue
    fi
    verdict=$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log((r.accuracy&&r.accuracy.verdict||{}).status||"none")' "$out.report.json")
    node "$TOOLS/run.js" "$out" --inputs-dir "$MODELS/$inputs" --runs 1 --warmup 0 --save-outputs "$T/ort" >"$T/ortlog" 2>&1
    judged=$(node scripts/sweep_judge.js "$MODELS/$golden" "$T/ort" 2>&1)
    ort=$(echo "$judged" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);console.log(j.wrong?"wrong":"ok")}catch(e){console.log("error")}})')
    reasons=$(echo "$judged" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).reasons.join("; "))}catch(e){console.log(s.slice(0,100))}})')
    note=""
    if [ "$ort" != ok ] && [ "$verdict" != degraded ]; then silent=$((silent + 1)); note="SILENT: $reasons"
    elif [ "$ort" = ok ] && [ "$verdict" = degraded ]; then alarms=$((alarms + 1)); note="FALSE ALARM"
    else agree=$((agree + 1)); [ "$ort" != ok ] && note="$reasons"
    fi
    printf '%-20s %-36s %-5s %-11s %-6s %s\n' "$name" "$label" "$rc" "$verdict" "$ort" "$note"
  done
done
echo
echo "runs $runs: verdict agrees with ONNX Runtime $agree, silent failures $silent, false alarms $alarms, refused $refused (outputs left by refusals: $leftovers)"
[ "$silent" -eq 0 ] && [ "$alarms" -eq 0 ] && [ "$leftovers" -eq 0 ]
