#!/usr/bin/env bash
# Benchmark: load + save time and peak memory of mopt on a large model, as ratios to copying the file.
# Generates a BERT-base-shaped model (435 MB, random weights) with ../shared/tools/gen/bert_like.py
# (needs Debian's python3-torch) unless MODEL is given. Results go to bench/io.txt (and stdout).
#   scripts/bench_io.sh [MODEL.onnx]
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=${MOPT:-build/mopt}
[ -x "$MOPT" ] || scripts/build.sh build >/dev/null
WORK=${BENCH_DIR:-$(mktemp -d)}
model=${1:-}
if [ -z "$model" ]; then
  model="$WORK/bert_like.onnx"
  [ -f "$model" ] || /usr/bin/python3 ../shared/tools/gen/bert_like.py "$model" >/dev/null 2>&1 ||
    { echo "bench_io: could not generate the model (is python3-torch installed?)" >&2; exit 1; }
fi
size=$(stat -c %s "$model")
runs=${RUNS:-5}

# median of N timed runs of a command; prints "seconds peak_kib"
measure() {
  local times=() peaks=()
  for _ in $(seq "$runs"); do
    sync
    local out
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" >/dev/null 2>&1
    out=$(tail -1 "$WORK/time.txt")
    times+=("${out% *}"); peaks+=("${out#* }")
  done
  local t p
  t=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  p=$(printf '%s\n' "${peaks[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  echo "$t $p"
}

read -r cp_s cp_kib < <(measure cp "$model" "$WORK/copy.onnx")
# mopt fsyncs the file and its folder before the rename (a crash never leaves a torn model); cp does not.
read -r cps_s cps_kib < <(measure sh -c 'cp "$1" "$2" && sync "$2" "$(dirname "$2")"' sh "$model" "$WORK/copy.onnx")
# Interleave nothing else between runs of one command; the ratio is what matters on a noisy machine.
read -r rt_s rt_kib < <(measure "$MOPT" optimize "$model" -o "$WORK/out.onnx" -q --no-compressed-size --accuracy off --passes eliminate-dead-code)
read -r ext_s ext_kib < <(measure "$MOPT" optimize "$model" -o "$WORK/ext.onnx" -q --no-compressed-size --accuracy off --passes eliminate-dead-code --external-data 1K)
read -r in_s in_kib < <(measure "$MOPT" inspect "$model")
cmp -s "$model" "$WORK/out.onnx" && identical=yes || identical=no

mkdir -p bench
{
  echo "mopt I/O benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, median of $runs runs"
  echo "model: $model ($(awk "BEGIN{printf \"%.1f\", $size/1048576}") MiB)"
  printf '%-44s %8s %10s %8s %10s\n' "command" "seconds" "peak MiB" "time/cp" "peak/size"
  row() { printf '%-44s %8.2f %10.0f %8.2f %10.2f\n' "$1" "$2" "$(awk "BEGIN{print $3/1024}")" \
          "$(awk "BEGIN{print ($cp_s > 0 ? $2/$cp_s : 0)}")" "$(awk "BEGIN{print $3*1024/$size}")"; }
  row "cp" "$cp_s" "$cp_kib"
  row "cp + fsync (as mopt writes)" "$cps_s" "$cps_kib"
  row "mopt optimize (load, dead-code, save)" "$rt_s" "$rt_kib"
  row "mopt optimize --external-data 1K" "$ext_s" "$ext_kib"
  row "mopt inspect" "$in_s" "$in_kib"
  echo "output byte-identical to input: $identical"
} | tee bench/io.txt
