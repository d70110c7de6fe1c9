#!/usr/bin/env bash
# diffusion.c beside the PyTorch reference (../shared/bench) for the 28x28 UNet (unet-28 = the
# reference's fmnist model), in one run on this machine, same thread count: training images/s at
# batch 128 (forward + backward + Adam), sampling throughput at batch 64 (network evaluations x
# batch per second) and peak memory. Prints a markdown table. Needs Debian's python3-torch (see
# ../shared/bench/README.md). Takes a few minutes: run it on an otherwise idle machine.
# Usage: bench/compare_unet.sh [build/diffusion] [threads]
source "$(dirname "$0")/reference.sh"
"$bin" bench unet --model unet-28 --batch 128 --infer-batch 64 --iters 10 --warmup 3 \
    --threads "$threads" --json > "$tmp/ours.json"
py --only unet_train --batch 128 > "$tmp/train.json"
py --only unet_infer --batch 64 > "$tmp/infer.json"
/usr/bin/python3 - "$tmp" "$threads" <<'PY'
import json, os, sys
d, threads = sys.argv[1], sys.argv[2]
load = lambda n: json.loads(open(os.path.join(d, n)).read())
o, tr, inf = (load(n) for n in ("ours.json", "train.json", "infer.json"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {threads} threads; sgemm {o['sgemm_gflops']:.0f} GFLOP/s")
print("| figure | PyTorch | diffusion.c | ratio |")
print("| --- | --- | --- | --- |")
r = o["train_images_per_s"] / tr["images_per_s"]
print(f"| unet-28 training, batch 128 (images/s) | {tr['images_per_s']:.1f} | {o['train_images_per_s']:.1f} | {r:.2f}x |")
print(f"| unet-28 training, batch 128 (GFLOP/s) | | {o['train_gflops']:.0f} | |")
r = o["infer_images_per_s"] / inf["images_per_s"]
print(f"| unet-28 sampling, batch 64 (image evaluations/s) | {inf['images_per_s']:.1f} | {o['infer_images_per_s']:.1f} | {r:.2f}x |")
r = tr["peak_rss_mib"] / o["train_peak_rss_mib"]
print(f"| peak RSS of training, batch 128 (MiB) | {tr['peak_rss_mib']:.0f} | {o['train_peak_rss_mib']:.0f} | {r:.2f}x less |")
PY
