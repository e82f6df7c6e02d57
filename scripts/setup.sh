#!/usr/bin/env bash
# Installs the Debian 12 packages mopt builds and tests with. Idempotent and non-interactive:
# packages already installed are not touched, so a second run costs a dpkg query.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libprotobuf-dev protobuf-compiler libonnx-dev libonnx-testdata
  libcli11-dev libfmt-dev nlohmann-json3-dev doctest-dev libyaml-cpp-dev libzstd-dev libxxhash-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev zlib1g-dev libssl-dev
  clang libclang-rt-14-dev
  python3-torch
  pybind11-dev python3-dev python3-numpy python3-yaml python3-jsonschema
  slurm-wlm munge chromium

)
# ocl-icd-opencl-dev: oneDNN's CMake config looks for OpenCL, which libdnnl-dev only recommends (and
# --no-install-recommends skips), so a fresh machine without it fails at configure.
# ONNX Runtime for Node.js (the interop tests) needs node and npm; install Debian's only when absent.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
