"""The Python module (import mopt) against the tool: same report numbers for the same job on a real model,
numpy arrays as calibration data, the tool's errors as exceptions, the step-by-step Model.
Usage: python3 tests/python_test.py MOPT_BINARY MODULE_DIR (MODULE_DIR holds mopt/__init__.py and _mopt)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

tool, module_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, module_dir)
import numpy as np  # noqa: E402
import mopt  # noqa: E402

assert os.path.dirname(mopt.__file__) == os.path.join(os.path.abspath(module_dir), "mopt"), mopt.__file__
models = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models", "trained")
model = os.path.join(models, "digits_cnn.onnx")
calib, test_x, test_y = (os.path.join(models, n) for n in ("digits_train_x.npy", "digits_test_x.npy", "digits_test_y.npy"))
tmp = tempfile.mkdtemp(prefix="mopt-python-test-")
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        print("FAIL:", message, file=sys.stderr)
        sys.exit(1)


def without_times(value):
    """Everything but paths, times and the command line must agree between two reports of one job."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items()
                if "seconds" not in k and k not in ("timings", "path", "invocation")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def raises(kind, call, needle):
    try:
        call()
    except kind as e:
        check(needle in str(e), "%s: %r does not contain %r" % (kind.__name__, str(e), needle))
        return e
    check(False, "no %s raised (expected %r)" % (kind.__name__, needle))


try:
    check(mopt.version() == subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip(),
          "mopt.version() differs from mopt --version")

    # 1. The same job through the module and the tool: the same report numbers and the same bytes.
    out = os.path.join(tmp, "py.onnx")
    report = mopt.quantize(model, out, data=calib, accuracy=test_x, labels=test_y, per_channel=True)
    subprocess.run([tool, "quantize", model, "-o", os.path.join(tmp, "cli.onnx"), "--data", calib, "--accuracy", test_x,
                    "--labels", test_y, "--per-channel", "-q"], check=True)
    with open(os.path.join(tmp, "cli.onnx.report.json")) as f:
        cli = json.load(f)
    check(report["report_path"] == out + ".report.json", report["report_path"])
    check(report["failed_gates"] == [], report["failed_gates"])
    check(report["accuracy"]["labels"]["count"] == 360, "accuracy on the 360 test labels")
    check(report["accuracy"]["labels"]["optimized_accuracy"] == cli["accuracy"]["labels"]["optimized_accuracy"], "top-1")
    for key in ("report_path", "failed_gates"):
        del report[key]
    check(without_times(report) == without_times(cli), "the module's report differs from the tool's")
    with open(out, "rb") as a, open(os.path.join(tmp, "cli.onnx"), "rb") as b:
        check(a.read() == b.read(), "the module's model differs from the tool's")

    # 2. numpy calibration data: an array, a dict by input name, a list of samples; the same ranges as the file.
    x = np.load(calib)
    by_file = mopt.quantize(model, os.path.join(tmp, "f.onnx"), data=calib, accuracy="off")
    for name, data in (("array", x), ("dict", {"input": x}), ("samples", [{"input": x[:700]}, {"input": x[700:]}])):
        r = mopt.quantize(model, os.path.join(tmp, name + ".onnx"), data=data, accuracy="off")
        ranges = [(t["name"], t["range"]) for t in r["passes"][-2]["details"]["tensors"] if t["role"] == "activation"]
        expected = [(t["name"], t["range"]) for t in by_file["passes"][-2]["details"]["tensors"] if t["role"] == "activation"]
        check(ranges == expected, "calibration ranges from numpy %s differ from the .npy file's" % name)
    r = mopt.quantize(model, os.path.join(tmp, "acc.onnx"), data=x, accuracy=np.load(test_x), labels=np.load(test_y))
    check(r["accuracy"]["labels"]["optimized_accuracy"] >= 0.98, "accuracy measured on numpy test data")
    check(r["accuracy"]["data"]["kind"] == "data", r["accuracy"]["data"])

    # 3. A failed gate: the model and report are written, the gate is named.
    r = mopt.quantize(model, os.path.join(tmp, "g.onnx"), data=calib, accuracy=test_x, max_size="10K", no_per_layer=True)
    check(len(r["failed_gates"]) == 1 and r["failed_gates"][0].startswith("max-size: "), r["failed_gates"])
    check(os.path.exists(os.path.join(tmp, "g.onnx")), "a failed gate still writes the model")

    # 4. Errors: the tool's one-line messages, as mopt.Error / mopt.UsageError (a ValueError); nothing written.
    before = sorted(os.listdir(tmp))
    raises(mopt.UsageError, lambda: mopt.quantize(model, os.path.join(tmp, "e.onnx"), no_such_option=1),
           "mopt quantize has no option 'no_such_option'")
    raises(ValueError, lambda: mopt.quantize(model, os.path.join(tmp, "e.onnx"), weight_only=True, bits=5),
           "weight-only quantization takes --bits 4 or 8, not 5")
    raises(mopt.UsageError, lambda: mopt.quantize(model, os.path.join(tmp, "e.onnx"), data=42), "data takes a path")
    e = raises(mopt.Error, lambda: mopt.quantize(os.path.join(tmp, "missing.onnx")), "missing.onnx")
    check(type(e) is mopt.Error and type(e).__module__ == "mopt", "a missing model is mopt.Error, not a usage error")
    check(sorted(os.listdir(tmp)) == before, "an error left files behind")

    # 5. Model: load, run, save, report; the same bytes as mopt optimize --passes.
    m = mopt.Model.load(model)
    m.run("fuse,eliminate-dead-code")
    m.save(os.path.join(tmp, "m.onnx"))
    subprocess.run([tool, "optimize", model, "-o", os.path.join(tmp, "o.onnx"), "--passes", "fuse,eliminate-dead-code",
                    "--accuracy", "off", "-q"], check=True)
    with open(os.path.join(tmp, "m.onnx"), "rb") as a, open(os.path.join(tmp, "o.onnx"), "rb") as b:
        check(a.read() == b.read(), "Model.save differs from mopt optimize --passes")
    step = json.loads(m.report_json())
    check([p["name"] for p in step["passes"]][-1] == "eliminate-dead-code", "Model report lists the passes")
    check(step["accuracy"] is None and step["accuracy_skipped"].startswith("not measured"), "Model does not claim accuracy")
    raises(mopt.UsageError, lambda: m.run("no-such-pass"), "unknown pass 'no-such-pass'")

    c = mopt.compare(model, out, data=test_x, labels=test_y)
    check(c["accuracy"]["labels"]["count"] == 360 and c["failed_gates"] == [], "compare on real data")
finally:
    shutil.rmtree(tmp)
print("ok: the Python module matches the tool (%d checks)" % checks)
