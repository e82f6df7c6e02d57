#!/usr/bin/env bash
# Install test: `cmake --install` into a scratch prefix and the .deb from `cpack -G DEB` installed with
# dpkg into a scratch root each give, from their installed locations, a mopt that runs (--version, one
# quantize of the bundled SqueezeNet), a libmopt that a CMake project finds with find_package(mopt) and
# runs (docs/examples/cpp), and a Python module that imports and quantizes; the package depends on the
# Debian libraries mopt links; the man page and both completion scripts name every command and every flag
# that the commands' --help lists.
# Usage: tests/install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# A sanitized build (MOPT_SANITIZE) installs a sanitized libmopt: the example is built with the same flags,
# and python3, which is not instrumented, gets the sanitizer runtimes preloaded.
example_flags=() python_env=()
if grep -q '^MOPT_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  example_flags=(-DCMAKE_CXX_FLAGS="-fsanitize=address,undefined" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined")
  python_env=(LD_PRELOAD="$(c++ -print-file-name=libasan.so):$(c++ -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0)
fi

runs_from() {  # PREFIX: the installed binary reports its version and quantizes a model
  local bin=$1/bin/mopt
  [ -x "$bin" ] || fail "$bin is missing"
  "$bin" --version | grep -Eq '^mopt [0-9]+\.[0-9]+\.[0-9]+ \(commit [^;]+; built with ONNX [0-9.]+, protobuf [0-9.]+\)$' ||
    fail "$bin --version: $("$bin" --version)"
  "$bin" quantize "$src/testdata/squeezenet1.1_fp32.onnx" -o "$tmp/q.onnx" --data "$src/../shared/models/vision/inputs/squeezenet_fish_fp32" --accuracy off -q || fail "$bin quantize failed"
  [ -s "$tmp/q.onnx" ] && [ -s "$tmp/q.onnx.report.json" ] || fail "$bin quantize wrote no model or report"
  rm -f "$tmp/q.onnx" "$tmp/q.onnx.report.json"
  library_from "$1"
  python_from "$1"
}

libdir_of() { dirname "$(find "$1" -name 'libmopt.so.0' | head -1)"; }

library_from() {  # PREFIX: docs/examples/cpp builds against it with find_package(mopt) and quantizes
  local lib
  lib=$(libdir_of "$1")
  [ -n "$lib" ] && [ -f "$1/include/mopt/mopt.h" ] || fail "$1 has no libmopt.so.0 or mopt/mopt.h"
  local exports
  exports=$(nm -D --defined-only "$lib/libmopt.so.0" | c++filt | awk '{ $1 = ""; $2 = ""; print }' | grep -v '^ *mopt::api::\|for mopt::api::' || true)
  [ -z "$exports" ] || fail "libmopt exports more than mopt::api: $(head -3 <<<"$exports")"
  rm -rf "$tmp/example"
  cmake -S "$src/docs/examples/cpp" -B "$tmp/example" -DCMAKE_PREFIX_PATH="$1" "${example_flags[@]}" >"$tmp/example.log" 2>&1 &&
    cmake --build "$tmp/example" >>"$tmp/example.log" 2>&1 || { cat "$tmp/example.log" >&2; fail "the C++ example does not build against $1"; }
  LD_LIBRARY_PATH="$lib" "$tmp/example/quantize_model" "$src/testdata/squeezenet1.1_fp32.onnx" "$tmp/c.onnx" \
    "$src/../shared/models/vision/inputs/squeezenet_fish_fp32" >"$tmp/example.out" 2>&1 || fail "the C++ example failed: $(cat "$tmp/example.out")"
  grep -q "^wrote $tmp/c.onnx, report $tmp/c.onnx.report.json" "$tmp/example.out" || fail "the C++ example says: $(cat "$tmp/example.out")"
  [ -s "$tmp/c.onnx" ] || fail "the C++ example wrote no model"
  rm -rf "$tmp/example" "$tmp/c.onnx" "$tmp/c.onnx.report.json"
}

python_from() {  # PREFIX: Debian's python3 imports the installed module and quantizes with numpy data
  local packages=$1/lib/python3/dist-packages
  [ -f "$packages/mopt/__init__.py" ] || fail "$1 has no Python module"
  local env_args=("${python_env[@]}" PYTHONPATH="$packages" LD_LIBRARY_PATH="$(libdir_of "$1")")
  env "${env_args[@]}" /usr/bin/python3 - "$src" "$tmp/p.onnx" <<'PY' || fail "the installed Python module failed"
import os, sys
import numpy as np
import mopt
src, out = sys.argv[1], sys.argv[2]
assert mopt.__file__.startswith(os.environ["PYTHONPATH"]), mopt.__file__
x = np.load(os.path.join(src, "..", "shared", "models", "vision", "inputs", "squeezenet_fish_fp32", "data_0.npy"))
report = mopt.quantize(os.path.join(src, "testdata", "squeezenet1.1_fp32.onnx"), out, data=x, accuracy="off")
assert report["output"]["file_bytes"] < report["input"]["file_bytes"] / 3, report["output"]
assert os.path.getsize(out) == report["output"]["file_bytes"]
PY
  rm -f "$tmp/p.onnx" "$tmp/p.onnx.report.json"
}

# --- cmake --install
cmake --install "$build" --prefix "$tmp/usr" >/dev/null
for f in bin/mopt include/mopt/mopt.h lib/cmake/mopt/moptConfig.cmake lib/python3/dist-packages/mopt/__init__.py share/man/man1/mopt.1 share/bash-completion/completions/mopt share/zsh/vendor-completions/_mopt \
  share/doc/mopt/README.md; do
  [ -s "$tmp/usr/$f" ] || fail "cmake --install did not install $f"
done
runs_from "$tmp/usr"
echo "ok: cmake --install gives a working mopt, libmopt (find_package) and Python module"

# --- man page and completions name every command and flag of --help
bash -n "$tmp/usr/share/bash-completion/completions/mopt" || fail "the bash completion is not valid bash"
man_text=$(sed 's/\\-/-/g' "$tmp/usr/share/man/man1/mopt.1")
bash_text=$(cat "$tmp/usr/share/bash-completion/completions/mopt")
zsh_text=$(cat "$tmp/usr/share/zsh/vendor-completions/_mopt")
commands=$("$tmp/usr/bin/mopt" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF {print $1}')
[ "$(echo "$commands" | wc -w)" -ge 12 ] || fail "expected at least 12 commands in mopt --help, got: $commands"
checked=0
for c in $commands; do
  grep -q "^\.SS \"mopt $c\"" <<<"$man_text" || fail "the man page has no section for mopt $c"
  grep -Eq "(^| |\")$c( |\"|\))" <<<"$bash_text" || fail "the bash completion does not know mopt $c"
  grep -q "'$c:" <<<"$zsh_text" || fail "the zsh completion does not know mopt $c"
  # Flags as --help prints them in its name column: "  -o,--output TEXT", "  --json".
  man_section=" $(sed -n "/^\.SS \"mopt $c\"/,/^\.SS /p" <<<"$man_text" | tr ',\n' '  ') "
  bash_line=" $(grep -E "^ +$c\)" <<<"$bash_text" | tr '"' ' ') "
  zsh_line=$(grep -E "^ +$c\)" <<<"$zsh_text")
  for flag in $("$tmp/usr/bin/mopt" "$c" --help | grep -E '^  +-' | sed -E 's/^ +//; s/  .*//' |
    grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u); do
    [[ $man_section == *" $flag "* ]] || fail "the man page does not list $flag under mopt $c"
    [[ $bash_line == *" $flag "* ]] || fail "the bash completion does not offer $flag for mopt $c"
    [[ $zsh_line == *"'$flag["* ]] || fail "the zsh completion does not offer $flag for mopt $c"
    checked=$((checked + 1))
  done
