#!/usr/bin/python3
"""Checks a diffusion.c checkpoint folder from outside, with PyTorch.

usage: check_export.py CKPT PROBE
  CKPT  a checkpoint folder diffusion.c wrote (unet/, scheduler/, model_index.json)
  PROBE a folder with x.npy (B,C,H,W float32), t.npy (B int64), out.npy (diffusion.c's UNet
        output on them) and alpha_bar.npy (T float64, diffusion.c's schedule)

0. The reference (unet2d.py) is first checked against diffusers' own outputs in tests/fixtures
   (the tiny unconditional and class-conditional UNets and google/ddpm-cifar10-32's flags).
1. unet/config.json builds the reference UNet2DModel, unet/ weights load with
   load_state_dict(strict=True), and its output on x, t (and y.npy's labels for a
   class-conditional model) equals out.npy (1e-4 of the largest).
2. scheduler/scheduler_config.json read as diffusers 0.31's DDPMScheduler reads it (trained_betas
   first, float32, cumprod) gives alpha_bar.npy to what float32 rounding allows, and its beta_schedule /
   beta_start / beta_end describe the same betas where diffusers has that schedule (they do not
   contradict trained_betas), with num_train_timesteps = T.
3. model_index.json names DDPMPipeline with diffusers' UNet2DModel and DDPMScheduler.
Exits 1 with a message on the first failure.
"""
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from unet2d import UNet2DModel  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read_safetensors(path):
    """{name: float32 numpy array} of a safetensors file (F32 only, as diffusion.c writes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            fail(f"{path}: {name} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(info["shape"])
    return out


def diffusers_betas(cfg):
    """DDPMScheduler.__init__'s betas (float32) for the schedule keys, ignoring trained_betas."""
    T = cfg["num_train_timesteps"]
    kind = cfg.get("beta_schedule", "linear")
    if kind == "linear":
        return torch.linspace(cfg["beta_start"], cfg["beta_end"], T, dtype=torch.float32)
    if kind == "squaredcos_cap_v2":
        def f(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)],
                            dtype=torch.float32)
    fail(f"beta_schedule {kind}: not one diffusion.c writes")


def load_unet(folder):
    """The reference UNet2DModel of a model folder, its weights loaded strictly."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("_class_name") != "UNet2DModel":
        fail(f"{folder}/config.json: _class_name {cfg.get('_class_name')}")
    model = UNet2DModel(cfg)
    weights = read_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    state = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)  # raises on a missing, extra or misshapen tensor
    return model.eval(), len(state)


def output_miss(model, folder, tol):
    """Largest |reference output - out.npy| on folder's x.npy, t.npy (and y.npy / class_labels.npy)."""
    def opt(*names):
        for n in names:
            p = os.path.join(folder, n)
            if os.path.exists(p):
                return torch.from_numpy(np.load(p))
        return None
    x, t = opt("x.npy"), opt("t.npy", "timesteps.npy")
    y = opt("y.npy", "class_labels.npy")
    want = np.load(os.path.join(folder, "out.npy"))
    with torch.no_grad():
        got = model(x, t, y).numpy()
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    return diff, scale, diff <= tol * scale


def main():
    ckpt, probe = sys.argv[1], sys.argv[2]
    # 0. the reference against diffusers' own outputs
    for model_dir, ref_dir in [("diffusers-unet-tiny/tiny_uncond", "diffusers-unet-tiny/tiny_uncond"),
                               ("diffusers-unet-tiny/tiny_class", "diffusers-unet-tiny/tiny_class"),
                               ("diffusers-pipelines/ddpm-cifar-flags/unet",
                                "diffusers-pipelines/ddpm-cifar-flags-reference")]:
        model, _ = load_unet(os.path.join(FIXTURES, model_dir))
        diff, scale, ok = output_miss(model, os.path.join(FIXTURES, ref_dir), 1e-5)
        if not ok:
            fail(f"the reference UNet2DModel is {diff:.3g} from diffusers' output of {model_dir}")
    print("  the reference UNet2DModel matches diffusers' own outputs (tests/fixtures)")
    # 1. our UNet
    model, count = load_unet(os.path.join(ckpt, "unet"))
    diff, scale, ok = output_miss(model, probe, 1e-4)
    print(f"  reference UNet2DModel, strict load: {count} tensors; output {diff:.3g} from "
          f"diffusion.c's (largest value {scale:.3g})")
    if not ok:
        fail(f"the reference's output is {diff:.3g} from diffusion.c's")
    # 2. the scheduler
    with open(os.path.join(ckpt, "scheduler", "scheduler_config.json")) as f:
        scfg = json.load(f)
    ours = np.load(os.path.join(probe, "alpha_bar.npy"))
    T = len(ours)
    if scfg.get("_class_name") != "DDPMScheduler" or scfg.get("num_train_timesteps") != T:
        fail(f"scheduler_config.json: class {scfg.get('_class_name')}, "
             f"num_train_timesteps {scfg.get('num_train_timesteps')}, expected DDPMScheduler, {T}")
    betas = torch.tensor(scfg["trained_betas"], dtype=torch.float32)
    ab = torch.cumprod(1.0 - betas, dim=0).double().numpy()
    rel = float(np.max(np.abs(ab / ours - 1)))
    # what float32 allows: each beta rounded (relative 2^-24, so 1 - beta moves by up to
    # 2^-24 beta / (1 - beta) of itself), 1 - beta and the stored cumulative product rounded
    b = betas.double().numpy()
    allowed = 2.0 ** -24 * (float(np.sum(b / (1 - b))) + 2 * T)
    named = diffusers_betas(scfg)
    contra = float(torch.max(torch.abs(named - betas) / betas))
    print(f"  scheduler_config.json: alpha_bar {rel:.3g} from diffusion.c's (relative; float32 "
          f"rounding allows {allowed:.3g}); beta_schedule {scfg['beta_schedule']} gives the "
          f"trained_betas to {contra:.3g}")
    if not rel <= allowed:
        fail(f"alpha_bar read as diffusers reads it is {rel:.3g} from diffusion.c's "
             f"(float32 rounding allows {allowed:.3g})")
    if not contra <= 1e-5:
        fail(f"beta_schedule {scfg['beta_schedule']} contradicts trained_betas ({contra:.3g})")
    # 3. the pipeline index
    with open(os.path.join(ckpt, "model_index.json")) as f:
        idx = json.load(f)
    if (idx.get("_class_name") != "DDPMPipeline" or idx.get("unet") != ["diffusers", "UNet2DModel"]
            or idx.get("scheduler") != ["diffusers", "DDPMScheduler"]):
        fail(f"model_index.json: {idx}")
    print("  ok")


if __name__ == "__main__":
    main()
