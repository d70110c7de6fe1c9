#!/usr/bin/env bash
# diffusion sample --sde-sampler: a trained discrete model sampled with every continuous-time
# sampler of the VP SDE its linear schedule discretises. Each run evaluates the network as often
# as its method says, draws samples as close to the data as the ancestral sampler's at the same
# step count (MMD within 2x of it: every sampler here follows the same learned score), is
# reproducible from its seed, and bad combinations are refused.
set -u
bin=$1
name=cli_sde_sample
source "$(dirname "$0")/shell_checks.sh"
check "train" "$bin" train --data 8gaussians --n-data 4000 --steps 1500 --batch 128 \
    --out "$dir/m" --quiet --threads 2
mmd() { "$bin" eval --metric mmd --samples "$1" --data 8gaussians --json | jq -r .mmd; }
check "ancestral, 50 steps" "$bin" sample --model "$dir/m" --n 500 --steps 50 \
    --out "$dir/ancestral.csv" --quiet
base=$(mmd "$dir/ancestral.csv")
N=50
# network evaluations of N steps, plus one for the noise removal at eps
declare -A evals=([euler-maruyama]=$((N + 1)) [reverse-diffusion]=$((N + 1)) [pc]=$((2 * N + 1))
                  [ode-euler]=$((N + 1)) [ode-heun]=$((2 * N + 1)) [ode-rk4]=$((4 * N + 1)))
for s in euler-maruyama reverse-diffusion pc ode-euler ode-heun ode-rk4 ode-rk45; do
    check "$s" "$bin" sample --model "$dir/m" --n 500 --sde-sampler $s --steps $N \
        --out "$dir/$s.csv" --json --quiet
    cp "$dir/out" "$dir/$s.json"
    got=$(jq -r .network_evaluations "$dir/$s.json")
    if [ $s = ode-rk45 ]; then
        # Dormand-Prince: 6 new evaluations per tried step (first-same-as-last), a few to start
        expect "$s: evaluations match its accepted and rejected steps" \
            "e >= 6 * (a + r) && e <= 6 * (a + r) + 4 && a > 0" e="$got" \
            a="$(jq -r .steps "$dir/$s.json")" r="$(jq -r .rejected_steps "$dir/$s.json")"
    else
        expect "$s: ${evals[$s]} network evaluations" "e == want" e="$got" want="${evals[$s]}"
    fi
    checks=$((checks + 1))
    rows=$(wc -l < "$dir/$s.csv")
    if [ "$rows" -ne 500 ]; then
        echo "FAIL: $s: $rows rows in its CSV, expected 500"; fails=$((fails + 1))
    fi
    expect "$s: MMD within 2x the ancestral sampler's at $N steps" "m <= 2 * b && b > 0" \
        m="$(mmd "$dir/$s.csv")" b="$base"
done
check "reverse-diffusion again, same seed" "$bin" sample --model "$dir/m" --n 500 \
    --sde-sampler reverse-diffusion --steps $N --out "$dir/again.csv" --quiet
checks=$((checks + 1))
if ! cmp -s "$dir/again.csv" "$dir/reverse-diffusion.csv"; then
    echo "FAIL: a seed did not reproduce its samples"; fails=$((fails + 1))
fi
check "another seed" "$bin" sample --model "$dir/m" --n 500 --sde-sampler reverse-diffusion \
    --steps $N --seed 1 --out "$dir/seed1.csv" --quiet
checks=$((checks + 1))
if cmp -s "$dir/seed1.csv" "$dir/reverse-diffusion.csv"; then
    echo "FAIL: two seeds gave the same samples"; fails=$((fails + 1))
fi

# bad input
expect_error "ode-rk45" "$bin" sample --model "$dir/m" --sde-sampler euler --out "$dir/x.csv"
expect_error "rtol" "$bin" sample --model "$dir/m" --sde-sampler ode-rk45 --ode-rtol 0 \
    --out "$dir/x.csv"
expect_error "does not apply to --sde-sampler" "$bin" sample --model "$dir/m" \
    --sde-sampler pc --sampler ddim --out "$dir/x.csv"
expect_error "go with --sde-sampler" "$bin" sample --model "$dir/m" --ode-atol 1e-3 \
    --out "$dir/x.csv"
check "a cosine-schedule model" "$bin" train --data 8gaussians --n-data 2000 --steps 10 \
    --schedule cosine --out "$dir/cos" --quiet
expect_error "not linear in beta" "$bin" sample --model "$dir/cos" --sde-sampler pc \
    --out "$dir/x.csv"
checks=$((checks + 1))
[ ! -e "$dir/x.csv" ] || { echo "FAIL: a refused run wrote its output"; fails=$((fails + 1)); }
finish
