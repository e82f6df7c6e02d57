#!/usr/bin/env bash
# mopt batch on many small models: 200 copies of the shared models (digits_cnn, digits_mlp, digits_vit,
# iris_mlp, mnist_winml; 40 each) quantized (dynamic, default accuracy check on random data) by a shell
# loop of single `mopt quantize` commands, by `mopt batch -j 1` and by `mopt batch -j 2`, in interleaved
# rounds (medians; read the ratios, the machine is noisy), with peak RSS (GNU time: the largest process).
# Then --resume after a SIGKILL at about half: how many finished models were done again.
# Results: bench/batch.txt.
#   scripts/bench_batch.sh            ROUNDS=3 by default; COPIES=40
set -euo pipefail
cd "$(dirname "$0")/.."
MOPT=$(realpath "${MOPT:-build/mopt}")
ROUNDS=${ROUNDS:-3}
COPIES=${COPIES:-40}
M=$(realpath ../shared/models)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/models"
for i in $(seq -w 1 "$COPIES"); do
  for m in trained/digits_cnn trained/digits_mlp trained/digits_vit tabular/iris_mlp vision/mnist_winml; do
    cp "$M/$m.onnx" "$T/models/$(basename "$m")_$i.onnx"
  done
done
n=$(ls "$T/models" | wc -l)

run() {  # NAME: one timed run, prints "seconds peak_kib"
  rm -rf "$T/out"
  local start end
  start=$(date +%s.%N)
  case $1 in
    loop) /usr/bin/time -f %M -o "$T/rss" bash -c 'for f in "$1"/models/*.onnx; do "$2" quantize "$f" -O "$1/out" -q || true; done' _ "$T" "$MOPT" ;;
    j1) /usr/bin/time -f %M -o "$T/rss" "$MOPT" batch quantize "$T/models" -O "$T/out" -j 1 -q ;;
    j2) /usr/bin/time -f %M -o "$T/rss" "$MOPT" batch quantize "$T/models" -O "$T/out" -j 2 -q ;;
  esac
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $(cat "$T/rss")"
}
declare -A times peaks
names=(loop j1 j2)
for r in $(seq 1 "$ROUNDS"); do
  for name in "${names[@]}"; do
    read -r s k < <(run "$name")
    times[$name]+="$s "
    peaks[$name]=$k
  done
done
model_lines() { local c; c=$(grep -c '"type":"model"' "$1" 2>/dev/null) || true; echo "${c:-0}"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --resume after SIGKILL at about half.
rm -rf "$T/out"
"$MOPT" batch quantize "$T/models" -O "$T/out" -j 2 -q &
pid=$!
while [ "$(model_lines "$T/out/mopt-batch.jsonl")" -lt $((n / 2)) ]; do sleep 0.05; done
kill -KILL $pid; wait $pid 2>/dev/null || true
before=$(model_lines "$T/out/mopt-batch.jsonl")
start=$(date +%s.%N)
"$MOPT" batch quantize "$T/models" -O "$T/out" -j 2 -q --resume
resume_s=$(echo "$(date +%s.%N) - $start" | bc)
lines=$(model_lines "$T/out/mopt-batch.jsonl")
outputs=$(grep '"type":"model"' "$T/out/mopt-batch.jsonl" | sed 's/.*"output":"\([^"]*\)".*/\1/' | sort -u | wc -l)

base=$(echo "${times[loop]}" | median)
{
  echo "mopt batch benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS interleaved rounds (medians)"
  echo "$n models (5 shared models x $COPIES copies), mopt quantize (dynamic, accuracy on random data)"
  echo
  printf '%-40s %9s %12s %10s\n' "how" seconds "throughput" "peak MiB"
  for name in "${names[@]}"; do
    s=$(echo "${times[$name]}" | median)
    label=$([ "$name" = loop ] && echo "shell loop of mopt quantize" || echo "mopt batch -j ${name#j}")
    printf '%-40s %9.2f %11.2fx %10d\n' "$label" "$s" "$(echo "$base / $s" | bc -l)" "$((peaks[$name] / 1024))"
  done
  echo
  echo "--resume after SIGKILL at $before of $n done: $(echo "$resume_s" | awk '{printf "%.2f", $1}') s to finish the rest;"
  echo "manifest lines $lines for $outputs distinct outputs: $((lines - outputs)) models done twice"
} | tee bench/batch.txt
