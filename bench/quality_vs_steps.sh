#!/usr/bin/env bash
# Sample quality against sampling steps: trains the default MLP on a built-in set (the demo's
# budget: 8,000 steps of batch 512), then `diffusion eval --metric steps` draws 5,000 samples
# with each sampler at each step count and judges them by MMD against held-out data.
# Usage: bench/quality_vs_steps.sh BIN [DATA] [OUT_DIR]   (defaults: 8gaussians, out/steps)
# Writes OUT_DIR/steps-DATA.txt (the table), OUT_DIR/steps-DATA.json and OUT_DIR/steps-DATA.png.
set -euo pipefail
bin=${1:?usage: bench/quality_vs_steps.sh BIN [DATA] [OUT_DIR]}
data=${2:-8gaussians}
out=${3:-out/steps}
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
if [ ! -e "$out/model-$data/checkpoint/config.json" ]; then
    "$bin" train --data "$data" --out "$out/model-$data" --quiet
fi
args=(eval --metric steps --model "$out/model-$data" --data "$data" --n 5000
      --samplers ancestral,ddim,dpmpp-2m --steps-list 5,10,20,50,100,200,1000)
"$bin" "${args[@]}" --plot "$out/steps-$data.png" | tee "$out/steps-$data.txt"
"$bin" "${args[@]}" --json > "$out/steps-$data.json"
