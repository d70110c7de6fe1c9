#!/usr/bin/env bash
# The design-space options from the command line: every prediction, loss, variance, timestep
# sampling and schedule trains and saves; every sampler draws finite samples reproducibly;
# eval --metric nll reports the bound; incompatible combinations are refused saying what is
# allowed.
set -u
bin=$1
name=cli_design
source "$(dirname "$0")/shell_checks.sh"

small=(--data 8gaussians --n-data 2000 --steps 30 --batch 64 --hidden 32 --layers 2 --T 100
       --quiet)
check "x0 / vlb / importance" "$bin" train "${small[@]}" --out "$dir/x0" --prediction x0 \
    --loss vlb --var beta-tilde --t-sampling importance
check "v / vdm / cosine" "$bin" train "${small[@]}" --out "$dir/v" --prediction v --loss vdm \
    --schedule cosine
check "score" "$bin" train "${small[@]}" --out "$dir/score" --prediction score
check "learned variance" "$bin" train "${small[@]}" --out "$dir/lv" --var learned --loss hybrid
check "learned schedule" "$bin" train "${small[@]}" --out "$dir/ls" --loss vdm-continuous \
    --schedule learned
# each run's config.json holds the options it was trained with (and the defaults for the rest)
holds "x0 / vlb / importance: its config" "$dir/x0/checkpoint/config.json" \
    '.prediction == "x0" and .objective.loss == "vlb" and .objective.variance == "beta-tilde" and
     .objective.timesteps == "importance" and .schedule.kind == "linear" and .schedule.T == 100 and
     .model.type == "mlp" and .model.dim == 2 and .model.out_dim == 0 and .training.step == 30'
holds "v / vdm / cosine: its config" "$dir/v/checkpoint/config.json" \
    '.prediction == "v" and .objective.loss == "vdm" and .objective.variance == "beta" and
     .objective.timesteps == "uniform" and .schedule.kind == "cosine" and .training.step == 30'
holds "score: its config" "$dir/score/checkpoint/config.json" \
    '.prediction == "score" and .objective.loss == "simple" and .schedule.kind == "linear"'
# a learned variance doubles the network's outputs (0 stands for the data's dimension)
holds "learned variance: its config, 2 x 2 outputs" "$dir/lv/checkpoint/config.json" \
    '.prediction == "epsilon" and .objective.loss == "hybrid" and .objective.variance == "learned"
     and .model.dim == 2 and .model.out_dim == 4'
holds "learned schedule: its config" "$dir/ls/checkpoint/config.json" \
    '.objective.loss == "vdm-continuous" and .schedule.kind == "learned" and .training.step == 30'
checks=$((checks + 1))
[ -s "$dir/ls/checkpoint/schedule.safetensors" ] ||
    { echo "FAIL: the learned schedule's schedule.safetensors is missing"; fails=$((fails + 1)); }

# every sampler, twice with one seed: the same file
for s in "ancestral" "ancestral --steps 10" "ddim --steps 10" "ddim --steps 10 --eta 1" \
         "langevin --steps 10" "pc --steps 10" "dpmpp-2m --steps 10"; do
    # shellcheck disable=SC2086
    check "sampler $s" "$bin" sample --model "$dir/lv" --n 50 --out "$dir/a.csv" --quiet \
        --sampler $s --seed 4
    # shellcheck disable=SC2086
    check "sampler $s again" "$bin" sample --model "$dir/lv" --n 50 --out "$dir/b.csv" --quiet \
        --sampler $s --seed 4
    checks=$((checks + 1))
    if ! cmp -s "$dir/a.csv" "$dir/b.csv" || grep -qi "nan\|inf" "$dir/a.csv"; then
        echo "FAIL: sampler $s: not reproducible or not finite"
        fails=$((fails + 1))
    fi
done
check "learned-schedule sampling" "$bin" sample --model "$dir/ls" --n 20 --out "$dir/c.csv" \
    --quiet

# quality against steps: one row per sampler and step count, and the plot
check "eval --metric steps" "$bin" eval --metric steps --model "$dir/x0" --data 8gaussians \
    --n 200 --samplers ancestral,dpmpp-2m --steps-list 2,5,10 --plot "$dir/steps.png" --json
cp "$dir/out" "$dir/steps.json"
# one row per sampler and step count, in that order; a step of these samplers is one network
# evaluation; every row against the same two draws of the data (one floor), its ratios finite
# and positive, the MMD ratio the MMD over that floor
holds "eval --metric steps: 200 points, the 6 rows in order" "$dir/steps.json" \
    '.n == 200 and [.runs[] | [.sampler, .steps]] == [["ancestral", 2], ["ancestral", 5],
     ["ancestral", 10], ["dpmpp-2m", 2], ["dpmpp-2m", 5], ["dpmpp-2m", 10]] and
     all(.runs[]; .network_evaluations == .steps)'
holds "eval --metric steps: finite positive ratios, mmd_ratio = mmd / mmd_floor" "$dir/steps.json" \
    '(.runs | length) == 6 and ([.runs[].mmd_floor] | unique | length) == 1 and
     all(.runs[]; (.mmd | finite) and .mmd > 0 and (.mmd_floor | finite) and .mmd_floor > 0 and
                  (.mmd_ratio | finite) and (.swd_ratio | finite) and .swd_ratio > 0 and
                  (.mmd_ratio - .mmd / .mmd_floor | fabs) <= 1e-9 * .mmd_ratio)'
