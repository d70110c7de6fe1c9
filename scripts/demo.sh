#!/usr/bin/env bash
# The main job: train a 2-D diffusion model on the built-in default data set, sample it,
# draw the pictures into out/demo (or the folder given as the first argument) and print
# the quality figure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/diffusion demo --out "${1:-out/demo}"
