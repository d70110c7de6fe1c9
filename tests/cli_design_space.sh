#!/usr/bin/env bash
# The design-space options from the command line: every prediction, loss, variance, timestep
# sampling and schedule trains and saves; every sampler draws finite samples reproducibly;
# eval --metric nll reports the bound; incompatible combinations are refused saying what is
# allowed.
set -u
bin=$1
name=cli_design
source "$(dirname "$0")/shell_checks.sh"

check() { # check DESCRIPTION COMMAND...: exit 0
    checks=$((checks + 1))
    if ! "${@:2}" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $1: '${*:2}' exited non-zero: $(cat "$dir/err")"
        fails=$((fails + 1))
    fi
}

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
grep -q '"prediction":	"x0"' "$dir/x0/checkpoint/config.json" ||
    { echo "FAIL: the prediction is not in config.json"; fails=$((fails + 1)); }

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
checks=$((checks + 1))
if [ "$(grep -o '"mmd_ratio"' "$dir/out" | wc -l)" -ne 6 ] || [ ! -s "$dir/steps.png" ]; then
    echo "FAIL: eval --metric steps: $(cat "$dir/out")"
    fails=$((fails + 1))
fi

# the bound
check "nll estimate" "$bin" eval --metric nll --model "$dir/x0" --data 8gaussians --n 200 --json \
    --quiet
grep -q '"bits_per_dim"' "$dir/out" ||
    { echo "FAIL: no bits_per_dim in $(cat "$dir/out")"; fails=$((fails + 1)); }
check "nll exact, learned variance" "$bin" eval --metric nll --model "$dir/lv" --data 8gaussians \
    --n 50 --exact --quiet
grep -q "L_0 (decoder)" "$dir/out" ||
    { echo "FAIL: no breakdown in $(cat "$dir/out")"; fails=$((fails + 1)); }

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