done
[ "$checked" -ge 150 ] || fail "only $checked flags checked; the --help parsing above is broken"
echo "ok: man page and completions list $(echo "$commands" | wc -w) commands and $checked flags"

# --- docs/examples: the Dockerfile and the GitHub Actions job install every -dev package the build needs
# (scripts/setup.sh's list), run only commands and flags mopt has, and the workflow is valid YAML.
/usr/bin/python3 - "$src" "$tmp/usr/bin/mopt" <<'PY' || fail "docs/examples drifted from the build (above)"
import re, subprocess, sys, yaml
src, mopt = sys.argv[1], sys.argv[2]
setup = open(src + "/scripts/setup.sh").read()
needed = set(re.findall(r"\b([a-z0-9.+-]+-dev)\b", setup[:setup.index(")")])) - {"libclang-rt-14-dev", "doctest-dev"}  # fuzzing, tests
workflow_text = open(src + "/docs/examples/github-actions/quantize.yml").read()
workflow = yaml.safe_load(workflow_text)
batch_text = open(src + "/docs/examples/github-actions/batch.yml").read()
batch_workflow = yaml.safe_load(batch_text)
errors = []
for name, text in (("Dockerfile", open(src + "/docs/examples/Dockerfile").read()), ("quantize.yml", workflow_text),
                   ("batch.yml", batch_text)):
    missing = sorted(p for p in needed if not re.search(r"(^|\s)%s(\s|$)" % re.escape(p), text, re.M))
    if missing:
        errors.append("%s does not install %s" % (name, ", ".join(missing)))
    joined = re.sub(r"\\\n\s*", " ", text)  # shell continuation lines
    for line in re.findall(r"^\s*mopt (\w+ .*)$", joined, re.M):
        command = line.split()[0]
        flags = re.findall(r"(--[a-z0-9-]+)", line)
        help_text = subprocess.run([mopt, command, "--help"], capture_output=True, text=True).stdout
        if command == "batch":  # the batch's flags and its command's
            help_text += subprocess.run([mopt, line.split()[1], "--help"], capture_output=True, text=True).stdout
        errors += ["%s: mopt %s has no %s" % (name, command, f) for f in flags if f not in help_text]
