#!/usr/bin/env bash
# The exact likelihood through the probability-flow ODE against the discrete variational bound
# of the same model, on the built-in 2-D sets (issue 20: "on the 2-D sets it is below the
# discrete bound of the same model"). One MLP per set (the default network, STEPS steps of
# batch 512, linear schedule T = 1000: the VP SDE 0.1 .. 20 discretised), then on N fresh
# held-out points `diffusion eval --metric nll --likelihood both --exact`: the bound summed over
# all T terms and the ODE likelihood with the exact trace, RK45 at rtol = atol = 1e-5, both in
# nats per point in data units, with their standard errors over the points.
#
# Writes its own generated report (default out/likelihood.md, marked on its first line) and
# never writes into docs/. A report path holding a file this script did not write is refused.
#
# Usage: bench/likelihood.sh [build/diffusion] [report.md]
#   WORK=DIR (default out/likelihood): the runs (reused when finished); THREADS=N (2);
#   STEPS=N (4000); N=points (1000); SETS="swissroll moons 8gaussians checkerboard rings spiral".
set -euo pipefail
bin=${1:-build/diffusion}
report=${2:-out/likelihood.md}
threads=${THREADS:-2}
work=${WORK:-out/likelihood}
steps=${STEPS:-4000}
n=${N:-1000}
sets=${SETS:-swissroll moons 8gaussians checkerboard rings spiral}
source "$(dirname "$0")/report_guard.sh"
command -v jq >/dev/null || { echo "error: bench/likelihood.sh needs jq" >&2; exit 1; }
mkdir -p "$work" "$(dirname "$report")"
rows=""
for set in $sets; do
    if [[ ! -f "$work/$set/checkpoint/config.json" ]]; then
        "$bin" train --data "$set" --steps "$steps" --batch 512 --threads "$threads" --quiet \
            --out "$work/$set" >/dev/null
    fi
    "$bin" eval --metric nll --model "$work/$set" --data "$set" --n "$n" --exact \
        --likelihood both --batch 250 --seed 1 --threads "$threads" --quiet --json \
        >"$work/$set.nll.json"
    rows+=$(jq -r --arg set "$set" '"| \($set) | \(.nats * 1e4 | round / 1e4) +- \(.nats_se * 1e4 | round / 1e4) | \(.ode_nats * 1e4 | round / 1e4) +- \(.ode_nats_se * 1e4 | round / 1e4) | \(.ode_minus_bound_nats * 1e4 | round / 1e4) +- \(.ode_minus_bound_nats_se * 1e4 | round / 1e4) | \(.ode_bits_per_dim * 1e4 | round / 1e4) | \(.ode_score_evals) | \(.seconds * 10 | round / 10) | \(.ode_seconds * 10 | round / 10) |"' "$work/$set.nll.json")
    rows+=$'\n'
done
{
    echo "$marker"
    echo "# Bound against the ODE likelihood on the 2-D sets"
    echo
    echo "Command: \`bench/likelihood.sh $*\` (STEPS=$steps N=$n THREADS=$threads), $(date -u +%Y-%m-%d)."
    echo "Per set: \`diffusion train --data SET --steps $steps --batch 512\`, then"
    echo "\`diffusion eval --metric nll --model RUN --data SET --n $n --exact --likelihood both"
    echo "--batch 250 --seed 1\` on fresh held-out points. Nats per point in data units (the"
    echo "standardiser's log-determinant included), +- one standard error over the points; the"
    echo "difference is ODE minus bound on the same points, +- its paired standard error"
    echo "(negative: the ODE likelihood is the tighter figure)."
    echo
    echo "| set | bound (nats) | ODE (nats) | ODE - bound (paired) | ODE bits/dim | ODE evaluations | bound s | ODE s |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$rows"
} >"$report"
echo "wrote $report"
