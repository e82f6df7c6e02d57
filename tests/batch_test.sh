#!/usr/bin/env bash
# Batch test: mopt batch over copies of the shared models, as a user and a scheduler would run it.
# - a folder tree with -j 2: outputs mirror the tree and are byte-identical to the single command's; a
#   broken model is an error line while the rest finish; the report and every manifest line validate
#   against docs/schema/mopt.schema.json; the Markdown summary names the failure
# - a second run reuses finished work (cached); --no-cache redoes it; a changed input is redone
# - a batch killed (SIGKILL) halfway and run again with --resume redoes no finished model
# - SIGINT finishes the running model and writes no partial output; exit 4
# - a worker that crashes (SIGSEGV) or passes --timeout is one failed line, the batch goes on
# - job files (YAML with defaults and per-entry commands, JSONL), and their errors (entry and line named)
# - shards (flags, Slurm, Kubernetes and AWS Batch variables) cover the worklist exactly once, and
#   mopt batch merge of them equals a one-machine run; a missing shard is named; the Kubernetes example
#   Job's command, run for each index, converts every model once
# - bad input: unknown option, -o, unwritable output folder, corrupted manifest line
# Usage: tests/batch_test.sh MOPT_BINARY
set -euo pipefail
mopt=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
M=$src/../shared/models
T=$M/trained
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
expect() {  # EXPECTED_EXIT COMMAND...: runs mopt, output in out.txt/err.txt
  local expected=$1; shift
  local rc=0
  "$mopt" "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" = "$expected" ] || fail "exit $rc (expected $expected): mopt $* -- $(tail -5 err.txt)"
}
status_of() {  # MANIFEST OUTPUT: the status of the output's last line
  /usr/bin/python3 -c "
import json, sys
s = [json.loads(l)['status'] for l in open(sys.argv[1]) if json.loads(l).get('type') == 'model' and json.loads(l)['output'] == sys.argv[2]]
print(s[-1] if s else 'none')" "$1" "$2"
}
validate() {  # KIND FILE...: each file (JSON, or JSONL lines for batch_manifest_line) against the schema
  local kind=$1; shift
  /usr/bin/python3 - "$src/docs/schema/mopt.schema.json" "$kind" "$@" <<'PY' || fail "schema ($kind): $*"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator({"$ref": "#/$defs/" + sys.argv[2], "$defs": schema["$defs"]})
for path in sys.argv[3:]:
    docs = [json.loads(l) for l in open(path)] if path.endswith(".jsonl") else [json.load(open(path))]
    for d in docs:
        for e in v.iter_errors(d):
            sys.exit("%s: %s at /%s" % (path, e.message[:300], "/".join(map(str, e.absolute_path))))
PY
}

# --- a folder tree, -j 2, one broken model
mkdir -p models/a models/b
cp "$T/digits_cnn.onnx" "$T/digits_mlp.onnx" models/a/
cp "$M/tabular/iris_mlp.onnx" "$M/vision/mnist_winml.onnx" models/b/
printf 'not a model' >models/b/broken.onnx
(  # the workers' OpenMP threads spin briefly (GOMP_SPINCOUNT=3000) unless the user set otherwise
  unset GOMP_SPINCOUNT OMP_WAIT_POLICY
  export OMP_DISPLAY_ENV=verbose
  expect 1 batch quantize models -O out -j 2 --markdown summary.md
)
for m in a/digits_cnn a/digits_mlp b/iris_mlp b/mnist_winml; do
  [ -f "out/$m.int8.onnx" ] || fail "no output for $m"
  "$mopt" quantize "models/$m.onnx" -o "single.onnx" -q
  cmp -s "out/$m.int8.onnx" single.onnx || fail "$m: the batch's output differs from mopt quantize's"
  [ "$(status_of out/mopt-batch.jsonl "out/$m.int8.onnx")" = ok ] || fail "$m is not ok in the manifest"
