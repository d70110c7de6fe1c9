#!/usr/bin/env bash
# train --resolution R (diffusers' --resolution, Resize + CenterCrop on load): the model's size
# becomes R and is recorded in its config, so sample draws R x R images and --resume needs no
# --resolution (another one is refused, naming it, before anything is written); bad input
# (0, too large, a size the UNet cannot halve, --random-crop, both crops, points data) is refused
# with one message each. The resize itself is checked against a reference in test_image_resize.
set -u
bin=$1
fmnist=/usr/share/datasets/fashion-mnist
name=cli_train_resolution
source "$(dirname "$0")/shell_checks.sh"
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
if [ ! -f "$fmnist/t10k-images-idx3-ubyte.gz" ]; then
    echo "FAIL: $name: $fmnist is missing: install the Debian package dataset-fashion-mnist"
    exit 1
fi
# a small UNet whose preset size (28) --resolution replaces; two levels: sizes must be even
cat > "$dir/small.json" <<'JSON'
{"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
 "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
 "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4, "attention_head_dim": 8}
JSON
train=("$bin" train --data fashion-mnist-test --model "$dir/small.json" --T 20 --batch 4 --quiet)
snapshot() { (cd "$1" && find . -printf '%p %s %T@\n' | sort); }

check "train --resolution 16" "${train[@]}" --resolution 16 --center-crop --steps 2 --out "$dir/r"
holds "the model's config records 16" "$dir/r/checkpoint/unet/config.json" '.sample_size == 16'
check "sample from it" "$bin" sample --model "$dir/r" --n 2 --steps 5 --npy "$dir/s.npy" --quiet
# NPY v1 header: the shape of the samples, 16 x 16
check "samples are 2 x 1 x 16 x 16 ($(head -c 80 "$dir/s.npy" | tr -d '\0' | grep -ao "'shape': ([0-9, ]*)"))" \
    grep -aq "'shape': (2, 1, 16, 16)" "$dir/s.npy"
# resume: the run's size stands without the flag, and with it repeated
check "--resume without --resolution" "${train[@]}" --steps 3 --out "$dir/r" --resume
check "--resume with the run's --resolution" "${train[@]}" --resolution 16 --steps 4 --out "$dir/r" --resume
holds "resumed to step 4, still 16" "$dir/r/checkpoint/unet/config.json" '.sample_size == 16'
holds "config.json at step 4" "$dir/r/checkpoint/config.json" '.training.step == 4'
before=$(snapshot "$dir/r")
expect_error "error: --resume cannot change this flag: --resolution 20 (the run has 16)" \
    "${train[@]}" --resolution 20 --steps 5 --out "$dir/r" --resume
check "the refused resume left the run folder as it was" test "$before" = "$(snapshot "$dir/r")"

# a folder of the 16 x 16 samples as PNGs, trained at 8: the run's size (a folder keeps its own
# filter: centre square, area-averaged, through its uint8 cache); a resume needs no
# --resolution, and another data set is refused naming the flags to give
check "sample PNGs" "$bin" sample --model "$dir/r" --n 3 --steps 5 --each "$dir/pngs" --quiet
check "train on the folder --resolution 8" "${train[@]}" --data "$dir/pngs" --resolution 8 --steps 1 --out "$dir/f"
holds "the folder run's model is 8 x 8" "$dir/f/checkpoint/unet/config.json" '.sample_size == 8'
check "--resume with --resolution 8" "${train[@]}" --data "$dir/pngs" --resolution 8 --steps 2 --out "$dir/f" --resume
check "--resume without --resolution" "${train[@]}" --data "$dir/pngs" --steps 3 --out "$dir/f" --resume
check "sample more PNGs" "$bin" sample --model "$dir/r" --n 4 --steps 5 --each "$dir/pngs2" --quiet
expect_error "these data differ; give the run's --data, --model and --resolution" \
    "${train[@]}" --data "$dir/pngs2" --steps 4 --out "$dir/f" --resume

# fine-tuning: --resolution may only name the diffusers model's own size (8 here); Fashion-MNIST
# is then resized to it
tiny=$(dirname "$0")/fixtures/diffusers-unet-tiny/tiny_uncond
check "--init-from with the model's --resolution 8" "$bin" train --init-from "$tiny" \
    --data fashion-mnist-test --resolution 8 --steps 1 --batch 2 --quiet --out "$dir/ft"
holds "the fine-tuned model stays 8 x 8" "$dir/ft/checkpoint/unet/config.json" '.sample_size == 8'
expect_error "error: --resolution 16 with --init-from: the model in $tiny takes 8" "$bin" train \
    --init-from "$tiny" --data fashion-mnist-test --resolution 16 --steps 1 --out "$dir/x"

# a set of another size without --resolution is refused, pointing at it
expect_error "other sources must match, or give --resolution" "${train[@]}" --model tiny \
    --steps 1 --out "$dir/x"
expect_error "error: --resolution must be in 1..4096 (got 0)" "${train[@]}" --resolution 0 --out "$dir/x"
expect_error "error: --resolution must be in 1..4096 (got 5000)" "${train[@]}" --resolution 5000 --out "$dir/x"
expect_error "error: --resolution 15: sample_size 15: must be 1..4096 and divisible by 2" "${train[@]}" --resolution 15 --out "$dir/x"
expect_error "error: --center-crop and --random-crop exclude each other" "${train[@]}" \
    --resolution 16 --center-crop --random-crop --out "$dir/x"
expect_error "error: --random-crop is not supported yet" "${train[@]}" --resolution 16 --random-crop --out "$dir/x"
expect_error "error: --resolution applies to image data" "$bin" train --data moons --resolution 16 --out "$dir/x"
expect_error "error: --center-crop applies to image data" "$bin" train --data moons --center-crop --out "$dir/x"
check "nothing made by the refusals" test ! -e "$dir/x"
finish
