"""mopt: make ONNX models smaller and faster, and report what it cost.

The tool's commands as functions over the same library (libmopt), with the same options, checks and
report::

    import mopt
    report = mopt.quantize("model.onnx", data="calib/", per_channel=True)
    report["output"]["total_bytes"], report["accuracy"]["verdict"]

    mopt.quantize("model.onnx", "model.int8.onnx", data={"input": x_calib})   # numpy calibration data
    mopt.optimize("model.onnx", passes="fuse,quantize(mode=dynamic)", accuracy=x_test, labels=y_test)

Options are the command's flags (``mopt quantize --help``) with underscores: ``per_channel=True`` is
``--per-channel``, ``per_channel=False`` leaves it off, ``keep_io_types=False`` is ``--no-keep-io-types``,
a list repeats a flag (``shape=["x=1,3,224,224"]``). ``data``, ``accuracy`` and ``labels`` take a path,
a numpy array (a single-input model's samples, stacked along the batch axis), a dict of arrays by input
name, or a list of such dicts (one sample each).

Each command returns the report as a dict (README "Report") with two more keys: ``"report_path"`` and
``"failed_gates"`` (one line per quality gate that failed; the model and report are still written, as
the tool does with exit code 3). Errors raise :class:`Error` (a bad model, data or file) or
:class:`UsageError` (an unknown option or a bad value; also a ``ValueError``) with the tool's one-line
message. Logs are off unless ``verbose=True`` or ``quiet=False``.
"""

import json
import os
import re
import tempfile

# The executor's threads are OpenMP's (libgomp), which reads its settings when it is loaded, by the import
# below unless something loaded it earlier. By default its idle threads spin about 3 ms after each parallel
# region, on cores that other work (another process, the caller's threads) may need: 3000 rounds (tens of
# microseconds) kept the executor's speed (README "Threads"). A user's setting is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "3000"

from ._mopt import Error, Model, UsageError, version
from . import _mopt

__all__ = ["Error", "UsageError", "Model", "version", "optimize", "quantize", "fuse", "prune", "clip", "convert",
           "compare"]

_DATA_OPTIONS = ("data", "accuracy", "labels")


def _file_safe(name):
    # The file name mopt reads for an input (data::file_safe_name).
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write_data(value, folder, stem):
    """A path for `value`: itself when it is a path, else numpy arrays written under `folder`."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    import numpy as np

    if isinstance(value, np.ndarray):
        path = os.path.join(folder, stem + ".npy")
        np.save(path, value)
        return path
    if isinstance(value, dict):
        path = os.path.join(folder, stem + ".npz")
        np.savez(path, **{str(k): np.asarray(v) for k, v in value.items()})
        return path
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        root = os.path.join(folder, stem)
        for i, sample in enumerate(value):
            sample_dir = os.path.join(root, "test_data_set_%d" % i)
            os.makedirs(sample_dir)
            for name, array in sample.items():
                np.save(os.path.join(sample_dir, _file_safe(str(name)) + ".npy"), np.asarray(array))
        return root
    raise UsageError("%s takes a path, a numpy array, a dict of arrays by input name or a list of such dicts, not %s"
                     % (stem, type(value).__name__))


def _flag_values(options, folder):
    pairs = []
    for name, value in options.items():
        if value is None:
            continue
        if name in _DATA_OPTIONS:
            value = _write_data(value, folder, name)
        values = value if isinstance(value, (list, tuple)) and name not in _DATA_OPTIONS else [value]
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, os.PathLike):
                v = os.fspath(v)
            pairs.append((name, str(v)))
    return pairs


def _call(binding, positional, options):
    """Runs a binding (_mopt.run or _mopt.compare) with the options as flags; the report as a dict."""
    options = dict(options)
    options.setdefault("quiet", not options.get("verbose", False))
    with tempfile.TemporaryDirectory(prefix="mopt-") as folder:
        result = binding(*positional, _flag_values(options, folder))
    report = json.loads(result["report_json"]) if result["report_json"] else {}
    report["report_path"] = result["report_path"]
    report["failed_gates"] = list(result["failed_gates"])
    return report


def _run(command, model, output, options):
    if output is not None:
        options = dict(options, output=output)
    return _call(_mopt.run, (command, os.fspath(model)), options)


def optimize(model, output=None, **options):
    """``mopt optimize``: run a pipeline (``passes="fuse,..."`` or ``pipeline="file.yaml"``); the report."""
    return _run("optimize", model, output, options)


def quantize(model, output=None, **options):
    """``mopt quantize``: dynamic, static (``data=...``) or weight-only int8/int4; the report."""
    return _run("quantize", model, output, options)


def fuse(model, output=None, **options):
    """``mopt fuse``: fold constants, fuse operators, clean up; the report."""
    return _run("fuse", model, output, options)


def prune(model, output=None, **options):
    """``mopt prune``: zero weights by magnitude, N:M, or remove channels; the report."""
    return _run("prune", model, output, options)


def clip(model, output=None, **options):
    """``mopt clip``: clamp weight (and activation) outliers; the report."""
    return _run("clip", model, output, options)


def convert(model, output=None, **options):
    """``mopt convert``: float16/bfloat16, opset, IR version, static shapes; the report."""
    return _run("convert", model, output, options)


def compare(original, candidate, **options):
    """``mopt compare``: both models on the same data (``data=...``); the comparison report."""
    return _call(_mopt.compare, (os.fspath(original), os.fspath(candidate)), options)
