#!/usr/bin/env bash
# Configures and builds peft into build/ (or $1 with extra CMake flags after it).
#   scripts/build.sh                      release build with -Werror: build/bin/peft
#   scripts/build.sh build-asan -DPEFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DPEFT_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
