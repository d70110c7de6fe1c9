#!/usr/bin/env bash
# VDM on images against the discrete DDPM, for the same wall-clock training time (issue 20, "VDM
# on images"). Two unet-28 models on Fashion-MNIST, each trained for MINUTES of wall-clock time
# (`train --time-limit`): one with `--loss vdm-continuous --schedule learned` (VDM's continuous-
# time objective, discretised reconstruction on 256 levels, Fourier-feature input), one with the
# defaults (loss simple, linear schedule, T = 1000). Then, on the same first N images of the
# Fashion-MNIST TEST split, bits per dimension:
#   - the VDM model: VDM's continuous-time bound (`eval --metric nll`; total nats / (784 ln 2),
#     VDM's convention), T_DRAWS draws of t per image;
#   - the DDPM model: the discrete variational bound (`eval --metric nll`, L_0 exactly and
#     T_DRAWS draws of t per image), and the probability-flow ODE likelihood (`eval --metric nll
#     --likelihood ode`: RK45 rtol = atol = 1e-5, Hutchinson's trace with 1 Rademacher probe per
#     image, the default for images; a density of the dequantised pixels in [0, 256), so bits/dim
#     of the same scale as the bounds' on the 256 levels).
#
# Writes its own generated report (default out/vdm_images.md, marked on its first line) and
# never writes into docs/. A report path holding a file this script did not write is refused.
#
# Usage: bench/vdm_images.sh BINARY [MINUTES] [report.md]
#   MINUTES: wall-clock training time per model (default 30). WORK=DIR (default out/vdm_images):
#   the runs (reused when finished); THREADS=N (2); N=test images (1000); T_DRAWS=N (4);
#   ODE=0 leaves the ODE likelihood out (it is the slow part).
set -euo pipefail
bin=${1:?usage: bench/vdm_images.sh BINARY [MINUTES] [report.md]}
minutes=${2:-30}
report=${3:-out/vdm_images.md}
threads=${THREADS:-2}
work=${WORK:-out/vdm_images}
n=${N:-1000}
t_draws=${T_DRAWS:-4}
ode=${ODE:-1}
source "$(dirname "$0")/report_guard.sh"
command -v jq >/dev/null || { echo "error: bench/vdm_images.sh needs jq" >&2; exit 1; }
mkdir -p "$work" "$(dirname "$report")"
# --steps far beyond what the time allows: the time limit ends both runs
common=(train --data fashion-mnist --model unet-28 --steps 10000000 --time-limit "$minutes"
        --threads "$threads" --quiet --json)
if [[ ! -f "$work/vdm/checkpoint/config.json" ]]; then
    "$bin" "${common[@]}" --loss vdm-continuous --schedule learned --out "$work/vdm" \
        >"$work/vdm.train.json"
fi
if [[ ! -f "$work/ddpm/checkpoint/config.json" ]]; then
    "$bin" "${common[@]}" --out "$work/ddpm" >"$work/ddpm.train.json"
fi
steps() { jq -r '.training.step' "$1/checkpoint/config.json"; }
eval_common=(eval --metric nll --n "$n" --batch 100 --seed 1 --threads "$threads" --quiet --json)
"$bin" "${eval_common[@]}" --model "$work/vdm" --t-draws "$t_draws" >"$work/vdm.nll.json"
"$bin" "${eval_common[@]}" --model "$work/ddpm" --t-draws "$t_draws" >"$work/ddpm.nll.json"
ode_row="| DDPM (loss simple, linear) | probability-flow ODE, Hutchinson 1 probe | (not run: ODE=0) | | |"
if [[ "$ode" != 0 ]]; then
    "$bin" "${eval_common[@]}" --model "$work/ddpm" --likelihood ode >"$work/ddpm.ode.json"
    ode_row=$(jq -r --arg s "$(steps "$work/ddpm")" '"| DDPM (loss simple, linear) | probability-flow ODE, Hutchinson 1 probe | \(.ode_bits_per_dim * 1e4 | round / 1e4) +- \(.ode_bits_per_dim_se * 1e4 | round / 1e4) | \($s) | \(.ode_seconds | round) |"' "$work/ddpm.ode.json")
fi
row() { # row LABEL METHOD NLL.json RUN
    jq -r --arg l "$1" --arg m "$2" --arg s "$(steps "$4")" '"| \($l) | \($m) | \(.bits_per_dim * 1e4 | round / 1e4) +- \(.bits_per_dim_se * 1e4 | round / 1e4) | \($s) | \(.seconds | round) |"' "$3"
}
{
    echo "$marker"
    echo "# VDM on images against the discrete DDPM, same training time"
    echo
    echo "Command: \`bench/vdm_images.sh $*\` (MINUTES=$minutes N=$n T_DRAWS=$t_draws" \
         "THREADS=$threads ODE=$ode), $(date -u +%Y-%m-%d)."
    echo "Each model: \`diffusion train --data fashion-mnist --model unet-28 --time-limit" \
         "$minutes\` (the VDM one with \`--loss vdm-continuous --schedule learned\`). Bits per"
    echo "dimension on the first $n images of the Fashion-MNIST test split, +- one standard error"
    echo "over the images; \`eval --metric nll --n $n --batch 100 --seed 1\` (\`--t-draws" \
         "$t_draws\` for the bounds, \`--likelihood ode\` for the ODE)."
    echo
    echo "| model | figure | bits/dim | training steps | eval s |"
    echo "| --- | --- | --- | --- | --- |"
    row "VDM (vdm-continuous, learned schedule)" "VDM's continuous-time bound" \
        "$work/vdm.nll.json" "$work/vdm"
    row "DDPM (loss simple, linear)" "discrete variational bound" "$work/ddpm.nll.json" \
        "$work/ddpm"
    echo "$ode_row"
} >"$report"
echo "wrote $report"