done
[ "$(status_of out/mopt-batch.jsonl out/b/broken.int8.onnx)" = error ] || fail "the broken model is not an error line"
[ ! -e out/b/broken.int8.onnx ] || fail "a failed model left an output"
grep -q "not a valid ONNX model" out/b/broken.int8.onnx.log || fail "the failed model's log is not kept"
grep -q "GOMP_SPINCOUNT = '3000'" out/b/broken.int8.onnx.log || fail "a worker's OpenMP threads spin the default 3 ms"
ls out/a out/b | grep -qE '\.tmp|outcome' && fail "temporary files left in the output folder"
grep -q 'error .*broken.onnx' out.txt || fail "the summary does not name the failure: $(cat out.txt)"
grep -q 'broken.onnx' summary.md && grep -q '| 4 | 0 | 0 | 0 | 1 |' summary.md || fail "markdown summary: $(cat summary.md)"
validate batch out/mopt-batch.report.json
validate batch_manifest_line out/mopt-batch.jsonl
ok "folder tree with -j 2: 4 outputs identical to single runs, the broken model one error line"

# --- the cache: same input and flags -> cached; --no-cache and a changed input redo
rm models/b/broken.onnx
expect 0 batch quantize models -O out
[ "$(grep -c '^\[.*cached' err.txt)" = 4 ] || fail "second run did not reuse the 4 finished models: $(cat err.txt)"
cp "$T/digits_vit.onnx" models/a/digits_mlp.onnx   # same name, other content
expect 0 batch quantize models -O out
grep -q 'ok .*models/a/digits_mlp.onnx' err.txt || fail "a changed input was not redone: $(cat err.txt)"
[ "$(grep -c 'cached' err.txt)" = 3 ] || fail "unchanged inputs were not cached: $(cat err.txt)"
expect 0 batch quantize models -O out --no-cache
[ "$(grep -c '^\[.*\] ok' err.txt)" = 4 ] || fail "--no-cache did not redo the models"
expect 0 batch quantize models -O out --per-channel
[ "$(grep -c 'cached' err.txt)" = 0 ] || fail "other flags reused outputs made with different flags"
ok "cache: reused on the same input and flags, redone on a changed input, --no-cache or other flags"

# --- --resume after a kill at about half: no finished model is done again
mkdir many
for i in $(seq -w 1 12); do cp "$T/digits_cnn.onnx" "many/m$i.onnx"; done
"$mopt" batch quantize many -O rout --accuracy "$T/digits_test_x.npy" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f rout/mopt-batch.jsonl ] && [ "$(grep -c '"type":"model"' rout/mopt-batch.jsonl || true)" -ge 5 ] && break
  sleep 0.05
done
kill -KILL $pid; wait $pid 2>/dev/null || true
done_before=$(grep -c '"type":"model"' rout/mopt-batch.jsonl)
[ "$done_before" -ge 5 ] && [ "$done_before" -lt 12 ] || fail "the kill did not land halfway ($done_before done)"
sleep 0.3  # the orphaned worker goes with the batch (PR_SET_PDEATHSIG)
expect 0 batch quantize many -O rout --accuracy "$T/digits_test_x.npy" --resume
/usr/bin/python3 - rout/mopt-batch.jsonl <<'PY' || fail "--resume redid a finished model or missed one"
import collections, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
count = collections.Counter(l["output"] for l in lines if l["type"] == "model")
assert len(count) == 12 and max(count.values()) == 1, count
PY
ls rout | grep -qE '\.tmp' && fail "the killed run left a temporary file"
ok "--resume after SIGKILL with $done_before of 12 done: each model finished exactly once"

# --- SIGINT: the running model finishes, nothing else starts, exit 4; --resume completes
"$mopt" batch quantize many -O iout --accuracy "$T/digits_test_x.npy" >/dev/null 2>iout.err &
pid=$!
for _ in $(seq 1 600); do
  [ -f iout/mopt-batch.jsonl ] && [ "$(grep -c '"type":"model"' iout/mopt-batch.jsonl || true)" -ge 2 ] && break
  sleep 0.05