checks=$((checks + 1))
[ -s "$dir/steps.png" ] || { echo "FAIL: eval --metric steps wrote no plot"; fails=$((fails + 1)); }

# the bound
check "nll estimate" "$bin" eval --metric nll --model "$dir/x0" --data 8gaussians --n 200 --json \
    --quiet
cp "$dir/out" "$dir/nll.json"
# points have a density, not a probability: the decoder term and the total may be negative; the
# prior and the diffusion terms are KL divergences (>= 0); the total is the sum of the terms with
# the log-determinant of the model's standardisation, bits per dimension the total over 2 ln 2
holds "nll estimate: 200 points of 2 values, T = 100, the model's variance" "$dir/nll.json" \
    '.metric == "nll" and .method == "estimate" and .n == 200 and .dim == 2 and .T == 100 and
     .variance == "beta-tilde"'
holds "nll estimate: finite terms, the KL terms >= 0, the total their sum" "$dir/nll.json" \
    'all(.nats, .nats_se, .bits_per_dim, .bits_per_dim_se, .prior_nats, .diffusion_nats,
         .decoder_nats, .log_det_nats; finite) and .prior_nats >= 0 and .diffusion_nats >= 0 and
     .nats_se >= 0 and
     (.nats - (.prior_nats + .diffusion_nats + .decoder_nats + .log_det_nats) | fabs)
         <= 1e-9 * (.nats | fabs) and
     (.bits_per_dim * 2 * (2 | log) - .nats | fabs) <= 1e-9 * (.nats | fabs)'
check "nll exact, learned variance" "$bin" eval --metric nll --model "$dir/lv" --data 8gaussians \
    --n 50 --exact --quiet
grep -q "L_0 (decoder)" "$dir/out" ||
    { echo "FAIL: no breakdown in $(cat "$dir/out")"; fails=$((fails + 1)); }
# the exact bound (every t) and the estimate (t drawn) of the same 1000 points: the estimate is
# unbiased for the exact sum, and its standard error covers the draws' spread. When written: exact
# 5.88 nats, estimate 5.31 +- 0.73, the diffusion term 10.4 (so one left out fails)
check "nll exact, learned variance, json" "$bin" eval --metric nll --model "$dir/lv" \
    --data 8gaussians --n 1000 --exact --quiet --json
cp "$dir/out" "$dir/nll_exact.json"
check "nll estimate, learned variance, json" "$bin" eval --metric nll --model "$dir/lv" \
    --data 8gaussians --n 1000 --quiet --json
holds "nll exact: 1000 points, the learned variance, the total the sum of its terms" \
    "$dir/nll_exact.json" \
    '.method == "exact" and .n == 1000 and .dim == 2 and .variance == "learned" and
     all(.nats, .prior_nats, .diffusion_nats, .decoder_nats, .log_det_nats; finite) and
     .prior_nats >= 0 and .diffusion_nats >= 0 and
     (.nats - (.prior_nats + .diffusion_nats + .decoder_nats + .log_det_nats) | fabs)
         <= 1e-9 * (.nats | fabs)'
checks=$((checks + 1))
if ! jq -e -s '.[0].method == "exact" and .[1].method == "estimate" and (.[1].nats_se | type) == "number"
               and .[1].nats_se > 0 and (.[0].nats - .[1].nats | fabs) < 4 * .[1].nats_se' \
         "$dir/nll_exact.json" "$dir/out" > /dev/null 2>&1; then
    echo "FAIL: the exact bound is not within 4 standard errors of the estimate:" \
         "$(cat "$dir/nll_exact.json" "$dir/out")"
    fails=$((fails + 1))
fi

# incompatible combinations
expect_error "variance learned" "$bin" train "${small[@]}" --out "$dir/bad" --loss hybrid
expect_error "hybrid or vlb" "$bin" train "${small[@]}" --out "$dir/bad" --var learned
expect_error "vdm-continuous" "$bin" train "${small[@]}" --out "$dir/bad" --schedule learned
expect_error "logsnr" "$bin" train "${small[@]}" --out "$dir/bad" --loss vdm-continuous
expect_error "epsilon, x0, v, score" "$bin" train "${small[@]}" --out "$dir/bad" --prediction y
expect_error "every beta must lie in (0, 1)\|beta_end < 1" "$bin" train "${small[@]}" \
    --out "$dir/bad" --beta-end 1.2
expect_error "no variance output" "$bin" sample --model "$dir/x0" --var learned --quiet \
    --out "$dir/d.csv"
expect_error "allowed 1..100" "$bin" sample --model "$dir/x0" --steps 200 --quiet --out "$dir/d.csv"
expect_error "eta" "$bin" sample --model "$dir/x0" --sampler ddim --eta 2 --quiet --out "$dir/d.csv"
expect_error "ancestral, ddim, langevin, pc, dpmpp-2m" "$bin" sample --model "$dir/x0" --sampler euler
expect_error "allowed mmd, nll, steps" "$bin" eval --metric inception --model "$dir/x0"
expect_error "not a step count in 1..100" "$bin" eval --metric steps --model "$dir/x0" \
    --steps-list 10,500
[ -e "$dir/bad/checkpoint" ] && { echo "FAIL: a refused run left a checkpoint"; fails=$((fails + 1)); }
finish
