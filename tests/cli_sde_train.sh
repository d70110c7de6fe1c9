#!/usr/bin/env bash
# diffusion train --sde: continuous-time training on the VE, sub-VP and VP SDEs from the command
# line. The run records its SDE (VE: sigma_max from the data); sampling a VE or sub-VP model
# uses its SDE (reverse diffusion unless told) and refuses the discrete samplers, with samples as
# close to the data as a discrete model's of the same training; its likelihood comes from the
# ODE and the bound is refused; a VP model keeps the discrete samplers; resume keeps the SDE;
# previews work; bad input is refused before the run folder exists.
set -u
bin=$1
name=cli_sde_train
source "$(dirname "$0")/shell_checks.sh"
mmd() { "$bin" eval --metric mmd --samples "$1" --data 8gaussians --json | jq -r .mmd; }
train=(--data 8gaussians --n-data 4000 --steps 1500 --batch 128 --quiet --threads 2)

check "train --sde ve" "$bin" train "${train[@]}" --sde ve --out "$dir/ve" --preview-every 1500 \
    --preview-steps 20
holds "the checkpoint records the VE SDE, sigma_max from the data" "$dir/ve/checkpoint/config.json" \
    '.sde.kind == "ve" and .sde.sigma_min == 0.01 and .sde.sigma_max > 1 and .sde.eps == 1e-5'
checks=$((checks + 1))
[ -s "$dir/ve/previews/step-1500.png" ] || { echo "FAIL: no preview"; fails=$((fails + 1)); }
check "a discrete model, the same training" "$bin" train "${train[@]}" --out "$dir/disc"
check "its ancestral samples" "$bin" sample --model "$dir/disc" --n 1000 --out "$dir/disc.csv" \
    --quiet
base=$(mmd "$dir/disc.csv")

check "sample the VE model" "$bin" sample --model "$dir/ve" --n 1000 --out "$dir/ve.csv" --json \
    --quiet
holds "the VE model samples with its SDE, reverse diffusion by default" "$dir/out" \
    '.sde == "ve" and .sde_sampler == "reverse-diffusion" and .network_evaluations == 1001'
expect "VE samples within 2x the discrete model's MMD" "m <= 2 * b && b > 0" \
    m="$(mmd "$dir/ve.csv")" b="$base"
check "the VE model, ode-rk45" "$bin" sample --model "$dir/ve" --n 1000 --sde-sampler ode-rk45 \
    --out "$dir/ve_ode.csv" --quiet
expect "VE ODE samples within 2x the discrete model's MMD" "m <= 2 * b" \
    m="$(mmd "$dir/ve_ode.csv")" b="$base"
expect_error "no discrete chain and samples with --sde-sampler" "$bin" sample --model "$dir/ve" \
    --sampler ddim --out "$dir/x.csv"
check "VE likelihood through the ODE" "$bin" eval --model "$dir/ve" --metric nll \
    --likelihood ode --data 8gaussians --n 200 --exact --json
holds "a finite ODE likelihood" "$dir/out" '.ode_nats | finite'
expect_error "no discrete chain" "$bin" eval --model "$dir/ve" --metric nll --data 8gaussians \
    --n 200

# resume keeps the SDE; its flags may only repeat the run's values
expect_error "resume cannot change" "$bin" train "${train[@]}" --sde ve --sigma-min 0.02 \
    --out "$dir/ve" --resume
check "resume to 1600 steps" "$bin" train "${train[@]}" --out "$dir/ve" --resume --steps 1600
holds "the resumed run's SDE" "$dir/ve/checkpoint/config.json" \
    ".sde.kind == \"ve\" and .training.step == 1600 and .sde.sigma_max == $(jq .sde.sigma_max \
    "$dir/ve/checkpoint-1500/config.json")"

check "train --sde subvp" "$bin" train "${train[@]}" --steps 300 --sde subvp --out "$dir/subvp"
check "sample the sub-VP model" "$bin" sample --model "$dir/subvp" --n 100 --steps 50 \
    --out "$dir/subvp.csv" --json --quiet
holds "the sub-VP model samples with its SDE" "$dir/out" '.sde == "subvp" and .network_evaluations == 51'
check "train --sde vp" "$bin" train "${train[@]}" --steps 300 --sde vp --beta-max 15 --out "$dir/vp"
holds "a VP run's schedule is its SDE's discretisation" "$dir/vp/checkpoint/config.json" \
    '.sde.kind == "vp" and .sde.beta_max == 15 and .schedule.kind == "linear" and (.schedule.beta_end - 0.015 | fabs) < 1e-12'
check "the VP model with DDIM" "$bin" sample --model "$dir/vp" --n 100 --sampler ddim --steps 20 \
    --out "$dir/vp.csv" --quiet

# bad input: one message, non-zero exit, no run folder
expect_error "sigma_max" "$bin" train "${train[@]}" --sde ve --sigma-min 1 --sigma-max 0.5 \
    --out "$dir/bad"
expect_error "goes with --sde" "$bin" train "${train[@]}" --sigma-max 3 --out "$dir/bad"
expect_error "does not apply to --sde vp" "$bin" train "${train[@]}" --sde vp --sigma-max 3 \
    --out "$dir/bad"
expect_error "with --sde the SDE's set them" "$bin" train "${train[@]}" --sde ve \
    --schedule cosine --out "$dir/bad"
expect_error "allowed: vp, subvp" "$bin" train "${train[@]}" --sde vx --out "$dir/bad"
expect_error "loss simple" "$bin" train "${train[@]}" --sde ve --loss vlb --out "$dir/bad"
# refused by the trainer, after the run folder was made and locked: the folder goes again
expect_error "not above sigma_min 100" "$bin" train "${train[@]}" --sde ve --sigma-min 100 \
    --out "$dir/bad"
checks=$((checks + 1))
[ ! -e "$dir/bad" ] && [ ! -e "$dir/x.csv" ] ||
    { echo "FAIL: a refused run left files behind"; fails=$((fails + 1)); }
echo "mmd: discrete $base, ve $(mmd "$dir/ve.csv"), ve ode $(mmd "$dir/ve_ode.csv")"
finish
