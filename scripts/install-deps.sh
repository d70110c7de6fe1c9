#!/usr/bin/env bash
# Installs the Debian packages diffusion.c needs, only those that are missing.
# Runs apt-get as root, or through sudo when that is available; otherwise says what to run.
# `install-deps.sh checks` adds what scripts/check.sh needs: clang with libFuzzer and its OpenMP,
# and valgrind.
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-openmp-dev libcjson-dev
          libcairo2-dev libpng-dev zlib1g-dev libstb-dev libjpeg62-turbo-dev libdnnl-dev dataset-fashion-mnist jq
          python3-torch python3-numpy  # these two: test_export_pytorch's outside check
          libopenmpi-dev openmpi-bin)  # data-parallel training (mpirun); cli_mpi_train
if [ "${1:-}" = checks ]; then
  packages+=(clang libclang-rt-dev libomp-dev valgrind)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "error: not root; run: apt-get update && apt-get install -y ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
