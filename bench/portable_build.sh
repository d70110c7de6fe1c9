#!/usr/bin/env bash
# What the portable default build costs against -march=native: builds both (build-portable/ with
# the default options, build-native/ with -DDM_NATIVE=ON), then runs `diffusion bench unet`
# (unet-28, training batch 64, sampling batch 64) and `diffusion bench mlp` alternately, ROUNDS
# times each, and writes the medians to out/portable_build.md (its own report).
# Usage: bench/portable_build.sh [ROUNDS] [THREADS]   (defaults: 3, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-2}
mkdir -p out
report=out/portable_build.md
if [ -e "$report" ] && ! grep -q '^<!-- written by bench/portable_build.sh -->' "$report"; then
    echo "error: $report exists and was not written by this script; move it away" >&2
    exit 1
fi
for kind in portable native; do
    flag=OFF; [ $kind = native ] && flag=ON
    cmake -S . -B build-$kind -DCMAKE_BUILD_TYPE=Release -DDM_NATIVE=$flag > /dev/null
    cmake --build build-$kind -j"$(nproc)" --target diffusion > /dev/null
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
    for kind in portable native; do
        echo "round $r: $kind" >&2
        build-$kind/diffusion bench unet --batch 64 --infer-batch 64 --iters 4 --warmup 1 \
            --threads "$threads" --json >> "$tmp/unet-$kind"
        build-$kind/diffusion bench mlp --threads "$threads" --sample-steps 100 --sgemm-n 1024 \
            --json >> "$tmp/mlp-$kind"
    done
done
median() { # median FILE JQ-FIELD
    jq -s "map($2) | sort | .[length / 2 | floor]" "$1"
}
{
    echo "<!-- written by bench/portable_build.sh -->"
    echo "# Portable build against -march=native"
    echo
    echo "$(date -u +%F), $(uname -n), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $threads threads, medians of $rounds alternating rounds:"
    echo
    echo "| measure | portable (default) | native (-DDM_NATIVE=ON) | portable / native |"
    echo "| --- | ---: | ---: | ---: |"
    row() { # row LABEL FILE-STEM FIELD
        local p n
        p=$(median "$tmp/$2-portable" "$3"); n=$(median "$tmp/$2-native" "$3")
        printf '| %s | %.1f | %.1f | %.2f |\n' "$1" "$p" "$n" "$(echo "$p / $n" | bc -l)"
    }
    row "unet-28 training, images/s (batch 64)" unet .train_images_per_s
    row "unet-28 sampling, images/s (batch 64)" unet .infer_images_per_s
    row "MLP training, steps/s (batch 64)" mlp .mlp_train_b64_steps_per_s
    row "MLP training, steps/s (batch 1024)" mlp .mlp_train_b1024_steps_per_s
} > "$report"
cat "$report"
