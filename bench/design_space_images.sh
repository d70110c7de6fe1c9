#!/usr/bin/env bash
# The design-space comparison on Fashion-MNIST at a small, stated budget: unet-28 trained for
# STEPS steps of batch 64 in each configuration (one factor changed from the base at a time),
# judged by the variational bound in bits per dimension on N images of the test split (the
# unbiased estimate, T_DRAWS timesteps per image) and shown as 16 samples drawn with
# DPM-Solver++(2M) in 50 steps. FID-FMNIST, the proper image-quality figure, is a later issue.
#
# Usage: bench/design_space_images.sh [build/diffusion] [STEPS] [N] [T_DRAWS]
#        (defaults: 300 steps, 2000 images, 20 timesteps drawn per image)
# Writes everything into WORK (default out/design-space-images): the runs, results.md (the
# table) and fmnist-NAME.png (the sample grids). It never writes into docs/: the grids shown in
# docs/design-space.md are copies of a run's fmnist-*.png.
set -euo pipefail
bin=${1:-build/diffusion}
steps=${2:-300}
n=${3:-2000}
t_draws=${4:-20}
threads=${THREADS:-2}
work=${WORK:-out/design-space-images}
plots=$work
mkdir -p "$work" "$plots"
export OMP_WAIT_POLICY=passive
common=(--data fashion-mnist --model unet-28 --steps "$steps" --batch 64 --lr 5e-4 --warmup 100
        --threads "$threads" --log-every 50 --quiet --json)
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

configs=(
  "base|epsilon, linear, L_simple|"
  "cosine|cosine schedule|--schedule cosine"
  "v|v prediction, cosine|--prediction v --schedule cosine"
  "learned-var|learned variance (hybrid)|--var learned --loss hybrid"
)
{
  echo "| run | change from the base | train s | bits/dim (test, $n images x $t_draws t) | +- |"
  echo "| --- | --- | --- | --- | --- |"
} > "$work/results.md"
for c in "${configs[@]}"; do
    IFS='|' read -r name label args <<< "$c"
    # shellcheck disable=SC2086
    [ -f "$work/$name/checkpoint/config.json" ] ||
        "$bin" train "${common[@]}" --out "$work/$name" $args > "$work/$name.train.json"
    secs=$(field seconds < "$work/$name.train.json")
    nll=$("$bin" eval --metric nll --model "$work/$name" --n "$n" --t-draws "$t_draws" \
          --threads "$threads" --quiet --json)
    "$bin" sample --model "$work/$name" --n 16 --sampler dpmpp-2m --steps 50 --seed 0 \
        --grid "$plots/fmnist-$name.png" --threads "$threads" --quiet > /dev/null
    printf '| %s | %s | %.0f | %.3f | %.3f |\n' "$name" "$label" "$secs" \
        "$(echo "$nll" | field bits_per_dim)" "$(echo "$nll" | field bits_per_dim_se)" \
        >> "$work/results.md"
done
cat "$work/results.md"
