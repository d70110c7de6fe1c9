#!/usr/bin/env bash
# Image quality against sampling steps on Fashion-MNIST: FID-FMNIST (docs/guidance.md) of
# class-balanced samples of a trained unet-28, without guidance, for each sampler at each step
# count, beside the floor (the same figure for as many real training images).
# Usage: bench/quality_vs_steps_images.sh BIN MODEL_DIR EVAL_CLASSIFIER [N] [OUT_DIR]
#   (defaults: 300 samples a point, out/steps-fmnist). MODEL_DIR: a `diffusion train` run folder;
#   EVAL_CLASSIFIER: a `diffusion train-classifier` folder (bench/guidance.sh makes both).
# Ancestral sampling at 1000 steps dominates the time: N x 1000 network evaluations.
# Writes OUT_DIR/steps.md (the table) and one JSON line per point in OUT_DIR/steps.jsonl.
set -euo pipefail
bin=${1:?usage: bench/quality_vs_steps_images.sh BIN MODEL_DIR EVAL_CLASSIFIER [N] [OUT_DIR]}
model=${2:?model run folder}
clf=${3:?evaluation classifier folder}
n=${4:-300}
out=${5:-out/steps-fmnist}
mkdir -p "$out"
: > "$out/steps.jsonl"
points=("dpmpp-2m 5" "dpmpp-2m 10" "dpmpp-2m 20" "dpmpp-2m 50" "ddim 10" "ddim 20" "ddim 50"
        "ddim 100" "ancestral 50" "ancestral 100" "ancestral 250" "ancestral 1000")
for pt in "${points[@]}"; do
    read -r sampler steps <<< "$pt"
    echo "measuring $sampler, $steps steps ..." >&2
    "$bin" eval --metric fid --model "$model" --classifier "$clf" --class all --n "$n" \
        --sampler "$sampler" --steps "$steps" --quiet --json >> "$out/steps.jsonl"
done
/usr/bin/python3 - "$out/steps.jsonl" "$n" <<'PY' | tee "$out/steps.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"FID-FMNIST of {sys.argv[2]} class-balanced samples (no guidance); floor: "
      f"{rows[0]['floor']['fid_fmnist']:.3f}\n")
print("| sampler | steps | FID-FMNIST | precision | recall |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    q = r["rows"][0]
    print(f"| {r['sampler']} | {r['steps']} | {q['fid_fmnist']:.3f} | {q['precision']:.3f} | "
          f"{q['recall']:.3f} |")
PY
