#!/usr/bin/env bash
# Images end to end through the command line, with a small UNet at 28x28 and a short schedule:
# train on Fashion-MNIST, resume, sample a grid, single PNGs, NPY and a strip; train on a folder of
# those PNGs; then bad input: each gets one clear message, a non-zero exit, and nothing damaged.
set -u
bin=$1
fmnist=/usr/share/datasets/fashion-mnist
name=cli_images
source "$(dirname "$0")/shell_checks.sh"
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
# one line every 2 steps, the resumed run's appended to the first's; each loss the mean square
# error of the noise, a positive number
lines_hold "log.jsonl: steps 2, 4, 6, each with a positive loss and rate" "$dir/run/log.jsonl" \
    'map(.step) == [2, 4, 6] and all(.[]; (.loss | finite) and .loss > 0 and
                                          (.steps_per_s | finite) and .steps_per_s > 0)'
holds "the resumed checkpoint is at step 6 of 6" "$dir/run/checkpoint/config.json" \
    '.training.step == 6 and .training.steps == 6'
# the plain run's diffusers files, against which the learned-variance run's differ below
holds "the UNet's config: 1 channel in and out" "$dir/run/checkpoint/unet/config.json" \
    '.in_channels == 1 and .out_channels == 1 and .sample_size == 28'
holds "the scheduler: epsilon, variance beta (diffusers' fixed_large), T = 20" \
    "$dir/run/checkpoint/scheduler/scheduler_config.json" \
    '.prediction_type == "epsilon" and .variance_type == "fixed_large" and
     .num_train_timesteps == 20 and (.trained_betas | length) == 20'
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
holds "the learned-variance UNet: 1 channel in, 2 out" "$dir/run_lv/checkpoint/unet/config.json" \
    '.in_channels == 1 and .out_channels == 2'
holds "the learned-variance scheduler: v_prediction, learned_range, T = 20" \
    "$dir/run_lv/checkpoint/scheduler/scheduler_config.json" \
    '.prediction_type == "v_prediction" and .variance_type == "learned_range" and
     .num_train_timesteps == 20 and (.trained_betas | length) == 20'
holds "the learned-variance run's config: v, hybrid, learned, importance" \
    "$dir/run_lv/checkpoint/config.json" \
    '.prediction == "v" and .objective.loss == "hybrid" and .objective.variance == "learned" and
     .objective.timesteps == "importance" and .training.step == 2'
check "sample ddim" "$bin" sample --model "$dir/run_lv" --n 3 --grid "$dir/g_ddim.png" --quiet \
    --sampler ddim --steps 5
check "sample strided, learned variance" "$bin" sample --model "$dir/run_lv" --n 3 \
    --grid "$dir/g_strided.png" --quiet --steps 5
check "nll on the test split" "$bin" eval --metric nll --model "$dir/run_lv" --n 6 --quiet --json
cp "$dir/out" "$dir/nll.json"
# On images the decoder is discrete (a probability, at most 1) and the other terms are KL
# divergences: every term is >= 0, the total their sum, and bits per dimension the total over
# 784 ln 2. The bound uses the model's own (learned) variance.
holds "nll: 6 images of 784 values, T = 20, the model's learned variance" "$dir/nll.json" \
    '.metric == "nll" and .method == "estimate" and .n == 6 and .dim == 784 and .T == 20 and
     .variance == "learned"'
holds "nll: finite terms >= 0, a positive bits_per_dim" "$dir/nll.json" \
    'all(.nats, .nats_se, .bits_per_dim, .bits_per_dim_se, .prior_nats, .diffusion_nats,
         .decoder_nats; finite and . >= 0) and .log_det_nats == 0 and .bits_per_dim > 0'
holds "nll: the total is the sum of its terms, bits_per_dim the total / (784 ln 2)" "$dir/nll.json" \
    '(.nats - (.prior_nats + .diffusion_nats + .decoder_nats) | fabs) <= 1e-9 * .nats and
     (.bits_per_dim * 784 * (2 | log) - .nats | fabs) <= 1e-9 * .nats'
