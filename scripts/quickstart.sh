#!/usr/bin/env bash
# Quick start, step one: install dependencies, build, and run the main job on the bundled SqueezeNet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
mkdir -p out
./build/mopt optimize testdata/squeezenet1.1_fp32.onnx -o out/squeezenet.opt.onnx
