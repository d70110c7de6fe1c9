#!/usr/bin/env bash
# VDM on images from the command line: train --loss vdm-continuous --schedule learned on
# Fashion-MNIST with a small 28x28 UNet (VDM's Fourier-feature input on: our FourierUNet2DModel,
# no DDPMPipeline files), eval --metric nll reports VDM's continuous-time bound in bits/dim within
# a range argued below, sample writes a grid, and what stays refused is refused naming what is
# allowed.
set -u
bin=$1
name=cli_vdm_images
source "$(dirname "$0")/shell_checks.sh"
command -v jq >/dev/null || { echo "FAIL: jq is needed"; exit 1; }
export OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1

# two levels of 16 and 32 channels, no attention: small enough to train in half a minute
cat > "$dir/small28.json" <<'JSON'
{"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1,
 "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "DownBlock2D"],
 "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4,
 "add_attention": false}
JSON
train=(train --data fashion-mnist --model "$dir/small28.json" --loss vdm-continuous
       --schedule learned --batch 16 --lr 2e-3 --threads 2 --quiet)
check "train" "$bin" "${train[@]}" --steps 300 --out "$dir/run"
holds "the UNet is our FourierUNet2DModel" "$dir/run/checkpoint/unet/config.json" \
    '._class_name == "FourierUNet2DModel" and .in_channels == 1'
checks=$((checks + 1))
if [ -e "$dir/run/checkpoint/model_index.json" ]; then
    echo "FAIL: model_index.json written for a UNet that diffusers cannot load"
    fails=$((fails + 1))
fi
holds "VDM's image gammas recorded" "$dir/run/checkpoint/config.json" \
    '.schedule.gamma_min == -13.3 and .schedule.gamma_max == 5'

# The bound in bits/dim on 100 test images. Upper end: 8 bits/dim is the uniform distribution
# over the 256 levels, which any model that learned something beats (this one, 300 steps, is
# near 5.8). Lower end: it is a bound on a discrete distribution, and published Fashion-MNIST
# likelihoods are well above 2 bits/dim; a figure under 0.5 after 300 steps would be a bound that
# is not one.
check "eval nll" "$bin" eval --model "$dir/run" --metric nll --n 100 --t-draws 4 --batch 100 \
    --threads 2 --quiet --json
cp "$dir/out" "$dir/nll.json"
holds "eval nll: VDM's bound, in range, consistent" "$dir/nll.json" \
    '.bound == "vdm-continuous" and .n == 100 and .dim == 784 and (.bits_per_dim | finite) and
     .bits_per_dim > 0.5 and .bits_per_dim < 8 and .bits_per_dim_se > 0 and
     (.bits_per_dim - .nats / (784 * (2 | log)) | fabs) < 1e-9 and
     (.nats - (.prior_nats + .diffusion_nats + .decoder_nats) | fabs) < 1e-6 * .nats and
     .prior_nats > 0 and .decoder_nats > 0 and .diffusion_nats > 0'
# the same seed gives the same figure; another seed another estimate
check "eval nll again" "$bin" eval --model "$dir/run" --metric nll --n 100 --t-draws 4 \
    --batch 100 --threads 2 --quiet --json
holds "eval nll: reproducible" "$dir/out" ".nats == $(jq .nats "$dir/nll.json")"
expect_error "an estimate over t" "$bin" eval --model "$dir/run" --metric nll --n 10 --exact \
    --quiet

# sampling through the T-step discretisation of the learned schedule, Fourier features on
check "sample" "$bin" sample --model "$dir/run" --n 4 --grid "$dir/grid.png" --quiet --threads 2
checks=$((checks + 1))
if [ ! -s "$dir/grid.png" ]; then
    echo "FAIL: sample wrote no grid"
    fails=$((fails + 1))
fi

# still refused, naming what is allowed
expect_error "epsilon" "$bin" "${train[@]}" --steps 5 --prediction v --out "$dir/bad1"
expect_error "gradient accumulation 1" "$bin" "${train[@]}" --steps 5 --grad-accum 2 \
    --out "$dir/bad2"
expect_error "logsnr" "$bin" "${train[@]/learned/cosine}" --steps 5 --out "$dir/bad3"
for d in bad1 bad2 bad3; do
    checks=$((checks + 1))
    if [ -e "$dir/$d/checkpoint" ]; then
        echo "FAIL: refused run $d wrote a checkpoint"
        fails=$((fails + 1))
    fi
done
finish
