#!/usr/bin/env bash
# Configures and builds mopt. Usage: scripts/build.sh [build-dir] [extra cmake args...]
# MOPT_SANITIZE=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}; shift || true
args=(-DCMAKE_BUILD_TYPE=Release -DMOPT_WERROR=ON)
[ "${MOPT_SANITIZE:-0}" = 1 ] && args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOPT_SANITIZE=ON -DMOPT_WERROR=ON)
cmake -S . -B "$dir" "${args[@]}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
