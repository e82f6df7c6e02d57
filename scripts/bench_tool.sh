#!/usr/bin/env bash
# Speed and memory of every optimizing command on a BERT-shaped model (../shared/tools/gen/bert_like.py,
# random weights; Debian's python3-torch) at two sizes, against copying the file (cp + fsync, as mopt
# writes), ONNX's Python API load + save (Debian's python3-onnx) and ONNX Runtime's own session save, in
# interleaved rounds (medians; read the ratios, the machine is noisy). Results: bench/tool.txt.
#   scripts/bench_tool.sh            ROUNDS=3 by default; SIZES="small big" (small: --layers 2 --hidden 128)
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=$(realpath "${MOPT:-build/mopt}")
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-"small big"}
T=${BENCH_DIR:-$(mktemp -d)}
ORT_DIR=$(../shared/tools/ort/setup.sh 2>/dev/null || true)  # onnxruntime-node, installed once
out=$(mktemp)

gen() {  # size -> model path
  local m="$T/bert_$1.onnx"
  if [ ! -f "$m" ]; then
    local args=(); [ "$1" = small ] && args=(--layers 2 --hidden 128)
    /usr/bin/python3 ../shared/tools/gen/bert_like.py "$m" "${args[@]}" >/dev/null 2>&1 ||
      { echo "bench_tool: cannot generate bert_like (python3-torch)" >&2; exit 1; }
  fi
  echo "$m"
}

commands=(
  "cp+fsync|"
  "optimize (load, dead code, save)|optimize --passes eliminate-dead-code --no-compressed-size"
  "fuse|fuse --no-compressed-size"
  "fuse, default report (zstd size)|fuse"
  "quantize (dynamic)|quantize --no-compressed-size"
  "quantize --weight-only --bits 4|quantize --weight-only --bits 4 --no-compressed-size"
  "convert --to fp16|convert --to fp16 --no-compressed-size"
  "prune|prune --no-compressed-size"
  "prune, default report (zstd size)|prune"
  "ONNX Python API load + save|onnx-python"
  "ONNX Runtime session save (basic)|ort"
)

# One timed run: prints "seconds peak_kib" (peak RSS of the process and its children).
run_one() {
  local model=$1 spec=$2 dst="$T/out.onnx"
  rm -f "$dst" "$dst.report.json"
  sync
  case "$spec" in
    "") /usr/bin/time -f "%e %M" -o "$T/time" sh -c 'cp "$1" "$2" && sync "$2"' sh "$model" "$dst" ;;
    onnx-python) /usr/bin/time -f "%e %M" -o "$T/time" /usr/bin/python3 -c \
                   'import onnx, sys; onnx.save(onnx.load(sys.argv[1]), sys.argv[2])' "$model" "$dst" >/dev/null 2>&1 ||
                 { echo "NA NA"; return; } ;;
    ort) /usr/bin/time -f "%e %M" -o "$T/time" node -e '
           const ort = require(process.argv[1] + "/node_modules/onnxruntime-node");
           ort.InferenceSession.create(process.argv[2], { graphOptimizationLevel: "basic", optimizedModelFilePath: process.argv[3] })
             .then(() => {}, (e) => { console.error(e.message); process.exit(1); });' "$ORT_DIR" "$model" "$dst" >/dev/null 2>&1 ||
         { echo "NA NA"; return; } ;;
    *) # shellcheck disable=SC2086
       set -- $spec
       local cmd=$1; shift
       /usr/bin/time -f "%e %M" -o "$T/time" "$MOPT" "$cmd" "$model" -o "$dst" --accuracy off -q "$@" >/dev/null 2>&1 ||
         { echo "FAIL FAIL"; return; } ;;
  esac
  tail -1 "$T/time"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "NA")}'; }

{
  echo "mopt tool benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS interleaved rounds (medians), --accuracy off"
  for size in $SIZES; do
    model=$(gen "$size")
    bytes=$(stat -c %s "$model")
    declare -A secs=() peaks=()
    for _ in $(seq "$ROUNDS"); do
      for c in "${commands[@]}"; do
        read -r s p < <(run_one "$model" "${c#*|}")
        secs[$c]+="$s "; peaks[$c]+="$p "
      done
    done
    cp_s=$(tr ' ' '\n' <<<"${secs[${commands[0]}]}" | grep -v '^$' | median)
    echo
    echo "bert_like $size: $model ($(awk "BEGIN{printf \"%.1f\", $bytes/1048576}") MiB)"
    printf '%-40s %8s %8s %10s %10s\n' "command" "seconds" "x cp" "peak MiB" "peak/size"
    for c in "${commands[@]}"; do
      s=$(tr ' ' '\n' <<<"${secs[$c]}" | grep -v '^$' | median); p=$(tr ' ' '\n' <<<"${peaks[$c]}" | grep -v '^$' | median)
      if [ "$s" = NA ] || [ "$s" = FAIL ]; then printf '%-40s %8s\n' "${c%%|*}" "$s"; continue; fi
      printf '%-40s %8.2f %8.2f %10.0f %10.2f\n' "${c%%|*}" "$s" "$(awk "BEGIN{print $s/$cp_s}")" "$(awk "BEGIN{print $p/1024}")" \
        "$(awk "BEGIN{print $p*1024/$bytes}")"
    done
    unset secs peaks
  done
} | tee "$out"
mkdir -p bench
mv "$out" bench/tool.txt
