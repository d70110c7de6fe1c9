#!/usr/bin/env bash
# Every speed goal of diffusion.c measured beside the PyTorch reference (../shared/bench) in one
# run on this machine, same thread count, each case in its own process (separate peak RSS):
#   28x28 UNet (unet-28 = the reference's fmnist model) training images/s and peak RSS at batch
#   64 and 128, sampling throughput at batch 64, thread scaling of training (1 -> T threads),
#   achieved training GFLOP/s as a share of the sgemm rate of the same process; the 2-D MLP's
#   training steps/s at batch 64 and 1024 and sampling time (10k points x 1000 steps); the CIFAR
#   UNet (cifar-ddpm) training images/s at batch 8; the sgemm rate of both sides.
# Prints one markdown table: PyTorch, diffusion.c, ratio, goal and whether it is met.
# Needs Debian's python3-torch (see ../shared/bench/README.md). Takes about 10 minutes on an idle
# 2-core machine (most of it the reference): run it on an otherwise idle machine.
# Usage: bench/compare_all.sh [--out DIR] [build/diffusion] [threads]   (threads default 2)
#   --out DIR (or COMPARE_OUT=DIR): also write the raw JSON of every case and the table there.
#   COMPARE_SMOKE=1: for testing the script only: every case tiny (seconds), figures meaningless.
set -euo pipefail
out=${COMPARE_OUT:-}
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || { echo "error: --out needs a folder" >&2; exit 1; }; out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
source "$(dirname "$0")/reference.sh"
smoke=${COMPARE_SMOKE:-0}

# Case arguments: ours (bench unet / bench mlp) and the reference's (bench_ref.py).
if [ "$smoke" = 1 ]; then
    u28=(--model tiny); ucifar=(--model tiny); b64=4; b128=8; bcifar=2
    uit=(--iters 1 --warmup 0 --sgemm-n 256); uit1=("${uit[@]}"); cit=("${uit[@]}")
    mlp=(--sgemm-n 256 --sample-points 100 --sample-steps 10)
    rb64=2; rb128=4; rit=(--iters 1 --warmup 1); rit1=("${rit[@]}")
    rcifar=(--model fmnist --batch 2 --iters 1 --warmup 1); rsgemm=(--n 256 --iters 1 --warmup 1)
    rmlp=(--iters 2 --warmup 1); rsample=(--batch 100 --iters 1)
else
    u28=(--model unet-28); ucifar=(--model cifar-ddpm); b64=64; b128=128; bcifar=8
    uit=(--iters 10 --warmup 3); uit1=(--iters 5 --warmup 2); cit=(--iters 3 --warmup 1)
    mlp=()
    rb64=64; rb128=128; rit=(); rit1=(--iters 5 --warmup 2)
    rcifar=(--model cifar-ddpm --batch 8 --warmup 1 --iters 3); rsgemm=(--n 4096)
    rmlp=(); rsample=(--batch 10000)
fi

# run_case NAME COMMAND...: one case, its JSON line into $tmp/NAME.json
run_case() {
    local name=$1; shift
    # a pause between cases: a CPU that has just run flat out runs short steps slower for a
    # while (the MLP at batch 64: 1740 steps/s right after a UNet case, 2960 twenty seconds on)
    [ "$smoke" = 1 ] || sleep "${COMPARE_SETTLE:-20}"
    echo "measuring $name ..." >&2
    "$@" > "$tmp/$name.json"
    [ -s "$tmp/$name.json" ] || { echo "error: $name printed no JSON result" >&2; exit 1; }
}
ours_unet() { "$bin" bench unet "$@" --json; }
ours_mlp() { "$bin" bench mlp "$@" --json; }
start=$SECONDS

# diffusion.c: one process per case (peak RSS is that of the whole process). The sampling case
# of bench unet runs after training and cannot be skipped: a batch of 1 where it is not needed.
run_case ours_unet28_b64 ours_unet "${u28[@]}" --batch "$b64" --infer-batch "$b64" "${uit[@]}" \
    --threads "$threads"
run_case ours_unet28_b128 ours_unet "${u28[@]}" --batch "$b128" --infer-batch 1 "${uit[@]}" \
    --threads "$threads"
