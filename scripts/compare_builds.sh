#!/usr/bin/env bash
# Do two builds of mopt write the same models? Runs every optimizing command (defaults and common variants)
# on every shared model with both binaries and compares the written models byte for byte, and the reports'
# accuracy sections. For refactors that must not change behaviour (build the old commit in a worktree:
#   git worktree add /tmp/old HEAD~1 && cmake -S /tmp/old -B /tmp/old/build && cmake --build /tmp/old/build --target mopt).
# Usage: scripts/compare_builds.sh OLD_MOPT NEW_MOPT
set -u
cd "$(dirname "$0")/.."
OLD=$(realpath "$1"); NEW=$(realpath "$2")
MODELS=$(realpath ../shared/models)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# shellcheck source=tests/shared_model_cases.sh
. tests/shared_model_cases.sh
commands=("fuse|" "quantize|" "quantize|--data {IN}" "quantize|--data {IN} --per-channel --calibration entropy"
          "quantize|--weight-only" "prune|" "prune|--method nm" "clip|--percentile 99.9" "convert|--to fp16"
          "convert|--to fp16 --no-keep-io-types --op-block-list default,Softmax" "clip|--sigma 3 --fp16-range" "convert|--opset 13 --batch 1")
same=0 differ=0 both_refused=0
for c in "${shared_model_cases[@]}"; do
  IFS='|' read -r model inputs _ <<<"$c"
  name=$(basename "$model" .onnx)
  for cmd in "${commands[@]}"; do
    IFS='|' read -r command flags <<<"$cmd"
    flags=${flags//\{IN\}/$MODELS/$inputs}
    # shellcheck disable=SC2086
    "$OLD" "$command" "$MODELS/$model" -o "$T/old.onnx" --accuracy "$MODELS/$inputs" --no-compressed-size -q $flags >"$T/old.log" 2>&1; a=$?
    # shellcheck disable=SC2086
    "$NEW" "$command" "$MODELS/$model" -o "$T/new.onnx" --accuracy "$MODELS/$inputs" --no-compressed-size -q $flags >"$T/new.log" 2>&1; b=$?
    label="$name $command ${flags//$MODELS\//}"
    if [ "$a" -ne "$b" ]; then echo "DIFFERENT exit $a vs $b: $label: $(head -c 200 "$T/new.log")"; differ=$((differ + 1))
    elif [ ! -f "$T/old.onnx" ]; then both_refused=$((both_refused + 1))
    elif ! cmp -s "$T/old.onnx" "$T/new.onnx"; then echo "DIFFERENT model: $label"; differ=$((differ + 1))
    else
      acc() { node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));const a=r.accuracy||{};console.log(JSON.stringify({o:a.outputs,v:a.verdict,d:a.data}))' "$1"; }
      if [ "$(acc "$T/old.onnx.report.json")" != "$(acc "$T/new.onnx.report.json")" ]; then echo "DIFFERENT accuracy: $label"; differ=$((differ + 1))
      else same=$((same + 1)); fi
    fi
    rm -f "$T"/old.onnx* "$T"/new.onnx*
  done
done
echo "identical $same, different $differ, refused by both $both_refused"
[ "$differ" -eq 0 ]
