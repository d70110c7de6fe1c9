#!/usr/bin/env bash
# A scaling model, on paper, of data-parallel training over MPI: for unet-28 and cifar-ddpm at
# 8, 64 and 512 ranks on 25 and 100 Gb/s networks, the time of a ring allreduce of the gradients
# against the time of a training step, from the compute rate MEASURED here (`diffusion bench
# unet`, one process) and a MODELLED allreduce:
#     t_allreduce = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency
# (the ring's reduce-scatter and all-gather; each rank sends and receives 2 (N - 1) / N of the
# buffer). A rank is one process like the one measured (same cores, same rate). Writes
# out/mpi_scaling_model.md (its own report; never a hand-written doc).
# Usage: bench/mpi_scaling_model.sh [BIN] [THREADS]   (defaults: build/diffusion, 2)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/diffusion}
threads=${2:-2}
mkdir -p out
report=out/mpi_scaling_model.md
if [ -e "$report" ] && ! grep -q '^<!-- written by bench/mpi_scaling_model.sh -->' "$report"; then
    echo "error: $report exists and was not written by this script; move it away" >&2
    exit 1
fi
measure() { # measure PRESET BATCH ITERS: bench unet's JSON line
    "$bin" bench unet --model "$1" --batch "$2" --infer-batch 1 --iters "$3" --warmup 1 \
        --threads "$threads" --sgemm-n 256 --json
}
echo "measuring unet-28 (batch 64) and cifar-ddpm (batch 16) training rates ..." >&2
u28=$(measure unet-28 64 4)
cifar=$(measure cifar-ddpm 16 2)
python3 - "$u28" "$cifar" "$(uname -n)" "$(nproc)" > "$report" <<'PY'
import json, sys
u28, cifar = json.loads(sys.argv[1]), json.loads(sys.argv[2])
host, cpus = sys.argv[3], sys.argv[4]
LATENCY = 10e-6  # s per message hop: an assumption (RDMA-class; TCP over Ethernet is ~3-5x more)
ranks = [8, 64, 512]
nets = [25, 100]  # Gb/s
print("<!-- written by bench/mpi_scaling_model.sh -->")
print("# Data-parallel scaling model\n")
print(f"Measured on {host} ({cpus} CPUs), one process of {u28['threads']} threads "
      f"(`diffusion bench unet`, fp32):\n")
print("| preset | parameters | gradient bytes (fp32) | measured images/s | at batch |")
print("| --- | ---: | ---: | ---: | ---: |")
presets = []
for r in (u28, cifar):
    grad = 4 * r["params"]
    presets.append((r["model"], grad, r["train_images_per_s"], r["train_batch"]))
    print(f"| {r['model']} | {r['params']:,.0f} | {grad / 1e6:.1f} MB | "
          f"{r['train_images_per_s']:.1f} | {r['train_batch']:.0f} |")
print("\nEverything below is MODELLED from those rates: a rank is one such process, its step "
      "time its per-rank batch / the measured rate (the per-image cost taken as constant in the "
      "batch), the allreduce a ring's cost at the given bandwidth with "
      f"{LATENCY * 1e6:.0f} us per hop. Efficiency = step compute / (compute + allreduce) with "
      "no overlap; with the allreduce fully hidden behind the backward pass it is compute / "
      "max(compute, allreduce).\n")

def allreduce(n, nbytes, gbps):
    return 2 * (n - 1) / n * nbytes / (gbps * 1e9 / 8) + 2 * (n - 1) * LATENCY

for name, grad, rate, _ in presets:
    print(f"## {name}: {grad / 1e6:.1f} MB of gradients\n")
    print("Weak scaling (each rank keeps a batch of 64 for unet-28, 16 for cifar-ddpm):\n")
    per_rank = 64 if name == "unet-28" else 16
    t_c = per_rank / rate
    print("| ranks | network | compute s/step | allreduce s/step | efficiency, no overlap "
          "| overlapped | images/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in ranks:
        for g in nets:
            t_a = allreduce(n, grad, g)
            eff = t_c / (t_c + t_a)
            eff_o = t_c / max(t_c, t_a)
            print(f"| {n} | {g} Gb/s | {t_c:.3f} | {t_a:.4f} | {eff:.1%} | {eff_o:.1%} | "
                  f"{n * per_rank / (t_c + t_a):,.0f} |")
    # strong scaling: a fixed global batch split over the ranks
    glob = 512
    print(f"\nStrong scaling (a global batch of {glob} split over the ranks; 512 ranks leave one "
          "image each):\n")
    print("| ranks | network | per-rank batch | compute s/step | allreduce s/step | "
          "efficiency, no overlap |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in ranks:
        b = glob / n
        t_cs = b / rate
        for g in nets:
            t_a = allreduce(n, grad, g)
            print(f"| {n} | {g} Gb/s | {b:.0f} | {t_cs:.4f} | {t_a:.4f} | "
                  f"{t_cs / (t_cs + t_a):.1%} |")
    # where the allreduce equals the compute (efficiency 50% without overlap), per-rank batch
    print("\nWhere scaling stops: the per-rank batch at which the allreduce costs as much as the "
          "compute (below it, communication dominates), and how many times faster than the "
          f"measured one a rank with the weak-scaling batch of {per_rank} would have to be for "
          "the same (a many-core node or a GPU is):\n")
    print("| ranks | batch, 25 Gb/s | batch, 100 Gb/s | rank speed-up, 25 Gb/s | "
          "rank speed-up, 100 Gb/s |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in ranks:
        cells = [f"{allreduce(n, grad, g) * rate:.1f}" for g in nets]
        ups = [f"{t_c / allreduce(n, grad, g):.0f}x" for g in nets]
        print(f"| {n} | {cells[0]} | {cells[1]} | {ups[0]} | {ups[1]} |")
    print()
print("## What pushes scaling further\n")
print("- Gradient accumulation (`--grad-accum K`): K micro-batches per allreduce divide its share "
      "of the step by K, as a K-times larger per-rank batch does.")
print("- bfloat16 gradients in the allreduce would halve the bytes (not implemented: the "
      "gradients are summed in float32).")
print("- Overlap: bucketed allreduces started during the backward pass hide up to the whole "
      "allreduce when it is shorter than the backward (the 'overlapped' column); not "
      "implemented yet.")
print("- A faster rank (more cores per process, a GPU) shrinks the compute and moves every "
      "crossover above to a proportionally larger per-rank batch.")
PY
echo "wrote $report" >&2
