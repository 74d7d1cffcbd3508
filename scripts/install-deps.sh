#!/usr/bin/env bash
# Installs every Debian package peft needs to build, test and run (Debian 12). Runs apt-get update
# first; needs root (or sudo). Safe to run again.
#   scripts/install-deps.sh            build, test and run
#   scripts/install-deps.sh --torch    also Debian's PyTorch, for scripts/make_fixtures.py and the
#                                      PyTorch peer benchmarks (not needed by the test suite)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libopenblas-dev
  libprotobuf-c-dev protobuf-c-compiler
  liblmdb-dev lmdb-utils
  libcmocka-dev
  libcjson-dev
  libpcre2-dev
  libdnnl-dev
  openssh-server openssh-client iproute2   # scripts/mpi_hosts.sh: the multi-host MPI test
  valgrind                                 # tests/mpi/valgrind.sh (label slow)
  gnuplot-nox                              # peft plot
  python3-lmdb                             # tests/cli/formats_doc.sh: the Python readers of docs/formats.md
  python3
  clang libclang-rt-14-dev libomp-dev     # the libFuzzer targets (tests/fuzz, -DPEFT_FUZZ=ON)
)
for arg in "$@"; do
  case "$arg" in
    --torch) packages+=(python3-torch python3-numpy) ;;
    *) echo "install-deps.sh: unknown option '$arg' (known: --torch)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${packages[@]}"
