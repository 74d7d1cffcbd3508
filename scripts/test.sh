#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the test suite (everything but the `slow` label),
# then the unit, reference and cli tests again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then every libFuzzer target for a few seconds over its corpus (clang build in build-fuzz).
#   scripts/test.sh               as CI runs it
#   scripts/test.sh --no-install  skip apt-get (dependencies already present)
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    *) echo "test.sh: unknown option '$arg' (known: --no-install)" >&2; exit 2 ;;
  esac
done
[ "$install" -eq 1 ] && scripts/install-deps.sh

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

echo "== build (release, -Werror)"
scripts/build.sh build
echo "== tests"
(cd build && ctest --output-on-failure -LE slow)
# ctest hides the output of a skipped test (exit 77, e.g. the multi-host MPI test): show its reason
grep -h '^SKIP: ' build/Testing/Temporary/LastTest.log || true

echo "== unit and reference tests under ASan + UBSan"
scripts/build.sh build-asan -DPEFT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
(cd build-asan && ctest --output-on-failure -L 'unit|reference|cli')

echo "== fuzz targets over their corpora (clang, libFuzzer + ASan + UBSan)"
CC=clang cmake -S . -B build-fuzz -DPEFT_WERROR=ON -DPEFT_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target fuzz_targets
(cd build-fuzz && ctest --output-on-failure -L fuzz)
echo "== all tests passed"