run_case ours_unet28_b64_1thread ours_unet "${u28[@]}" --batch "$b64" --infer-batch 1 "${uit1[@]}" \
    --threads 1
run_case ours_cifar_b8 ours_unet "${ucifar[@]}" --batch "$bcifar" --infer-batch 1 "${cit[@]}" \
    --threads "$threads"
# the same with bfloat16 convolutions (--precision bf16): shown beside the goals, not counted
run_case ours_unet28_b128_bf16 ours_unet "${u28[@]}" --batch "$b128" --infer-batch "$b64" \
    "${uit[@]}" --threads "$threads" --precision bf16
run_case ours_cifar_b8_bf16 ours_unet "${ucifar[@]}" --batch "$bcifar" --infer-batch 1 \
    "${cit[@]}" --threads "$threads" --precision bf16
run_case ours_mlp ours_mlp "${mlp[@]+"${mlp[@]}"}" --threads "$threads"

# PyTorch (py passes --threads $threads first; a later --threads wins)
run_case ref_sgemm py --only sgemm "${rsgemm[@]}"
run_case ref_unet28_train_b64 py --only unet_train --batch "$rb64" "${rit[@]+"${rit[@]}"}"
run_case ref_unet28_train_b128 py --only unet_train --batch "$rb128" "${rit[@]+"${rit[@]}"}"
run_case ref_unet28_infer_b64 py --only unet_infer --batch "$rb64" "${rit[@]+"${rit[@]}"}"
run_case ref_unet28_train_b64_1thread py --only unet_train --batch "$rb64" "${rit1[@]}" --threads 1
run_case ref_cifar_train_b8 py --only unet_train "${rcifar[@]}"
run_case ref_mlp_train_b64 py --only mlp_train --batch 64 "${rmlp[@]+"${rmlp[@]}"}"
run_case ref_mlp_train_b1024 py --only mlp_train --batch 1024 "${rmlp[@]+"${rmlp[@]}"}"
run_case ref_mlp_sample_10k py --only mlp_sample "${rsample[@]}"
echo "done in $((SECONDS - start)) s" >&2

/usr/bin/python3 - "$tmp" "$threads" "$smoke" <<'PY' > "$tmp/table.md"
import json, os, sys
d, threads, smoke = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
J = {n[:-5]: json.load(open(os.path.join(d, n))) for n in os.listdir(d) if n.endswith(".json")}
o64, o128, o1, oc, om = (J["ours_" + n] for n in ("unet28_b64", "unet28_b128", "unet28_b64_1thread",
                                                  "cifar_b8", "mlp"))
r = lambda n: J["ref_" + n]
for n, want in (("b64_1thread", 1), ("b64", threads)):
    for name in ("ref_unet28_train_" + n, "ours_unet28_" + n):
        if J[name]["threads"] != want:
            sys.exit(f"error: {name} ran with {J[name]['threads']} threads, wanted {want}")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rsg = r("sgemm")
if smoke:
    print("**SMOKE MODE (COMPARE_SMOKE=1): tiny cases, the figures mean nothing**\n")
print(f"machine: {cpu}, {os.cpu_count()} cores; {threads} threads on both sides")
print(f"sgemm {rsg['n']}: PyTorch {rsg['gflops']:.0f} GFLOP/s, diffusion.c {om['sgemm_gflops']:.0f} GFLOP/s "
      f"(bench mlp); diffusion.c's bench unet processes: {o64['sgemm_gflops']:.0f} (batch 64), "
      f"{o128['sgemm_gflops']:.0f} (batch 128) GFLOP/s\n")
print("| figure | PyTorch | diffusion.c | ratio | goal | met |")
print("| --- | --- | --- | --- | --- | --- |")
def row(fig, ref, ours, ratio, goal, met):
    mark = "" if met is None else "yes" if met else "**no**"
    print(f"| {fig} | {ref} | {ours} | {ratio} | {goal} | {mark} |")
def faster(fig, ref, ours, goal, fmt=".1f"):  # throughput: ratio ours / PyTorch >= goal
    x = ours / ref
    row(fig, f"{ref:{fmt}}", f"{ours:{fmt}}", f"{x:.2f}x", f">= {goal}x", x >= goal)
