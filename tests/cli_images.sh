#!/usr/bin/env bash
# Images end to end through the command line, with a small UNet at 28x28 and a short schedule:
# train on Fashion-MNIST, resume, sample a grid, single PNGs, NPY and a strip; train on a folder of
# those PNGs; then bad input: each gets one clear message, a non-zero exit, and nothing damaged.
set -u
bin=$1
fmnist=/usr/share/datasets/fashion-mnist
name=cli_images
source "$(dirname "$0")/shell_checks.sh"
check() { # check DESCRIPTION COMMAND...: the command succeeds
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $what: '$*': $(cat "$dir/err")"; fails=$((fails + 1))
    fi
}
if [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
    echo "FAIL: cli_images: $fmnist is missing: install the Debian package" \
         "dataset-fashion-mnist (scripts/install-deps.sh does)"
    exit 1
fi

cat > "$dir/small.json" <<'JSON'
{"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
 "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
 "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4, "attention_head_dim": 8}
JSON
train=("$bin" train --model "$dir/small.json" --T 20 --batch 4 --threads 2 --quiet)
check "train on fashion-mnist" "${train[@]}" --data fashion-mnist --steps 4 --out "$dir/run" --log-every 2
check "resume" "${train[@]}" --data fashion-mnist --steps 6 --out "$dir/run" --log-every 2 --resume
checks=$((checks + 1))
if [ "$(wc -l < "$dir/run/log.jsonl")" -ne 3 ] || ! grep -q '"step": 6' "$dir/run/log.jsonl"; then
    echo "FAIL: log.jsonl should hold steps 2, 4, 6: $(cat "$dir/run/log.jsonl")"; fails=$((fails + 1))
fi
for f in checkpoint/config.json checkpoint/model_index.json checkpoint/unet/config.json \
         checkpoint/unet/diffusion_pytorch_model.safetensors checkpoint/scheduler/scheduler_config.json loss.png; do
    checks=$((checks + 1))
    [ -s "$dir/run/$f" ] || { echo "FAIL: $f missing"; fails=$((fails + 1)); }
done
# the design-space options on a UNet: a v-prediction model with a learned variance (twice the
# output channels, diffusers' learned_range), sampled with DDIM and the strided ancestral
# sampler, and its bound on the test split
check "train v / hybrid / learned variance" "${train[@]}" --data fashion-mnist --steps 2 \
    --out "$dir/run_lv" --prediction v --var learned --loss hybrid --t-sampling importance
checks=$((checks + 1))
if ! grep -q '"out_channels":[[:space:]]*2' "$dir/run_lv/checkpoint/unet/config.json" ||
   ! grep -q 'learned_range' "$dir/run_lv/checkpoint/scheduler/scheduler_config.json" ||
   ! grep -q 'v_prediction' "$dir/run_lv/checkpoint/scheduler/scheduler_config.json"; then
    echo "FAIL: the learned-variance UNet's diffusers files"; fails=$((fails + 1))
fi
check "sample ddim" "$bin" sample --model "$dir/run_lv" --n 3 --grid "$dir/g_ddim.png" --quiet \
    --sampler ddim --steps 5
check "sample strided, learned variance" "$bin" sample --model "$dir/run_lv" --n 3 \
    --grid "$dir/g_strided.png" --quiet --steps 5
check "nll on the test split" "$bin" eval --metric nll --model "$dir/run_lv" --n 6 --quiet --json
checks=$((checks + 1))
grep -q '"n":6,"dim":784' "$dir/out" || { echo "FAIL: nll output $(cat "$dir/out")"; fails=$((fails + 1)); }
check "sample" "$bin" sample --model "$dir/run" --n 5 --grid "$dir/grid.png" --each "$dir/each" \
    --npy "$dir/s.npy" --strip "$dir/strip.png" --quiet
for f in grid.png strip.png s.npy each/sample_00000.png each/sample_00004.png; do
    checks=$((checks + 1))
    [ -s "$dir/$f" ] || { echo "FAIL: sample did not write $f"; fails=$((fails + 1)); }
done
# the PNGs just written are a folder of images: train on them too (resized to the model's size)
check "train on a folder" "${train[@]}" --data "$dir/each" --steps 2 --out "$dir/run_folder" --hflip
check "train on an NPY of images" "${train[@]}" --data "$dir/s.npy" --steps 2 --out "$dir/run_npy"

# bad input
cat > "$dir/groups.json" <<'JSON'
{"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [12, 16],
 "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
 "norm_num_groups": 8}
JSON
expect_error "norm_num_groups" "$bin" train --model "$dir/groups.json" --data fashion-mnist --out "$dir/x"
expect_error "unknown UNet preset" "$bin" train --model unet-99 --data fashion-mnist --out "$dir/x"
expect_error "the model takes 1x8x8" "$bin" train --model tiny --data fashion-mnist --out "$dir/x"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c' > "$dir/bad-magic-ubyte"
expect_error "bad-magic-ubyte" "$bin" train --data "$dir/bad-magic-ubyte" --out "$dir/x"
head -c 1000 < <(gzip -dc "$fmnist/t10k-images-idx3-ubyte.gz") > "$dir/short-ubyte"
expect_error "short-ubyte" "$bin" train --data "$dir/short-ubyte" --out "$dir/x"
mkdir -p "$dir/junk" && printf 'not a png' > "$dir/junk/a.png"
expect_error "a.png" "$bin" train --data "$dir/junk" --out "$dir/x"
checks=$((checks + 1))
[ ! -e "$dir/x" ] || { echo "FAIL: a failed run left $dir/x behind"; fails=$((fails + 1)); }
expect_error "an image model" "$bin" eval --model "$dir/run" --data swissroll
# weights that do not match their config: refused, and the files stay as they were
cp "$dir/run/checkpoint/unet/config.json" "$dir/config.saved"
sed -i 's/"layers_per_block":[[:space:]]*1/"layers_per_block": 2/' "$dir/run/checkpoint/unet/config.json"
expect_error "diffusion_pytorch_model.safetensors" "$bin" sample --model "$dir/run" --n 1 --grid "$dir/g2.png"
checks=$((checks + 1))
[ ! -e "$dir/g2.png" ] || { echo "FAIL: a refused model still wrote a grid"; fails=$((fails + 1)); }
cp "$dir/config.saved" "$dir/run/checkpoint/unet/config.json"
check "the checkpoint still loads" "$bin" sample --model "$dir/run" --n 1 --grid "$dir/g3.png" --quiet

finish
