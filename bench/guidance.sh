#!/usr/bin/env bash
# Guidance on Fashion-MNIST, end to end: a class-conditional unet-28 (p_uncond 0.1), the
# evaluation classifier (clean images), a noisy classifier on the model's schedule, then
# `diffusion eval --metric guidance`: class accuracy, FID-FMNIST and precision/recall of
# class-balanced samples at each classifier-free scale w and each classifier-guidance scale gamma.
# Steps already done (a folder with its checkpoint) are reused, so the script can be re-run.
# Usage: bench/guidance.sh BIN [OUT_DIR] [MODEL_STEPS]   (defaults: out/guidance, 2400)
# Writes OUT_DIR/accuracy.txt (the evaluation classifier's test accuracy), noisy-accuracy.txt
# (the noisy classifier's on clean test images), guidance.json (the table), guidance.png,
# guidance-classifier.png, grid-w*.png (10 samples of each class, one class a column).
set -euo pipefail
bin=${1:?usage: bench/guidance.sh BIN [OUT_DIR] [MODEL_STEPS]}
out=${2:-out/guidance}
steps=${3:-2400}
mkdir -p "$out"
export OMP_WAIT_POLICY=passive
[ -e "$out/model/checkpoint/config.json" ] ||
    "$bin" train --data fashion-mnist --conditional --steps "$steps" --batch 64 --lr 5e-4 \
        --warmup 200 --checkpoint-every 250 --out "$out/model" --quiet
[ -e "$out/eval-clf/config.json" ] ||
    "$bin" train-classifier --data fashion-mnist --steps 2000 --batch 128 --out "$out/eval-clf"
[ -e "$out/noisy-clf/config.json" ] ||
    "$bin" train-classifier --data fashion-mnist --noisy --like "$out/model" --steps 1200 \
        --batch 128 --out "$out/noisy-clf"
"$bin" eval --metric accuracy --classifier "$out/eval-clf" | tee "$out/accuracy.txt"
# the noisy classifier on clean test images (t = 0); eval notes on stderr that it is noisy
"$bin" eval --metric accuracy --classifier "$out/noisy-clf" | tee "$out/noisy-accuracy.txt"
args=(eval --metric guidance --classifier "$out/eval-clf" --model "$out/model"
      --guide-classifier "$out/noisy-clf" --n 500 --sampler dpmpp-2m --steps 20
      --scales 0,1,2,3,5 --gammas 0,1,3,10)
"$bin" "${args[@]}" --json --plot "$out/guidance.png" | tee "$out/guidance.json"
for w in 0 3; do
    "$bin" sample --model "$out/model" --class all --guidance $w --n 100 --sampler dpmpp-2m \
        --steps 20 --grid "$out/grid-w$w.png" --quiet
done
