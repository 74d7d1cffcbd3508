#!/usr/bin/env bash
# Installs every Debian package peft needs to build, test and run (Debian 12).
# Runs apt-get update first; needs root (or sudo). Safe to run again.
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
  python3-torch python3-numpy
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${packages[@]}"
