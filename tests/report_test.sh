#!/usr/bin/env bash
# Report test: every JSON document mopt writes validates against docs/schema/mopt.schema.json (Debian's
# python3-jsonschema, draft 2020-12): the report of every optimizing command on the shared real models
# (with real data, labels, gates passed and failed, accuracy off), compare, run, bench, inspect --json and a batch report.
# The header is golden: schema_version 4, the tool's version line, the command line as given, a fresh
# start time, and the exit status the command returned. The Markdown summary (--markdown) carries the
# report's numbers and gates, and is appended to $GITHUB_STEP_SUMMARY.
# Usage: tests/report_test.sh MOPT_BINARY
set -euo pipefail
mopt=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
M=$src/../shared/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
n=0
doc() {  # KIND EXPECTED_EXIT FILE -- COMMAND...: runs it, then the document FILE (or stdout when FILE is -) is checked
  local kind=$1 expected=$2 file=$3; shift 4
  local rc=0
  "$mopt" "$@" >"$tmp/stdout" 2>"$tmp/stderr" || rc=$?
  [ "$rc" = "$expected" ] || fail "exit $rc (expected $expected): mopt $* -- $(cat "$tmp/stderr")"
  n=$((n + 1))
  [ "$file" = - ] && file=$tmp/stdout
  cp "$file" "$tmp/doc_$n.json"
  printf '%s\t%s\t%s\n' "$kind" "$expected" "$tmp/doc_$n.json" >>"$tmp/docs.tsv"
  printf '%s' "$mopt" >"$tmp/argv_$n"; printf '\0%s' "$@" >>"$tmp/argv_$n"
}

T=$M/trained
doc report 0 "$tmp/q.onnx.report.json" -- quantize "$T/digits_cnn.onnx" -o "$tmp/q.onnx" --data "$T/digits_train_x.npy" \
  --accuracy "$T/digits_test_x.npy" --labels "$T/digits_test_y.npy" --per-channel --max-accuracy-drop 1 --max-size 1M -q \
  --markdown "$tmp/q.md" --html "$tmp/q.html"
echo "# earlier step" >"$tmp/step_summary.md"
GITHUB_STEP_SUMMARY=$tmp/step_summary.md doc report 3 "$tmp/g.onnx.report.json" -- quantize "$T/digits_cnn.onnx" -o "$tmp/g.onnx" \
  --data "$T/digits_train_x.npy" --min-cosine 0.5 --fail-on-degraded --max-size 10K -q --markdown "$tmp/step_summary.md"
doc report 0 "$tmp/w.onnx.report.json" -- quantize "$T/digits_vit.onnx" -o "$tmp/w.onnx" --weight-only --bits 4 --accuracy off -q
doc report 0 "$tmp/d.onnx.report.json" -- quantize "$T/digits_mlp.onnx" -o "$tmp/d.onnx" --accuracy "$T/digits_test_xflat.npy" -q
doc report 0 "$tmp/f.onnx.report.json" -- fuse "$M/ocr/ppocrv4_det.onnx" -o "$tmp/f.onnx" --no-compressed-size -q
doc report 0 "$tmp/p.onnx.report.json" -- prune "$T/digits_cnn.onnx" -o "$tmp/p.onnx" --sparsity 0.5 --accuracy "$T/digits_test_x.npy" -q
doc report 0 "$tmp/c.onnx.report.json" -- clip "$T/digits_cnn.onnx" -o "$tmp/c.onnx" --percentile 99.9 -q
doc report 0 "$tmp/h.onnx.report.json" -- convert "$M/tabular/iris_mlp.onnx" -o "$tmp/h.onnx" --to fp16 --accuracy "$M/tabular/iris_inputs" -q
doc report 0 "$tmp/o.onnx.report.json" -- optimize "$M/audio/silero_vad_v5_16k_op15.onnx" -o "$tmp/o.onnx" -q
doc compare 0 - -- compare "$T/digits_cnn.onnx" "$tmp/q.onnx" --data "$T/digits_test_x.npy" --labels "$T/digits_test_y.npy" --per-layer --json -q
doc compare 3 - -- compare "$T/digits_cnn.onnx" "$tmp/p.onnx" --data "$T/digits_test_x.npy" --min-cosine 0.9999999 --json
doc run 0 - -- run "$T/digits_mlp.onnx" --data "$T/digits_test_xflat.npy" --labels "$T/digits_test_y.npy" --json
doc bench 0 - -- bench "$T/digits_cnn.onnx" --runs 3 --warmup 1 --profile --json
doc inspect 0 - -- inspect "$M/ocr/ppocrv4_det.onnx" --json
doc passes 0 - -- passes --json
doc batch 0 "$tmp/batch/mopt-batch.report.json" -- batch quantize "$T/digits_mlp.onnx" "$M/tabular/iris_mlp.onnx" -O "$tmp/batch" \
  --accuracy off -q

