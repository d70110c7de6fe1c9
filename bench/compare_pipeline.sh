#!/usr/bin/env bash
# A diffusers pipeline folder run by diffusion.c beside the same folder run by PyTorch, in one run
# on this machine with the same thread count: a CIFAR-size DDPMPipeline folder (google/ddpm-cifar10-32's
# UNet2DModel, 35.7M parameters, written by `diffusion train --model cifar-ddpm` for one step)
# sampled with a DDIMScheduler (25 steps, eta 0) at batch 16: diffusion.c's `sample --model DIR
# --scheduler-config` against PyTorch running diffusers' DDIM loop on tests/reference/unet2d.py
# (diffusers' UNet2DModel in plain PyTorch, checked against diffusers' outputs by
# test_export_pytorch). Only speed is compared here; that diffusion.c's results equal
# diffusers' own is test_diffusers_pipelines's job. Prints a markdown table and writes it to
# OUT/pipeline.md (default out/compare-pipeline). Needs Debian's python3-torch. Takes a few
# minutes: run it on an otherwise idle machine.
# Usage: bench/compare_pipeline.sh [build/diffusion] [threads] [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/diffusion}
threads=${2:-2}
out=${3:-$here/out/compare-pipeline}
/usr/bin/python3 -c 'import torch' 2>/dev/null || {
    echo "error: PyTorch missing: apt-get install python3-torch python3-numpy" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
steps=25 batch=16
# the folder: 32 random 3 x 32 x 32 images, one training step
perl -e 'my $h = "{'"'"'descr'"'"': '"'"'|u1'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (32, 3, 32, 32), }";
         $h .= " " x (64 - (10 + length($h) + 1) % 64) . "\n"; srand(1);
         print "\x93NUMPY\x01\x00", pack("v", length($h)), $h, join("", map { chr(int(rand(256))) } 1 .. 32 * 3072);' > "$tmp/data.npy"
"$bin" train --data "$tmp/data.npy" --model cifar-ddpm --steps 1 --batch 2 --out "$tmp/run" \
    --threads "$threads" --quiet > /dev/null
folder=$tmp/run/checkpoint
cat > "$tmp/ddim.json" <<'JSON'
{"_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
 "num_train_timesteps": 1000, "clip_sample": true, "set_alpha_to_one": true, "steps_offset": 0,
 "timestep_spacing": "leading", "prediction_type": "epsilon"}
JSON
"$bin" sample --model "$folder" --scheduler-config "$tmp/ddim.json" --steps $steps --n $batch \
    --grid "$tmp/ours.png" --threads "$threads" --json > "$tmp/ours.json"
# PyTorch with OpenBLAS, whatever the system's BLAS alternative points at (as ../shared/bench's
# blas_env.py does: the reference BLAS would make PyTorch's linear layers crawl)
openblas=$(ls -d /usr/lib/*/openblas-openmp 2>/dev/null | head -n 1 || true)
LD_LIBRARY_PATH=${openblas}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
/usr/bin/python3 - "$folder" "$tmp/ours.json" "$threads" $steps $batch "$here/tests/reference" <<'PY' | tee "$out/pipeline.md"
import json, os, struct, sys, time
folder, ours_path, threads, steps, batch, refdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
sys.path.insert(0, refdir)
import numpy as np
import torch
from unet2d import UNet2DModel
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(folder, "unet", "config.json")))
data = open(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"), "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
state = {k: torch.from_numpy(np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                           dtype="<f4").reshape(v["shape"]).copy())
         for k, v in header.items() if k != "__metadata__"}
model = UNet2DModel(cfg)
model.load_state_dict(state, strict=True)
model.eval()
# diffusers' DDIMScheduler: linear betas, leading spacing, eta 0, clip_sample, set_alpha_to_one
T = 1000
ab = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float32), 0)
ratio = T // steps
ts = [i * ratio for i in range(steps)][::-1]
x = torch.randn(batch, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"], generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
with torch.no_grad():
    for t in ts:
        eps = model(x, torch.full((batch,), t, dtype=torch.long))
        a, ap = ab[t], ab[t - ratio] if t - ratio >= 0 else torch.tensor(1.0)
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
seconds = time.perf_counter() - start
ours = json.load(open(ours_path))
theirs = steps * batch / seconds
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {cpu}, {threads} threads; {time.strftime('%Y-%m-%d')}")
print(f"| CIFAR-size DDPMPipeline folder, DDIMScheduler {steps} steps, batch {batch} | PyTorch (unet2d.py) | diffusion.c | ratio |")
print("| --- | --- | --- | --- |")
print(f"| image evaluations/s | {theirs:.2f} | {ours['image_evaluations_per_s']:.2f} | {ours['image_evaluations_per_s'] / theirs:.2f}x |")
print(f"| seconds | {seconds:.1f} | {ours['seconds']:.1f} | |")
PY
