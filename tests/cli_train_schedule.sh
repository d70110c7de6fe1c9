#!/usr/bin/env bash
# diffusion train's learning-rate schedule and gradient accumulation flags (docs/training.md):
# bad values refused with one message, a non-zero exit and the run folder untouched; the
# schedule and accumulation recorded in config.json; a run stopped part-way through a cosine
# decay with accumulation and resumed ends with the same bytes as a run never stopped.
set -u
bin=$1
dir=$(mktemp -d /tmp/dm_lrsched_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

small=(train --data moons --n-data 2000 --batch 64 --hidden 32 --layers 2 --seed 3 --log-every 0
       --quiet)

# refused NEEDLE ARGS...: the command fails, stderr holds NEEDLE, a new run folder is not made
# and an existing one keeps exactly its files
refused() {
    local needle=$1
    shift
    local rc=0
    "$bin" "${small[@]}" "$@" --out "$dir/new" > "$dir/out" 2> "$dir/err" || rc=$?
    [ $rc -ne 0 ] || fail "accepted: $*"
    grep -qF -- "$needle" "$dir/err" || fail "$*: the message '$(cat "$dir/err")' lacks '$needle'"
    [ "$(wc -l < "$dir/err")" -eq 1 ] || fail "$*: more than one line: $(cat "$dir/err")"
    [ ! -e "$dir/new" ] || { fail "$*: the run folder was made"; rm -rf "$dir/new"; }
    mkdir -p "$dir/kept"
    echo keep > "$dir/kept/note"
    local before after
    before=$(ls -la --time-style=full-iso "$dir/kept")
    "$bin" "${small[@]}" "$@" --out "$dir/kept" > /dev/null 2>&1 && fail "accepted: $*"
    after=$(ls -la --time-style=full-iso "$dir/kept")
    [ "$before" = "$after" ] || fail "$*: an existing run folder was touched"
}

refused "unknown lr scheduler 'cosine_annealing'" --lr-scheduler cosine_annealing --steps 20
refused "not supported" --lr-scheduler piecewise_constant --steps 20
refused "lr scheduler cosine decays over steps - warmup = 50 - 50 = 0 steps" \
    --lr-scheduler cosine --steps 50 --warmup 50
refused "= -10 steps" --lr-scheduler linear --steps 40 --warmup 50
refused "--lr-num-cycles applies to --lr-scheduler cosine_with_restarts only" \
    --lr-scheduler cosine --lr-num-cycles 2 --steps 20 --warmup 2
refused "--lr-power applies to --lr-scheduler polynomial only" --lr-power 2 --steps 20
refused "--lr-end applies to --lr-scheduler polynomial only" --lr-scheduler linear --lr-end 0 \
    --steps 20 --warmup 2
refused "constant has no warm-up" --lr-scheduler constant --warmup 10 --steps 20
refused "num_cycles must be an integer >= 1 (got 0)" --lr-scheduler cosine_with_restarts \
    --lr-num-cycles 0 --steps 20 --warmup 2
refused "lr power must be in (0, 1e6] (got -1)" --lr-scheduler polynomial --lr-power -1 \
    --steps 20 --warmup 2
refused "lr_end (0.01) must be smaller than the initial lr (0.001)" --lr-scheduler polynomial \
    --lr-end 0.01 --steps 20 --warmup 2
refused "gradient accumulation 3 does not divide the batch 64" --grad-accum 3 --steps 20
refused "gradient accumulation must be >= 1 (got 0)" --grad-accum 0 --steps 20
refused "not supported with loss vdm-continuous" --grad-accum 2 --loss vdm-continuous \
    --schedule logsnr --steps 20

# recorded: diffusers' key names in config.json's "training"
"$bin" "${small[@]}" --steps 30 --lr-scheduler cosine_with_restarts --lr-num-cycles 2 \
    --warmup 3 --grad-accum 4 --out "$dir/rec" > /dev/null 2> "$dir/err" ||
    { fail "a cosine_with_restarts run:"; cat "$dir/err"; }
jq -e '.training | .lr_scheduler == "cosine_with_restarts" and .lr_num_cycles == 2
       and .warmup == 3 and .gradient_accumulation_steps == 4 and .batch == 64
       and .lr_power == 1 and .lr_end == 1e-7' \
    "$dir/rec/checkpoint/config.json" > /dev/null ||
    fail "config.json's training section: $(jq -c .training "$dir/rec/checkpoint/config.json")"
"$bin" "${small[@]}" --steps 30 --lr-scheduler constant --out "$dir/const" > /dev/null 2>&1 ||
    fail "a constant run"
jq -e '.training | .lr_scheduler == "constant" and .warmup == 0
       and .gradient_accumulation_steps == 1' "$dir/const/checkpoint/config.json" > /dev/null ||
    fail "constant: $(jq -c .training "$dir/const/checkpoint/config.json")"
"$bin" "${small[@]}" --steps 30 --lr-scheduler polynomial --lr-power 2 --lr-end 1e-5 \
    --warmup 3 --out "$dir/poly" > /dev/null 2>&1 || fail "a polynomial run"
jq -e '.training | .lr_scheduler == "polynomial" and .lr_power == 2 and .lr_end == 1e-5' \
    "$dir/poly/checkpoint/config.json" > /dev/null ||
    fail "polynomial: $(jq -c .training "$dir/poly/checkpoint/config.json")"

# resumed mid-decay: a NaN injected at step 17 stops the run with the checkpoint of step 10
# on disk; --resume continues from it to step 40 with the recorded schedule
run=(--steps 40 --lr-scheduler cosine --warmup 5 --grad-accum 4 --checkpoint-every 10)
"$bin" "${small[@]}" "${run[@]}" --out "$dir/ref" > /dev/null 2>&1 || fail "the uninterrupted run"
"$bin" "${small[@]}" "${run[@]}" --inject-nan-step 17 --out "$dir/cut" > /dev/null 2>&1 &&
    fail "the run with a NaN at step 17 did not stop"
jq -e '.training.step == 10' "$dir/cut/checkpoint/config.json" > /dev/null ||
    fail "the stopped run's checkpoint is not step 10"
"$bin" train --data moons --n-data 2000 --seed 3 --log-every 0 --quiet --resume \
    --out "$dir/cut" > /dev/null 2> "$dir/err" || { fail "the resume:"; cat "$dir/err"; }
for f in model.safetensors train_state.safetensors config.json; do
    cmp -s "$dir/ref/checkpoint/$f" "$dir/cut/checkpoint/$f" ||
        fail "$f of the resumed run differs from the uninterrupted run's"
done

[ $fails -eq 0 ] && echo "train schedule flags: all checks passed"
exit $((fails > 0))