/usr/bin/python3 - "$src/docs/schema/mopt.schema.json" "$tmp" "$("$mopt" --version)" <<'PY'
import datetime, json, sys
import jsonschema
schema_path, tmp, version_line = sys.argv[1:]
schema = json.load(open(schema_path))
jsonschema.Draft202012Validator.check_schema(schema)
failures = 0
now = datetime.datetime.now(datetime.timezone.utc)
for i, line in enumerate(open(tmp + "/docs.tsv"), start=1):
    kind, expected, path = line.rstrip("\n").split("\t")
    doc = json.load(open(path))
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/" + kind, "$defs": schema["$defs"]})
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors[:5]:
        print("FAIL: %s (%s): %s at /%s" % (kind, " ".join(doc["invocation"]["command_line"][1:3]) if "invocation" in doc else path,
              e.message[:300], "/".join(map(str, e.absolute_path))), file=sys.stderr)
    failures += bool(errors)
    # The golden header.
    argv = open("%s/argv_%d" % (tmp, i)).read().split("\0")
    tool, inv = doc["tool"], doc["invocation"]
    header_ok = (doc["schema_version"] == 4 and inv["command_line"] == argv and inv["exit_status"] == int(expected)
                 and version_line == "mopt %s (commit %s; built with ONNX %s, protobuf %s)" % (tool["version"], tool["commit"], tool["onnx"], tool["protobuf"])
                 and abs((now - datetime.datetime.strptime(inv["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)).total_seconds()) < 600)
    if not header_ok:
        print("FAIL: %s header: %s (argv %s)" % (kind, json.dumps({k: doc.get(k) for k in ("schema_version", "tool", "invocation")}), argv), file=sys.stderr)
        failures += 1
    if kind in ("report", "compare") and int(expected) == 3 and all(g["passed"] for g in doc["gates"]):
        print("FAIL: exit 3 but every gate passed in %s" % path, file=sys.stderr)
        failures += 1
# The header's inputs and outputs are the files read and written, with their real sha256.
import hashlib, os
def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
q = json.load(open(tmp + "/doc_1.json"))
expected_inputs = [os.path.join(os.path.dirname(schema_path), "../../../shared/models/trained/" + f)
                   for f in ("digits_cnn.onnx", "digits_test_x.npy", "digits_train_x.npy", "digits_test_y.npy")]
got = [(os.path.basename(f["path"]), f["bytes"], f["sha256"]) for f in q["invocation"]["inputs"]]
want = [(os.path.basename(p), os.path.getsize(p), sha(p)) for p in expected_inputs]
if got != want:
    print("FAIL: quantize's invocation.inputs %s, expected %s" % (got, want), file=sys.stderr)
    failures += 1
outs = q["invocation"]["outputs"]
if [(f["path"], f["bytes"], f["sha256"]) for f in outs] != [(tmp + "/q.onnx", os.path.getsize(tmp + "/q.onnx"), sha(tmp + "/q.onnx"))]:
    print("FAIL: quantize's invocation.outputs %s do not describe %s/q.onnx" % (outs, tmp), file=sys.stderr)
    failures += 1
for i2, line in enumerate(open(tmp + "/docs.tsv"), start=1):
    kind = line.split("\t")[0]
    d = json.load(open(line.rstrip("\n").split("\t")[2]))
    if kind in ("report", "compare", "run", "bench", "inspect") and not d["invocation"]["inputs"]:
        print("FAIL: a %s document names no input file" % kind, file=sys.stderr)
        failures += 1
# The schema must reject what it exists to reject: a gate's number as a string, a non-finite number as text.
report = json.load(open(tmp + "/doc_2.json"))
bad = json.loads(json.dumps(report)); bad["gates"][0]["measured"] = "59.17 pp"
bad2 = json.loads(json.dumps(report)); bad2["accuracy"]["outputs"][0]["snr_db"] = "inf"
bad3 = json.loads(json.dumps(report)); bad3["schema_version"] = 3
validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/report", "$defs": schema["$defs"]})
for name, b in (("string gate number", bad), ("'inf' as text", bad2), ("schema 3", bad3)):
    if validator.is_valid(b):
        print("FAIL: the schema accepts a report with a %s" % name, file=sys.stderr)
        failures += 1
if failures:
    sys.exit(1)
print("ok: %d documents valid against docs/schema/mopt.schema.json, headers golden" % i)
PY

# --- Markdown: the numbers and gates of the report it renders; appended to $GITHUB_STEP_SUMMARY.
/usr/bin/python3 - "$tmp" <<'PY' || fail "the Markdown summary does not say what the report says (above)"
import json, sys
tmp = sys.argv[1]
errors = []
for md_path, report_path, first_line in (("q.md", "q.onnx.report.json", "### mopt quantize: "),
                                         ("step_summary.md", "g.onnx.report.json", "# earlier step")):
    md = open("%s/%s" % (tmp, md_path)).read()
    r = json.load(open("%s/%s" % (tmp, report_path)))
    if not md.startswith(first_line):
        errors.append("%s starts with %r" % (md_path, md[:40]))
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    size = rows.get("model size", "")
    for side in ("input", "output"):
        if "(%d B)" % r[side]["total_bytes"] not in size:
            errors.append("%s: model size row %r lacks the %s's %d bytes" % (md_path, size, side, r[side]["total_bytes"]))
    for g in r["gates"]:
        row = rows.get(g["gate"], "")
        if ("passed" if g["passed"] else "**FAILED**") not in row:
            errors.append("%s: gate row %r does not say %s" % (md_path, row, g["passed"]))
    acc = r["accuracy"]
    if acc and ("verdict **%s**" % acc["verdict"]["status"]) not in md:
        errors.append("%s: no verdict %s" % (md_path, acc["verdict"]["status"]))
    if acc and "labels" in acc and ("drop %.2f pp" % acc["labels"]["accuracy_drop_pp"]) not in md:
        errors.append("%s: no labelled drop" % md_path)
if not any(not g["passed"] for g in json.load(open(tmp + "/g.onnx.report.json"))["gates"]):
    errors.append("the gate case failed no gate")
for e in errors:
    print("FAIL:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "ok: --markdown renders the report's sizes, verdict and gates, and appends to \$GITHUB_STEP_SUMMARY"

# --- mopt report: a saved report rendered again says the same (the HTML byte for byte); a document of an
# older schema is recognised by its version and named with what changed; other documents are refused.
"$mopt" report "$tmp/q.onnx.report.json" --html "$tmp/q2.html" -q || fail "mopt report --html"
cmp -s "$tmp/q.html" "$tmp/q2.html" || fail "mopt report --html differs from the page quantize --html wrote"
"$mopt" report "$tmp/q.onnx.report.json" >"$tmp/q2.md" || fail "mopt report to stdout"
cmp -s "$tmp/q.md" "$tmp/q2.md" || fail "mopt report's Markdown differs from quantize --markdown"
expect_error() {  # EXIT PATTERN -- COMMAND...
  local code=$1 pattern=$2 rc=0; shift 3
  "$mopt" "$@" >"$tmp/out" 2>&1 || rc=$?
  [ "$rc" = "$code" ] || fail "mopt $* exited $rc, expected $code: $(cat "$tmp/out")"
  grep -qE -- "$pattern" "$tmp/out" || fail "mopt $* does not say '$pattern': $(cat "$tmp/out")"
  [ "$(wc -l <"$tmp/out")" = 1 ] || fail "mopt $* printed more than one line: $(cat "$tmp/out")"
}
for v in 1 3; do
  /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['schema_version']=$v; json.dump(d, open(sys.argv[2], 'w'))" \
    "$tmp/q.onnx.report.json" "$tmp/old$v.json"
  expect_error 1 "is a schema_version $v document, written by an older mopt; this mopt reads version 4 \(changes since: .*4: invocation gained" \
    -- report "$tmp/old$v.json"
done
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['schema_version']=99; json.dump(d, open(sys.argv[2], 'w'))" \
  "$tmp/q.onnx.report.json" "$tmp/new.json"
expect_error 1 "schema_version 99 document, written by a newer mopt" -- report "$tmp/new.json"
expect_error 1 "is not JSON" -- report "$tmp/q.onnx"
expect_error 1 "has no schema_version" -- report "$src/docs/schema/mopt.schema.json"
expect_error 1 "is a batch document; mopt report renders" -- report "$tmp/batch/mopt-batch.report.json"
expect_error 1 "cannot read" -- report "$tmp/missing.json"
expect_error 2 "is the report being read" -- report "$tmp/q.onnx.report.json" --html "$tmp/q.onnx.report.json"
echo "ok: mopt report renders saved reports as they were written and names other schema versions"
