#!/usr/bin/env bash
# diffusers folders from the command line (tests/fixtures/diffusers-pipelines, made by diffusers
# 0.31.0): sample a DDIMPipeline and a DDPMPipeline folder with their own schedulers, a bare
# UNet2DModel folder with DDPMScheduler's defaults or a given scheduler_config.json, another
# sampler on request; fine-tune from a pipeline folder and sample the result; and the folders,
# configs and flag combinations refused, each with one clear message. test_diffusers_pipelines
# checks the trajectories against diffusers' own.
set -u
bin=$1
name=cli_diffusers
pipes="$(cd "$(dirname "$0")" && pwd)/fixtures/diffusers-pipelines"
source "$(dirname "$0")/shell_checks.sh"
[ -d "$pipes/ddim-trailing" ] || { echo "FAIL: $pipes is missing (restore tests/fixtures)"; exit 1; }
ok() { # ok DESCRIPTION COMMAND...: must succeed; stdout in $dir/out
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $what: $(cat "$dir/err")"; fails=$((fails + 1)); return 1
    fi
}
is() { # is DESCRIPTION JQ-FILTER EXPECTED: the filter on $dir/out gives EXPECTED
    checks=$((checks + 1))
    local got; got=$(jq -r "$2" "$dir/out" 2> /dev/null)
    if [ "$got" != "$3" ]; then echo "FAIL: $1: $2 is '$got', expected '$3'"; fails=$((fails + 1)); fi
}

# a DDIMPipeline folder: its scheduler (DDIM, 25 steps asked, 50 its default), deterministic
ok "sample a DDIMPipeline folder" "$bin" sample --model "$pipes/ddim-trailing" --n 3 --steps 25 \
    --npy "$dir/a.npy" --grid "$dir/a.png" --seed 7 --json --threads 1
is "DDIMPipeline, 25 steps" .network_evaluations 25
ok "sample it again" "$bin" sample --model "$pipes/ddim-trailing" --n 3 --steps 25 \
    --npy "$dir/b.npy" --grid "$dir/b.png" --seed 7 --json --threads 1
checks=$((checks + 1))
cmp -s "$dir/a.npy" "$dir/b.npy" || { echo "FAIL: the same seed gave other images"; fails=$((fails + 1)); }
ok "the DDIMPipeline's default steps" "$bin" sample --model "$pipes/ddim-trailing" --n 1 \
    --grid "$dir/c.png" --json
is "DDIMPipeline default" .network_evaluations 50
# another sampler on request, from the same folder
ok "--sampler dpmpp-2m on a diffusers folder" "$bin" sample --model "$pipes/ddim-trailing" --n 1 \
    --sampler dpmpp-2m --steps 10 --grid "$dir/d.png" --json
is "dpmpp-2m, 10 steps" .network_evaluations 10
# a DDPMPipeline folder with a DPM-Solver config (the fixture's, with its class named)
{ printf '{"_class_name": "DPMSolverMultistepScheduler",'; tail -c +2 "$pipes/dpmsolver-2m-reference/scheduler_config.json"; } > "$dir/dpm.json"
ok "--scheduler-config" "$bin" sample --model "$pipes/ddpm-cifar-flags" --scheduler-config "$dir/dpm.json" \
    --n 2 --grid "$dir/e.png" --json
is "DPM-Solver's default 20 steps" .network_evaluations 20
# a bare UNet2DModel folder: DDPMScheduler's defaults (1000 steps) unless told
ok "a bare UNet folder" "$bin" sample --model "$pipes/weights-f32" --n 2 --steps 10 --grid "$dir/f.png" --json
is "bare UNet, 10 steps" .network_evaluations 10

# fine-tuning from a DDPMPipeline folder (3 x 16 x 16) on 8 random images, then sampling the run
perl -e 'my $h = "{'"'"'descr'"'"': '"'"'|u1'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (8, 3, 16, 16), }";
         $h .= " " x (64 - (10 + length($h) + 1) % 64) . "\n"; srand(3);
         print "\x93NUMPY\x01\x00", pack("v", length($h)), $h, join("", map { chr(int(rand(256))) } 1 .. 8 * 768);' > "$dir/imgs.npy"
