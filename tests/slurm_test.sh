#!/usr/bin/env bash
# Slurm test: a real single-node Slurm cluster (Debian's slurm-wlm and munge), configured and started here
# on loopback with its own key, socket, ports and state folder, runs the shipped array script
# (docs/examples/slurm/mopt-batch.sbatch) with `sbatch --array=0-3 --wait` over copies of the shared
# models; each array task takes its shard from Slurm's variables.
# Then `mopt batch merge` joins the shard manifests. Checked: every model was processed exactly once, by
# the shard it was given; the merged report equals a one-machine `mopt batch` run; the outputs are the
# same bytes. The daemons are stopped when the test ends, however it ends.
# The daemons run as the test's user (root or not), which is also the jobs' user. Skips (exit 77, loudly)
# where Slurm or munge is not installed; scripts/test.sh sets MOPT_REQUIRE_SLURM=1, which makes that a failure.
# Usage: tests/slurm_test.sh MOPT_BINARY
set -euo pipefail
mopt=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
M=$src/../shared/models
skip() {
  echo "SKIP: $* -- the Slurm test did not run" >&2
  [ "${MOPT_REQUIRE_SLURM:-0}" = 1 ] && { echo "FAIL: MOPT_REQUIRE_SLURM=1 and the Slurm test cannot run" >&2; exit 1; }
  exit 77
}
for tool in munged slurmctld slurmd sbatch sinfo; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install slurm-wlm munge)"
done

tmp=$(mktemp -d)
state=$tmp/slurm
mkdir -p "$state/munge" "$state/ctld" "$state/spool" "$state/log"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$state"/log/* "$tmp"/task.*; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# munge: a fresh key and its own socket (the machine's munged, if any, is left alone).
chmod 700 "$state/munge"
head -c 1024 /dev/urandom >"$state/munge/munge.key"
chmod 400 "$state/munge/munge.key"
munged --foreground --force --key-file="$state/munge/munge.key" --socket="$state/munge/socket" \
  --pid-file="$state/munge/pid" --seed-file="$state/munge/seed" --log-file="$state/log/munged.log" >"$state/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$state/munge/socket" ] && break; sleep 0.05; done
[ -S "$state/munge/socket" ] || fail "munged did not start"

cat >"$state/slurm.conf" <<CONF
ClusterName=mopttest
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$state/munge/socket
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=mopt Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$state/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$state/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" >"$state/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 0.1
done
sinfo -h -o %t 2>/dev/null | grep -q idle || fail "the node did not become idle: $(sinfo 2>&1)"
echo "ok: Slurm $(sinfo -V | cut -d' ' -f2) running on loopback (munge, slurmctld, slurmd)"

# The worklist: copies of the shared models, one of them in a subfolder.
zoo=$tmp/zoo
mkdir -p "$zoo/vision"
cp "$M"/trained/digits_cnn.onnx "$M"/trained/digits_mlp.onnx "$M"/trained/digits_vit.onnx "$M"/tabular/iris_mlp.onnx "$zoo/"
cp "$M"/vision/mnist_winml.onnx "$M"/vision/squeezenet1.1_fp32.onnx "$zoo/vision/"
# The shipped example array script (docs/examples/slurm), with this test's paths: each array task takes
# its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT.
cd "$tmp"
timeout 600 sbatch --array=0-3 --wait --cpus-per-task=1 -o "$tmp/task.%a" \
  --export=ALL,MODELS="$zoo",OUT="$tmp/cluster",MOPT="$mopt" "$src/docs/examples/slurm/mopt-batch.sbatch" >"$tmp/sbatch.out" 2>&1 ||
  fail "sbatch --array=0-3 --wait: $(cat "$tmp/sbatch.out")"
for i in 0 1 2 3; do
  grep -q "shard $i of 4, from slurm" "$tmp/task.$i" || fail "array task $i did not take shard $i from Slurm: $(cat "$tmp/task.$i")"
done
"$mopt" batch merge "$tmp/cluster" >"$tmp/merge.out" 2>&1 || fail "merge: $(cat "$tmp/merge.out")"
"$mopt" batch quantize "$zoo" -O "$tmp/local" -q || fail "the one-machine batch failed"

/usr/bin/python3 - "$tmp" <<'PY' || fail "the cluster's batch is not the one-machine batch (above)"
import collections, glob, json, sys
tmp = sys.argv[1]
lines = [json.loads(l) for path in sorted(glob.glob(tmp + "/cluster/mopt-batch.shard-*-of-4.jsonl")) for l in open(path)]
plans = [l for l in lines if l["type"] == "plan"]
models = [l for l in lines if l["type"] == "model"]
assert sorted(p["shard"]["index"] for p in plans) == [0, 1, 2, 3], plans
given = {o: p["shard"]["index"] for p in plans for o in p["outputs"]}
done = collections.Counter(m["output"] for m in models)
assert len(given) == 6 and set(done) == set(given) and max(done.values()) == 1, ("not exactly once", given, done)
assert all(given[m["output"]] == m["shard"]["index"] for m in models), "a model ran in a shard it was not given"
def rows(path):
    return [{k: v for k, v in r.items() if k not in ("seconds", "finished_at", "shard", "output", "report")}
            for r in json.load(open(path))["batch"]["results"]]
merged, local = rows(tmp + "/cluster/mopt-batch.report.json"), rows(tmp + "/local/mopt-batch.report.json")
assert len(local) == 6 and merged == local, ("merged report differs", merged, local)
print("ok: 6 models in 4 shards, each processed exactly once by its shard; merged report == one-machine report")
PY
for f in $(cd "$tmp/local" && find . -name '*.int8.onnx'); do
  cmp -s "$tmp/local/$f" "$tmp/cluster/$f" || fail "$f: the cluster's output differs from the one-machine output"
done
echo "ok: the cluster's outputs are byte-identical to the one-machine run"
