#!/usr/bin/env bash
# Data-parallel training over MPI against threads, on this machine: unet-28 on Fashion-MNIST at
# batch 64, 1 process x T threads against T ranks x 1 thread (mpirun -np T, each rank bound to
# a core), the same steps and seed. Reports images/s (over the steps after the first log
# interval, which holds oneDNN's set-up) and the time per step spent in the gradient allreduce
# (MPI_Allreduce of the 1,623,169 gradients, 6.5 MB, plus a small one of the loss; it includes
# waiting for the slower rank). Writes out/mpi_train/report.md and the runs' JSON; prints the
# report. Needs a build with MPI, openmpi-bin and dataset-fashion-mnist.
# Usage: bench/mpi_train.sh [build/diffusion] [threads]    (threads default 2)
#   MPI_BENCH_STEPS (default 40), MPI_BENCH_OUT (default out/mpi_train),
#   MPI_BENCH_SMOKE=1: the tiny UNet on 8x8 noise for a few steps, to test the script only.
set -euo pipefail
bin=$(realpath "${1:-build/diffusion}")
T=${2:-2}
steps=${MPI_BENCH_STEPS:-40}
out=${MPI_BENCH_OUT:-out/mpi_train}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
command -v mpirun > /dev/null || { echo "error: mpirun missing (apt-get install openmpi-bin)" >&2; exit 1; }
ldd "$bin" | grep -q libmpi || { echo "error: $bin was built without MPI" >&2; exit 1; }
mkdir -p "$out"
out=$(realpath "$out")
runs=$(mktemp -d /tmp/dm_mpi_bench_XXXXXX)
trap 'rm -rf "$runs"' EXIT

every=10
if [ "${MPI_BENCH_SMOKE:-0}" = 1 ]; then
    python3 - "$runs/img.npy" <<'EOF'
import random, sys
n, h, w = 64, 8, 8
head = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (n, h, w)
head += " " * (63 - (10 + len(head)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode())
    f.write(bytes(random.randrange(256) for _ in range(n * h * w)))
EOF
    data=(--data "$runs/img.npy" --model tiny); steps=4; every=2
else
    data=(--data fashion-mnist --model unet-28)
fi
common=("${data[@]}" --batch 64 --steps "$steps" --seed 1 --checkpoint-every 0
        --log-every "$every" --json)

# images/s after the first log interval, from DIR/log.jsonl
rate() { jq -s 'if length > 1 then (map(.examples_per_s) | .[1:] | add / length) else .[0].examples_per_s end' "$1/log.jsonl"; }

echo "1 process x $T threads ..." >&2
"$bin" train "${common[@]}" --threads "$T" --out "$runs/threads" > "$out/threads.json"
echo "$T ranks x 1 thread ..." >&2
mpirun --oversubscribe --bind-to core -np "$T" "$bin" train "${common[@]}" --threads 1 \
    --out "$runs/ranks" > "$out/ranks.json"
cp "$runs/threads/log.jsonl" "$out/threads.log.jsonl"
cp "$runs/ranks/log.jsonl" "$out/ranks.log.jsonl"

r_threads=$(rate "$runs/threads")
r_ranks=$(rate "$runs/ranks")
ar_ms=$(jq ".allreduce_s / .steps * 1000" "$out/ranks.json")
step_ms=$(jq "1000 / .steps_per_s" "$out/ranks.json")
load=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
{
    echo "# MPI data-parallel training against threads ($(date -u +%Y-%m-%d), $(nproc) CPUs: $cpu)"
    echo
    echo "\`bench/mpi_train.sh $*\`: ${data[*]}, batch 64, $steps steps, seed 1."
    echo "Load average when it ended: $load (other work on the machine slows both runs)."
    echo
    echo "| run | images/s (after the first $every steps) | s total | allreduce ms/step | allreduce share |"
    echo "| --- | --- | --- | --- | --- |"
    printf "| 1 process x %d threads | %.1f | %.1f | - | - |\n" "$T" "$r_threads" \
        "$(jq .seconds "$out/threads.json")"
    printf "| %d ranks x 1 thread | %.1f | %.1f | %.1f | %.0f%% |\n" "$T" "$r_ranks" \
        "$(jq .seconds "$out/ranks.json")" "$ar_ms" \
        "$(awk -v a="$ar_ms" -v s="$step_ms" 'BEGIN { print 100 * a / s }')"
    echo
    echo "Commands:"
    echo
    echo "    diffusion train ${common[*]} --threads $T --out DIR"
    echo "    mpirun --oversubscribe --bind-to core -np $T diffusion train ${common[*]} --threads 1 --out DIR"
} > "$out/report.md"
cat "$out/report.md"