done
kill -INT $pid
rc=0; wait $pid || rc=$?
[ "$rc" = 4 ] || fail "SIGINT: exit $rc, expected 4: $(cat iout.err)"
grep -q "interrupted" iout.err || fail "SIGINT was not reported"
validate batch_manifest_line iout/mopt-batch.jsonl
validate batch iout/mopt-batch.report.json
for f in iout/*.int8.onnx; do
  grep -q "\"output\":\"$f\"" iout/mopt-batch.jsonl || fail "$f was written but is not in the manifest"
done
expect 0 batch quantize many -O iout --accuracy "$T/digits_test_x.npy" --resume
ok "SIGINT: running model finished, exit 4, manifest valid, --resume completes"

# --- a crash and a time limit are one failed line each
# (Under AddressSanitizer the worker would catch SIGSEGV itself and exit 1: let the signal kill it, as it
# kills a release build.)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0"
mkdir slow
cp "$M/ocr/ppocrv4_det.onnx" slow/det.onnx
cp "$T/digits_mlp.onnx" slow/zmlp.onnx
printf -- '- {model: det.onnx, data: %s}\n- zmlp.onnx\n' "$M/ocr/inputs" >slow/jobs.yaml
"$mopt" batch quantize slow/jobs.yaml -O cout >/dev/null 2>cout.err &
pid=$!
worker=""
for _ in $(seq 1 400); do
  worker=$(pgrep -f "quantize slow/det.onnx" -P $pid || true)  # the worker itself (no shell between)
  [ -n "$worker" ] && break
  sleep 0.05
done
[ -n "$worker" ] || fail "no worker found"
sleep 0.3
kill -SEGV "$worker"
rc=0; wait $pid || rc=$?
[ "$rc" = 1 ] || fail "a crashed worker: exit $rc, expected 1"
[ "$(status_of cout/mopt-batch.jsonl cout/det.int8.onnx)" = error ] || fail "the crash is not an error line"
grep -q 'SIGSEGV' cout/mopt-batch.jsonl || fail "the crash's signal is not named"
[ "$(status_of cout/mopt-batch.jsonl cout/zmlp.int8.onnx)" = ok ] || fail "the model after the crash did not run"
expect 1 batch quantize slow/jobs.yaml -O tout --timeout 0.5
[ "$(status_of tout/mopt-batch.jsonl tout/det.int8.onnx)" = timeout ] || fail "no timeout line"
[ ! -e tout/det.int8.onnx ] && ! ls tout | grep -q tmp || fail "a timed-out worker left files"
# The batch went on to the next model (ok; under a sanitizer it may hit the same short limit).
case "$(status_of tout/mopt-batch.jsonl tout/zmlp.int8.onnx)" in ok | timeout) ;; *) fail "the model after the timeout did not run" ;; esac
ok "a worker killed by SIGSEGV and one over --timeout: one failed line each, the next model runs"

# --- job files
mkdir jobs
cp "$T/digits_cnn.onnx" "$T/digits_mlp.onnx" "$M/tabular/iris_mlp.onnx" jobs/
cat >jobs/jobs.yaml <<'YAML'
defaults:
  command: quantize
  options: {accuracy: off}
models:
  - model: digits_cnn.onnx
    options: {per-channel: true}
    data: CALIBRATION
  - model: digits_mlp.onnx
    command: convert
    options: {to: fp16}
    gates: {max-size: 1M}
  - iris_mlp.onnx
YAML
sed -i "s|CALIBRATION|$T/digits_train_x.npy|" jobs/jobs.yaml
expect 0 batch jobs/jobs.yaml -O jout
[ -f jout/digits_cnn.int8.onnx ] && [ -f jout/digits_mlp.fp16.onnx ] && [ -f jout/iris_mlp.int8.onnx ] || fail "job file outputs: $(ls jout)"
"$mopt" quantize jobs/digits_cnn.onnx -o single.onnx --per-channel --data "$T/digits_train_x.npy" --accuracy off -q
cmp -s jout/digits_cnn.int8.onnx single.onnx || fail "a job entry's output differs from the single command with its options"
printf '{"defaults": {"command": "convert", "options": {"to": "fp16"}}}\n{"model": "digits_cnn.onnx"}\n\n{"model": "iris_mlp.onnx", "options": {"to": "bf16"}}\n' >jobs/jobs.jsonl
expect 0 batch jobs/jobs.jsonl -O lout -q
[ -f lout/digits_cnn.fp16.onnx ] || fail "jsonl outputs: $(ls lout)"
# iris_mlp's opset has no bfloat16 Gemm: the command changes nothing, which is its own status (not an error).
[ "$(status_of lout/mopt-batch.jsonl lout/iris_mlp.bf16.onnx)" = unchanged ] && [ ! -e lout/iris_mlp.bf16.onnx ] ||
  fail "a model the command cannot change is not 'unchanged'"
bad_job() {  # FILE TEXT EXIT PATTERN [COMMAND]: the batch over a broken job file exits EXIT with a line matching PATTERN
  printf "$2" >"jobs/$1"
  expect "$3" batch ${5:-} "jobs/$1" -O bad
  grep -q "$4" err.txt || fail "job file $1: $(cat err.txt)"
}
bad_job bad1.yaml 'models:\n  - model: digits_cnn.onnx\n    options: {bogus-flag: 1}\n' 2 "bad1.yaml entry 1 (line 2).*no option 'bogus-flag'" quantize
bad_job bad2.yaml 'models:\n  - model: digits_cnn.onnx\n    colour: red\n' 1 "entry 1 (line 2): unknown field 'colour'" quantize
bad_job bad3.jsonl '{"model": "digits_cnn.onnx"}\n{"model": \n' 1 "bad3.jsonl line 2: not valid JSON" quantize
bad_job bad4.yaml 'models:\n  - model: missing.onnx\n' 1 "missing.onnx' does not exist" quantize
bad_job bad5.yaml 'models:\n  - model: digits_cnn.onnx\n    command: inspect\n' 2 "runs one of .*not 'inspect'"
[ ! -e bad ] || fail "a refused batch created its output folder"
ok "job files: YAML defaults and per-entry commands, JSONL (an unchanged model is exit 0); bad entries named by entry and line, nothing written"

# --- shards: every model exactly once, the merge equals a one-machine run
mkdir zoo
cp "$T"/digits_cnn.onnx "$T"/digits_mlp.onnx "$T"/digits_vit.onnx "$M/tabular/iris_mlp.onnx" "$M/vision/mnist_winml.onnx" \
  "$M/vision/squeezenet1.1_fp32.onnx" zoo/
expect 0 batch quantize zoo -O local --accuracy off
for i in 0 1 2; do
  SLURM_ARRAY_TASK_ID=$((i + 10)) SLURM_ARRAY_TASK_MIN=10 SLURM_ARRAY_TASK_COUNT=3 expect 0 batch quantize zoo -O sharded --accuracy off
  grep -q "shard $i of 3, from slurm" err.txt || fail "Slurm's variables were not read: $(cat err.txt)"
done
expect 0 batch merge sharded
validate batch sharded/mopt-batch.report.json
/usr/bin/python3 - local/mopt-batch.report.json sharded/mopt-batch.report.json <<'PY' || fail "the merged shards differ from the one-machine run"
import json, sys
def rows(path):
    return [{k: v for k, v in r.items() if k not in ("seconds", "finished_at", "shard", "output", "report")}
            for r in json.load(open(path))["batch"]["results"]]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert len(a) == 6 and a == b, (a, b)
PY
for f in local/*.int8.onnx; do cmp -s "$f" "sharded/$(basename "$f")" || fail "$f differs between the shards and one machine"; done
JOB_COMPLETION_INDEX=1 expect 0 batch quantize zoo -O k8s --accuracy off --shard-count 2 --dry-run
grep -q "in shard 1 of 2 (from kubernetes)" out.txt || fail "Kubernetes index: $(cat out.txt)"
JOB_COMPLETION_INDEX=1 expect 2 batch quantize zoo -O k8s
grep -q "give --shard-count" err.txt || fail "JOB_COMPLETION_INDEX without a count: $(cat err.txt)"
AWS_BATCH_JOB_ARRAY_INDEX=0 AWS_BATCH_JOB_ARRAY_SIZE=2 expect 0 batch quantize zoo -O aws --accuracy off
grep -q "shard 0 of 2, from aws-batch" err.txt || fail "AWS Batch variables: $(cat err.txt)"
expect 1 batch merge aws
grep -q "shard 1 of 2: no manifest" out.txt err.txt || fail "a missing shard is not named: $(cat out.txt err.txt)"
ok "shards from Slurm, Kubernetes and AWS Batch variables; merge equals the one-machine run, byte for byte; a missing shard named"

# --- the Kubernetes Indexed Job example: its container's command, run once per index with JOB_COMPLETION_INDEX
# set as Kubernetes sets it (/data mapped here), converts every model exactly once; the merge is complete.
mkdir -p k8s/models && cp zoo/*.onnx k8s/models/
/usr/bin/python3 - "$src/docs/examples/kubernetes/indexed-job.yaml" "$mopt" "$tmp/k8s" <<'PY' || fail "the Kubernetes example (above)"
import collections, glob, json, os, subprocess, sys, yaml
example, mopt, data = sys.argv[1:]
spec = yaml.safe_load(open(example))["spec"]
assert spec["completionMode"] == "Indexed", "not an Indexed Job"
command = spec["template"]["spec"]["containers"][0]["command"]
assert command[:2] == ["mopt", "batch"], command
assert command[command.index("--shard-count") + 1] == str(spec["completions"]), "--shard-count differs from completions"
command = [mopt] + [a.replace("/data", data) for a in command[1:]]
for index in range(spec["completions"]):
    env = dict(os.environ, JOB_COMPLETION_INDEX=str(index))
    subprocess.run(command, env=env, check=True, capture_output=True)
lines = [json.loads(l) for p in glob.glob(data + "/out/mopt-batch.shard-*.jsonl") for l in open(p)]
done = collections.Counter(l["output"] for l in lines if l["type"] == "model")
assert len(done) == 6 and max(done.values()) == 1, done
merged = subprocess.run([mopt, "batch", "merge", data + "/out"], capture_output=True, text=True)
assert merged.returncode == 0, merged.stderr
counts = json.load(open(data + "/out/mopt-batch.report.json"))["batch"]["counts"]
assert counts["ok"] == 5 and counts["unchanged"] == 1, counts  # squeezenet: only Convs, which dynamic mode leaves
PY
ok "the Kubernetes Indexed Job example: every index its shard, 6 models once each, merge complete"

# --- bad input
expect 2 batch quantize zoo -O x --bogus
grep -q "mopt quantize has no option '--bogus'" err.txt || fail "unknown option: $(cat err.txt)"
expect 2 batch quantize zoo -O x -o y.onnx
expect 2 batch frobnicate zoo -O x
expect 1 batch quantize nowhere -O x
grep -q "'nowhere' does not exist" err.txt || fail "missing input: $(cat err.txt)"
expect 1 batch quantize 'zoo/*.pt' -O x
grep -q "matches no file" err.txt || fail "empty glob: $(cat err.txt)"
printf 'a file' >notadir
expect 1 batch quantize zoo -O notadir/out
grep -q "cannot create output folder" err.txt || fail "unwritable output folder: $(cat err.txt)"
[ ! -e x ] || fail "a refused batch created its output folder"
cp local/mopt-batch.jsonl local/backup.jsonl
printf '{"type":"model","input":\n' >>local/mopt-batch.jsonl
expect 0 batch quantize zoo -O local --accuracy off
grep -q "mopt-batch.jsonl line .*not valid JSON (ignored)" err.txt || fail "a corrupted manifest line is not reported: $(cat err.txt)"
[ "$(grep -c cached err.txt)" = 6 ] || fail "a corrupted line lost the other lines: $(cat err.txt)"
expect 0 quantize zoo/digits_mlp.onnx -O single_dir -q
[ -f single_dir/digits_mlp.int8.onnx ] || fail "-O on a single command"
expect 0 quantize zoo/digits_mlp.onnx --accuracy off zoo/iris_mlp.onnx -O multi   # several models: a batch
[ -f multi/digits_mlp.int8.onnx ] && [ -f multi/iris_mlp.int8.onnx ] && [ -f multi/mopt-batch.report.json ] ||
  fail "a single command with several models and -O: $(ls multi)"
expect 2 quantize zoo/digits_mlp.onnx zoo/iris_mlp.onnx
grep -q "give the folder for the outputs: -O" err.txt || fail "several models without -O: $(cat err.txt)"
expect 0 batch quantize zoo -O mem -j 2 --max-memory 1 --accuracy off   # one at a time: the budget is 1 byte
expect 2 batch quantize zoo -O mem --max-memory lots
ok "bad input: one line each, nothing written; a corrupted manifest line reported and the rest kept"
