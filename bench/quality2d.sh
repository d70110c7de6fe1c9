#!/usr/bin/env bash
# The README's quality table: the demo (default training budget) on every built-in 2-D set,
# 10,000 samples against held-out data. Usage: bench/quality2d.sh [build/diffusion] [out-dir]
set -euo pipefail
bin=${1:-build/diffusion}
out=${2:-out/quality2d}
echo "| data | train s | sample s | MMD | MMD floor | ratio | SWD | SWD floor | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for set in swissroll moons 8gaussians checkerboard rings spiral; do
    "$bin" demo --data "$set" --out "$out/$set" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("| %s | %.0f | %.0f | %.4f | %.4f | %.2f | %.4f | %.4f | %.2f |" % (r["data"],
      r["train_seconds"], r["sample_seconds"], r["mmd"], r["mmd_floor"], r["mmd"] / r["mmd_floor"],
      r["swd"], r["swd_floor"], r["swd"] / r["swd_floor"]))'
done