steps = workflow["jobs"]["quantize"]["steps"]
if not any("mopt quantize" in s.get("run", "") for s in steps):
    errors.append("quantize.yml runs no mopt quantize")
if not any("mopt batch" in s.get("run", "") for s in batch_workflow["jobs"]["quantize-all"]["steps"]):
    errors.append("batch.yml runs no mopt batch")
for e in errors:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "ok: docs/examples install the build's Debian packages and use existing commands and flags"

# --- the Debian package
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >/dev/null) || fail "cpack -G DEB failed"
deb=$(ls "$tmp"/pkg/*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libonnx libprotobuf libopenblas libzstd libyaml-cpp libfmt; do
  grep -q "$lib" <<<"$depends" || fail "the package does not depend on $lib (Depends: $depends)"
done
# dpkg -i into a scratch root whose package database is a copy of this machine's: dpkg itself checks the
# package's Depends against what is installed here (no --force-depends), unpacks and configures it, and
# dpkg -r takes every file away again. Needs no root, and nothing on the machine changes.
root="$tmp/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
cp /var/lib/dpkg/status "$root/var/lib/dpkg/status"
touch "$root/var/lib/dpkg/available"
dpkg_root() { dpkg --root="$root" --force-not-root --force-script-chrootless --log=/dev/null "$@"; }
dpkg_root -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i $(basename "$deb") failed"; }
dpkg_root -s mopt | grep -q '^Status: install ok installed' || fail "dpkg does not list mopt as installed"
[ -s "$root/usr/share/man/man1/mopt.1" ] || fail "the package has no man page"
runs_from "$root/usr"
dpkg_root -r mopt >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log" >&2; fail "dpkg -r mopt failed"; }
if [ -d "$root/usr" ]; then  # dpkg -r also removes the folders it emptied
  left=$(find "$root/usr" -type f | head -3)
  [ -z "$left" ] || fail "dpkg -r left files behind: $left"
fi
echo "ok: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB) depends on the Debian libraries; dpkg -i, runs installed, dpkg -r"