check "sample" "$bin" sample --model "$dir/run" --n 5 --grid "$dir/grid.png" --each "$dir/each" \
    --npy "$dir/s.npy" --strip "$dir/strip.png" --quiet
for f in grid.png strip.png s.npy each/sample_00000.png each/sample_00004.png; do
    checks=$((checks + 1))
    [ -s "$dir/$f" ] || { echo "FAIL: sample did not write $f"; fails=$((fails + 1)); }
done
# the strip's frames: x_T, then evenly spaced in log-SNR (each the largest step i whose log-SNR
# reaches its target, recomputed here from the scheduler's linear betas), then x_0
"$bin" sample --model "$dir/run" --n 2 --grid "$dir/g_strip.png" --strip "$dir/strip2.png" \
    --json --quiet > "$dir/strip.json" 2> "$dir/err"
jq -s '.[0] * {sched: .[1]}' "$dir/strip.json" "$dir/run/checkpoint/scheduler/scheduler_config.json" \
    > "$dir/strip_sched.json"
holds "the strip's frames are evenly spaced in log-SNR" "$dir/strip_sched.json" \
    '.sched as $c | $c.num_train_timesteps as $T | .strip_steps as $st | ($st | length) as $F |
     [range(0; $T) | $c.beta_start + ($c.beta_end - $c.beta_start) * . / ($T - 1)] as $b |
     (reduce range(0; $T) as $k ([]; . + [(if $k == 0 then 1 else .[$k - 1] end) * (1 - $b[$k])]))
     as $ab |
     def lsnr($i): $ab[$i - 1] as $a | $a / (1 - $a) | log;
     lsnr($T) as $first | lsnr(1) as $last |
     $c.beta_schedule == "linear" and $F == 10 and $st[0] == $T and $st[$F - 1] == 0 and
     all(range(1; $F - 1); . as $k | ($first + ($last - $first) * $k / ($F - 1)) as $target |
         (lsnr($st[$k]) >= $target or $st[$k] == 1) and lsnr($st[$k] + 1) < $target)'
# the PNGs just written are a folder of images: train on them too (resized to the model's size)
check "train on a folder" "${train[@]}" --data "$dir/each" --steps 2 --out "$dir/run_folder" --hflip
check "train on an NPY of images" "${train[@]}" --data "$dir/s.npy" --steps 2 --out "$dir/run_npy"
# the folder went through its cache (issue 18): reused while unchanged, rebuilt when an image
# changes, and put where --cache-dir says
cached=("$bin" train --model "$dir/small.json" --T 20 --batch 4 --threads 2 --steps 1 --log-every 0)
checks=$((checks + 1))
ls "$dir"/each/.diffusion-cache/images-*-s28-c1.u8 > /dev/null 2>&1 ||
    { echo "FAIL: no cache file in $dir/each/.diffusion-cache"; fails=$((fails + 1)); }
check "train on the cached folder" "${cached[@]}" --data "$dir/each" --out "$dir/run_cached"
checks=$((checks + 1))
grep -q "image cache" "$dir/err" && { echo "FAIL: an unchanged folder rebuilt its cache: $(cat "$dir/err")"; fails=$((fails + 1)); }
touch -d '+1 minute' "$(ls "$dir"/each/*.png | head -n 1)"
check "train after an image changed" "${cached[@]}" --data "$dir/each" --out "$dir/run_cached"
checks=$((checks + 1))
grep -q "image cache: decoded .* (the folder or the options changed" "$dir/err" ||
    { echo "FAIL: a changed folder did not rebuild its cache: $(cat "$dir/err")"; fails=$((fails + 1)); }
check "train with --cache-dir" "${cached[@]}" --data "$dir/each" --out "$dir/run_cached" \
    --cache-dir "$dir/caches"
checks=$((checks + 1))
ls "$dir"/caches/images-*-s28-c1.u8 > /dev/null 2>&1 ||
    { echo "FAIL: --cache-dir: no cache file in $dir/caches"; fails=$((fails + 1)); }

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
