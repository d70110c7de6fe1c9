#!/usr/bin/env bash
# Continuous-time training (train --sde) against the discrete DDPM on the built-in 2-D sets
# (issue 20): per set one MLP per process (the default network, STEPS steps of batch 512): the
# discrete chain (linear schedule, T = 1000), and the VP, sub-VP and VE SDEs trained by denoising
# score matching. For each model: the likelihood through the probability-flow ODE (exact trace,
# RK45 at rtol = atol = 1e-5) on N fresh held-out points, and 2,000 samples from each sampler
# judged by MMD against fresh data (and the same-n floor of real data), with the network
# evaluations each sampler spent.
#
# Writes its own generated report (default out/sde_train.md, marked on its first line) and never
# writes into docs/. A report path holding a file this script did not write is refused.
#
# Usage: bench/sde_train.sh [build/diffusion] [report.md]
#   WORK=DIR (default out/sde_train): the runs (reused when finished); THREADS=N (2);
#   STEPS=N (4000); N=points (1000); SETS="swissroll moons 8gaussians checkerboard rings spiral".
set -euo pipefail
bin=${1:-build/diffusion}
report=${2:-out/sde_train.md}
threads=${THREADS:-2}
work=${WORK:-out/sde_train}
steps=${STEPS:-4000}
n=${N:-1000}
sets=${SETS:-swissroll moons 8gaussians checkerboard rings spiral}
source "$(dirname "$0")/report_guard.sh"
command -v jq >/dev/null || { echo "error: bench/sde_train.sh needs jq" >&2; exit 1; }
mkdir -p "$work" "$(dirname "$report")"
r4() { awk -v v="$(jq -r "$1" "$2")" 'BEGIN { printf "%.4f", v }'; }
nll_rows="" sample_rows="" summary_in=""
for set in $sets; do
    nll_row="| $set |"
    for proc in ddpm vp subvp ve; do
        run="$work/$set-$proc"
        flags=()
        [[ $proc != ddpm ]] && flags=(--sde "$proc")
        if [[ ! -f "$run/checkpoint/config.json" ]]; then
            "$bin" train --data "$set" --steps "$steps" --batch 512 --threads "$threads" \
                --quiet "${flags[@]}" --out "$run" >/dev/null
        fi
        if [[ ! -s "$run.nll.json" ]]; then
            "$bin" eval --metric nll --model "$run" --data "$set" --n "$n" --exact \
                --likelihood ode --batch 250 --seed 1 --threads "$threads" --quiet --json \
                >"$run.nll.json.tmp" && mv "$run.nll.json.tmp" "$run.nll.json"
        fi
        nll_row+=" $(r4 .ode_nats "$run.nll.json") +- $(r4 .ode_nats_se "$run.nll.json") |"
        samplers="reverse-diffusion pc ode-rk45"
        [[ $proc == ddpm || $proc == vp ]] && samplers="ancestral $samplers"
        for s in $samplers; do
            how=(--sde-sampler "$s")
            [[ $s == ancestral ]] && how=()
            if [[ ! -s "$run.$s.mmd.json" ]]; then
                "$bin" sample --model "$run" --n 2000 --seed 1 "${how[@]}" --threads "$threads" \
                    --quiet --json --out "$run.$s.csv" >"$run.$s.json"
                "$bin" eval --metric mmd --samples "$run.$s.csv" --data "$set" --json \
                    >"$run.$s.mmd.json.tmp" && mv "$run.$s.mmd.json.tmp" "$run.$s.mmd.json"
            fi
            evals=$(jq -r .network_evaluations "$run.$s.json")
            ratio=$(awk -v v="$(jq -r .mmd_ratio "$run.$s.mmd.json")" 'BEGIN { printf "%.2f", v }')
            sample_rows+="| $set | $proc | $s | $evals | $(r4 .mmd "$run.$s.mmd.json") | $(r4 .mmd_floor "$run.$s.mmd.json") | $ratio |"
            sample_rows+=$'\n'
            summary_in+="$proc $s $ratio $evals"$'\n'
        done
    done
    nll_rows+="$nll_row"$'\n'
done
{
    echo "$marker"
    echo "# Continuous-time training against the discrete DDPM on the 2-D sets"
    echo
    echo "Command: \`bench/sde_train.sh $*\` (STEPS=$steps N=$n THREADS=$threads SETS=\"$sets\"),"
    echo "$(date -u +%Y-%m-%d). Per set and process: \`diffusion train --data SET --steps $steps"
    echo "--batch 512\` (ddpm: the discrete chain; otherwise \`--sde vp|subvp|ve\`)."
    echo
    echo "## Likelihood through the probability-flow ODE"
    echo
    echo "\`diffusion eval --metric nll --likelihood ode --exact --n $n --batch 250 --seed 1\` on"
    echo "fresh held-out points: nats per point in data units, +- one standard error over the"
    echo "points (the same points for every model of a set). The ddpm model is read as the"
    echo "score of the VP SDE its linear schedule discretises."
    echo
    echo "| set | ddpm | vp | subvp | ve |"
    echo "| --- | --- | --- | --- | --- |"
    printf '%s' "$nll_rows"
    echo
    echo "## Samples"
    echo
    echo "\`diffusion sample --n 2000 --seed 1\` with the sampler named (ancestral: the discrete"
    echo "chain's 1000 steps; the SDE samplers at their defaults: reverse-diffusion and pc on"
    echo "1000 steps, ode-rk45 adaptive at 1e-5), then \`diffusion eval --metric mmd --samples"
    echo "FILE --data SET\`: MMD against fresh data, the floor that of fresh real data of the"
    echo "same size, and their ratio (1: as close as real data)."
    echo
    echo "Over the sets, per process and sampler: the median ratio, the best and worst set's, and"
    echo "the mean network evaluations per sample."
    echo
    echo "| process | sampler | median ratio | best | worst | evaluations |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for proc in ddpm vp subvp ve; do
        for s in ancestral reverse-diffusion pc ode-rk45; do
            printf '%s' "$summary_in" | awk -v p="$proc" -v s="$s" '$1 == p && $2 == s' |
                sort -k3,3g | awk -v p="$proc" -v s="$s" '
                    { r[NR] = $3; e += $4 }
                    END { if (NR == 0) exit
                          m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
                          printf "| %s | %s | %.2f | %.2f | %.2f | %.0f |\n", p, s, m, r[1], r[NR], e / NR }'
        done
    done
    echo
    echo "| set | process | sampler | network evaluations | MMD | floor | ratio |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s' "$sample_rows"
} >"$report"
echo "wrote $report"
