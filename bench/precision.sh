#!/usr/bin/env bash
# bfloat16 convolutions against float32, for quality: unet-28 trained on Fashion-MNIST with the
# same seed and budget under each (--precision), then FID-FMNIST of 500 samples of each model
# (DPM-Solver++(2M), 20 steps), drawn with float32 and with bfloat16 convolutions, and the
# training loss (mean of the last 5 log lines, 250 steps), and how far apart the two loss
# curves are, point by point. Writes OUT_DIR/precision.md (the table and that line). Speed is
# measured elsewhere (bench/compare_all.sh, bench unet --precision): the runs here may share the
# machine.
# Steps already done (a folder with its checkpoint) are reused, so the script can be re-run.
# Usage: bench/precision.sh BIN [OUT_DIR] [STEPS] [EVAL_CLASSIFIER]
#   (defaults: out/precision, 2000, out/guidance/eval-clf, trained here when missing)
set -euo pipefail
bin=${1:?usage: bench/precision.sh BIN [OUT_DIR] [STEPS] [EVAL_CLASSIFIER]}
out=${2:-out/precision}
steps=${3:-2000}
clf=${4:-out/guidance/eval-clf}
mkdir -p "$out"
[ -e "$clf/config.json" ] ||
    "$bin" train-classifier --data fashion-mnist --steps 2000 --batch 128 --out "$clf"
for p in fp32 bf16; do
    [ -e "$out/$p/checkpoint/config.json" ] ||
        "$bin" train --data fashion-mnist --model unet-28 --steps "$steps" --batch 64 --seed 0 \
            --precision "$p" --checkpoint-every 1000 --log-every 50 --out "$out/$p" --quiet
done
{
    echo "| trained with | final loss | FID-FMNIST, sampled fp32 | FID-FMNIST, sampled bf16 |"
    echo "| --- | --- | --- | --- |"
    for p in fp32 bf16; do
        loss=$(tail -n 5 "$out/$p/log.jsonl" | /usr/bin/python3 -c \
            'import json,sys; v=[json.loads(l)["loss"] for l in sys.stdin]; print(f"{sum(v)/len(v):.4f}")')
        fid=()
        for q in fp32 bf16; do
            fid+=("$("$bin" eval --metric fid --model "$out/$p" --classifier "$clf" --n 500 \
                --sampler dpmpp-2m --steps 20 --precision "$q" --quiet --json |
                /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f (floor %.3f)" % (d["rows"][0]["fid_fmnist"], d["floor"]["fid_fmnist"]))')")
        done
        echo "| $p | $loss | ${fid[0]} | ${fid[1]} |"
    done
} | tee "$out/precision.md"
# the two training runs' loss curves (log.jsonl, one line every 50 steps, each the mean loss over
# those steps) point by point: |bf16 - fp32| / fp32, mean and largest, and the last point
/usr/bin/python3 - "$out/fp32/log.jsonl" "$out/bf16/log.jsonl" <<'PY' | tee -a "$out/precision.md"
import json, sys
def curve(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if r.get("loss") is not None}
a, b = curve(sys.argv[1]), curve(sys.argv[2])
steps = sorted(set(a) & set(b))
if not steps:
    sys.exit("no logged step in common")
rel = {s: abs(b[s] - a[s]) / abs(a[s]) for s in steps}
worst, last = max(steps, key=rel.get), steps[-1]
print(f"\nloss curves, fp32 / bf16 ({len(steps)} logged points): differ by "
      f"{100 * sum(rel.values()) / len(steps):.2f}% on average and {100 * rel[worst]:.2f}% at most "
      f"(step {worst}: {a[worst]:.5f} / {b[worst]:.5f}; step {last}: {a[last]:.5f} / {b[last]:.5f})")
PY
