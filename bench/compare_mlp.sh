#!/usr/bin/env bash
# diffusion.c beside the PyTorch reference (../shared/bench) for the 2-D MLP, in one run on
# this machine, same thread count. Prints a markdown table of both figures and their ratio.
# Needs Debian's python3-torch (see ../shared/bench/README.md).
# Usage: bench/compare_mlp.sh [build/diffusion] [threads]
source "$(dirname "$0")/reference.sh"
"$bin" bench mlp --threads "$threads" --json > "$tmp/ours.json"
py --only sgemm --n 4096 > "$tmp/sgemm.json"
py --only mlp_train --batch 64 > "$tmp/t64.json"
py --only mlp_train --batch 1024 > "$tmp/t1024.json"
py --only mlp_sample --batch 10000 > "$tmp/sample.json"
/usr/bin/python3 - "$tmp" "$threads" <<'PY'
import json, os, sys, platform
d, threads = sys.argv[1], sys.argv[2]
load = lambda n: json.loads(open(os.path.join(d, n)).read())
o, sg, t64, t1k, s = (load(n) for n in ("ours.json", "sgemm.json", "t64.json", "t1024.json", "sample.json"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {threads} threads")
print("| figure | PyTorch | diffusion.c | ratio |")
print("| --- | --- | --- | --- |")
print(f"| sgemm 4096 (GFLOP/s) | {sg['gflops']:.0f} | {o['sgemm_gflops']:.0f} | {o['sgemm_gflops']/sg['gflops']:.2f}x |")
for b, r in ((64, t64), (1024, t1k)):
    ours = o[f"mlp_train_b{b}_steps_per_s"]
    print(f"| MLP training, batch {b} (steps/s) | {r['steps_per_s']:.1f} | {ours:.1f} | {ours/r['steps_per_s']:.2f}x |")
print(f"| MLP training, batch 1024 (GFLOP/s, % of sgemm) | | {o['mlp_train_b1024_gflops']:.0f} ({100*o['mlp_train_b1024_gflops']/o['sgemm_gflops']:.0f}%) | |")
print(f"| MLP sampling, 10k points x 1000 steps (s) | {s['median_s']:.1f} | {o['mlp_sample_seconds']:.1f} | {s['median_s']/o['mlp_sample_seconds']:.2f}x faster |")
print(f"| peak RSS of the bench process (MiB) | | {o['peak_rss_mib']:.0f} | |")
PY