ok "train --init-from" "$bin" train --init-from "$pipes/ddpm-cifar-flags" --data "$dir/imgs.npy" \
    --steps 2 --batch 4 --out "$dir/ft" --quiet --json
is "fine-tuned 2 steps" .steps 2
checks=$((checks + 1))
jq -e '.in_channels == 3 and .sample_size == 16 and .block_out_channels == [16, 32, 32, 32] and .freq_shift == 1 and .flip_sin_to_cos == false' \
    "$dir/ft/checkpoint/unet/config.json" > /dev/null ||
    { echo "FAIL: the fine-tuned UNet is not the folder's architecture"; fails=$((fails + 1)); }
checks=$((checks + 1))
jq -e '.variance_type == "fixed_large" and .num_train_timesteps == 1000' \
    "$dir/ft/checkpoint/scheduler/scheduler_config.json" > /dev/null ||
    { echo "FAIL: the fine-tuned run's schedule is not the folder's"; fails=$((fails + 1)); }
ok "sample the fine-tuned run" "$bin" sample --model "$dir/ft" --n 2 --steps 5 --grid "$dir/g.png" --json

# what a cosine run writes names diffusers' squaredcos_cap_v2 beside its betas
perl -e 'my $h = "{'"'"'descr'"'"': '"'"'|u1'"'"', '"'"'fortran_order'"'"': False, '"'"'shape'"'"': (4, 1, 8, 8), }";
         $h .= " " x (64 - (10 + length($h) + 1) % 64) . "\n"; srand(4);
         print "\x93NUMPY\x01\x00", pack("v", length($h)), $h, join("", map { chr(int(rand(256))) } 1 .. 4 * 64);' > "$dir/small.npy"
ok "train a cosine UNet" "$bin" train --data "$dir/small.npy" --model "$pipes/weights-f32/config.json" \
    --schedule cosine --T 100 --steps 1 --batch 2 --out "$dir/cos" --quiet
checks=$((checks + 1))
jq -e '.beta_schedule == "squaredcos_cap_v2" and .num_train_timesteps == 100 and (.trained_betas | length) == 100' \
    "$dir/cos/checkpoint/scheduler/scheduler_config.json" > /dev/null ||
    { echo "FAIL: a cosine run's scheduler_config.json: $(cat "$dir/cos/checkpoint/scheduler/scheduler_config.json")"; fails=$((fails + 1)); }
# our checkpoint folder is a diffusers pipeline folder too: its own DDPMScheduler samples it
ok "our checkpoint as a diffusers folder" "$bin" sample --model "$dir/cos/checkpoint" \
    --scheduler-config "$dir/cos/checkpoint/scheduler/scheduler_config.json" --n 1 --grid "$dir/h.png" --json
is "its DDPMScheduler's 100 steps" .network_evaluations 100

# refused, each with one message
expect_error "diffusers folder" "$bin" sample --model "$dir/ft" --sampler scheduler --grid "$dir/x.png"
expect_error "scheduler_config.json" "$bin" sample --model "$pipes/ddim-trailing" --no-clip --grid "$dir/x.png"
expect_error "_class_name" "$bin" sample --model "$pipes/ddpm-cifar-flags" \
    --scheduler-config "$pipes/dpmsolver-2m-reference/scheduler_config.json" --grid "$dir/x.png"
expect_error "scaled_linear" "$bin" train --init-from "$pipes/ddim-trailing" --data "$dir/imgs.npy" --out "$dir/x"
expect_error "--schedule with --init-from" "$bin" train --init-from "$pipes/ddpm-cifar-flags" --schedule cosine \
    --data "$dir/imgs.npy" --out "$dir/x"
mkdir -p "$dir/sd" "$dir/empty"
echo '{"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.31.0"}' > "$dir/sd/model_index.json"
expect_error "StableDiffusionPipeline" "$bin" sample --model "$dir/sd" --grid "$dir/x.png"
expect_error "no checkpoint here" "$bin" sample --model "$dir/empty" --grid "$dir/x.png"
expect_error "neither" "$bin" sample --model "$dir/empty" --variant fp16 --grid "$dir/x.png"
mkdir -p "$dir/pickle"
cp "$pipes/weights-pickle-bin/"* "$dir/pickle/"
expect_error "pickle" "$bin" sample --model "$dir/pickle" --grid "$dir/x.png"
finish