def smaller(fig, ref, ours, goal):  # memory: ratio ours / PyTorch <= goal
    x = ours / ref
    row(fig, f"{ref:.0f}", f"{ours:.0f}", f"{x:.2f}x", f"<= {goal}x", x <= goal)
for b, o in ((64, o64), (128, o128)):
    t = r(f"unet28_train_b{b}")
    faster(f"unet-28 training, batch {b} (images/s)", t["images_per_s"], o["train_images_per_s"], 2.5)
    smaller(f"unet-28 training, batch {b}, peak RSS (MiB)", t["peak_rss_mib"], o["train_peak_rss_mib"], 0.5)
faster("unet-28 sampling, batch 64 (image evaluations/s)", r("unet28_infer_b64")["images_per_s"],
       o64["infer_images_per_s"], 3)
for b in (64, 1024):
    faster(f"MLP training, batch {b} (steps/s)", r(f"mlp_train_b{b}")["steps_per_s"],
           om[f"mlp_train_b{b}_steps_per_s"], 3 if b == 64 else 1.5)
s_ref, s_ours = r("mlp_sample_10k")["median_s"], om["mlp_sample_seconds"]
row("MLP sampling, 10k points x 1000 steps (s)", f"{s_ref:.1f}", f"{s_ours:.1f}",
    f"{s_ref / s_ours:.2f}x faster", "<= 27 s", s_ours <= 27)
faster("cifar-ddpm training, batch 8 (images/s)", r("cifar_train_b8")["images_per_s"],
       oc["train_images_per_s"], 1.3, ".2f")
rs = r("unet28_train_b64")["images_per_s"] / r("unet28_train_b64_1thread")["images_per_s"]
os_ = o64["train_images_per_s"] / o1["train_images_per_s"]
row(f"unet-28 training, batch 64, 1 -> {threads} threads (images/s ratio)", f"{rs:.2f}x",
    f"{os_:.2f}x", "", ">= 1.7x", os_ >= 1.7)
# The reference's share uses diffusion.c's FLOPs per image (same model) and its own sgemm run
# (OpenBLAS). diffusion.c's share is against the sgemm it uses itself (oneDNN's where built with
# it), measured in the same process, and also against the reference's OpenBLAS rate.
share = o128["train_gflops"] / o128["sgemm_gflops"]
ref_gf = r("unet28_train_b128")["images_per_s"] * o128["train_gflops"] / o128["train_images_per_s"]
row("unet-28 training, batch 128: GFLOP/s, share of the sgemm rate",
    f"{ref_gf:.0f} ({100 * ref_gf / rsg['gflops']:.0f}% of OpenBLAS's {rsg['gflops']:.0f})",
    f"{o128['train_gflops']:.0f} ({100 * share:.0f}% of its own {o128['sgemm_gflops']:.0f}; "
    f"{100 * o128['train_gflops'] / rsg['gflops']:.0f}% of OpenBLAS's)", "", ">= 70%",
    share >= 0.7)
ob, ocb = J["ours_unet28_b128_bf16"], J["ours_cifar_b8_bf16"]
for fig, ref, ours, fmt in (
        ("unet-28 training, batch 128 (images/s)", r("unet28_train_b128")["images_per_s"],
         ob["train_images_per_s"], ".1f"),
        ("unet-28 sampling, batch 64 (image evaluations/s)", r("unet28_infer_b64")["images_per_s"],
         ob["infer_images_per_s"], ".1f"),
        ("cifar-ddpm training, batch 8 (images/s)", r("cifar_train_b8")["images_per_s"],
         ocb["train_images_per_s"], ".2f")):
    row(f"{fig}, bf16 convolutions ({ob.get('conv', '?')})", f"{ref:{fmt}} (float32)",
        f"{ours:{fmt}}", f"{ours / ref:.2f}x", "(not a goal)", None)
print(f"\nconvolutions: {o128.get('conv', '?')} (diffusion.c); the sgemm rates: PyTorch's is "
      f"OpenBLAS's, diffusion.c's that of the GEMM it calls")
PY
cat "$tmp/table.md"
if [ -n "$out" ]; then
    mkdir -p "$out"
    cp "$tmp"/*.json "$tmp/table.md" "$out/"
    echo "raw JSON of every case and the table in $out" >&2
fi
