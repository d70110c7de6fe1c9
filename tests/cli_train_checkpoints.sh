#!/usr/bin/env bash
# Step-numbered checkpoints (docs/training.md, "Checkpoints and resuming"): DIR/checkpoint-N
# every --checkpoint-every steps and at the end, DIR/checkpoint the newest (the same files),
# --checkpoints-total-limit, --resume / --resume-from, sample --model DIR/checkpoint-N; what
# --resume may and may not change; log.jsonl without repeated steps and with each step's
# learning rate; a sibling folder (runs/a.old) never standing in for a missing checkpoint; bad
# values refused with the run folder untouched. Small MLP runs on 2-D data.
set -u
bin=$1
name=cli_train_checkpoints
source "$(dirname "$0")/shell_checks.sh"
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@"; then echo "FAIL: $what"; fails=$((fails + 1)); fi
}
mlp=(train --data moons --n-data 2000 --hidden 32 --batch 32 --seed 3 --quiet)
# the numbered checkpoints of a run folder, ascending: "100 200 250"
numbered() { ls "$1" | sed -n 's/^checkpoint-\([0-9]*\)$/\1/p' | sort -n | tr '\n' ' ' | sed 's/ $//'; }
same_files() { # same_files A B: every checkpoint file of A equals B's
    local f
    for f in config.json model.safetensors train_state.safetensors; do
        cmp -s "$1/$f" "$2/$f" || { echo "  $1/$f differs from $2/$f"; return 1; }
    done
}
# the step numbers of a log, one per line
log_steps() { jq -r .step "$1"; }
strictly_increasing() { log_steps "$1" | awk 'NR > 1 && $1 <= prev { bad = 1 } { prev = $1 } END { exit bad }'; }
snapshot() { (cd "$1" && find . -printf '%p %s %T@\n' | sort; cat log.jsonl 2> /dev/null | md5sum); }

# --- 1. numbered checkpoints: 250 steps, every 100: checkpoint-100, -200 and -250 (the end)
"$bin" "${mlp[@]}" --steps 250 --checkpoint-every 100 --log-every 10 --out "$dir/a" > /dev/null
check "checkpoint-100, -200, -250 (got '$(numbered "$dir/a")')" test "$(numbered "$dir/a")" = "100 200 250"
for n in 100 200 250; do
    check "checkpoint-$n's config.json says step $n" \
        jq -e ".training.step == $n" "$dir/a/checkpoint-$n/config.json" > /dev/null
done
check "checkpoint holds checkpoint-250's files" same_files "$dir/a/checkpoint-250" "$dir/a/checkpoint"
check "checkpoint is a folder of its own (cp -r copies files)" test -d "$dir/a/checkpoint" -a ! -L "$dir/a/checkpoint"
check "only the run's files in the folder ($(ls -A "$dir/a" | tr '\n' ' '))" \
    test "$(ls -A "$dir/a" | grep -v -x -E -e '\.lock|checkpoint(-[0-9]+)?|log\.jsonl|sessions\.jsonl|loss\.png')" = ""
# sample --model DIR/checkpoint-N: the weights of that step (step 100's samples differ from the
# end's with the same seed; the run folder and its checkpoint sample the end's)
for m in checkpoint-100 checkpoint-250 checkpoint; do
    check "sample --model DIR/$m" "$bin" sample --model "$dir/a/$m" --n 50 --seed 1 --steps 50 \
        --out "$dir/s_$m.csv" --quiet
done
"$bin" sample --model "$dir/a" --n 50 --seed 1 --steps 50 --out "$dir/s_dir.csv" --quiet > /dev/null
check "DIR/checkpoint-100 samples with its own weights" bash -c "! cmp -s '$dir/s_checkpoint-100.csv' '$dir/s_checkpoint-250.csv'"
check "DIR and DIR/checkpoint sample the newest" cmp -s "$dir/s_dir.csv" "$dir/s_checkpoint-250.csv"
check "DIR/checkpoint samples as checkpoint-250" cmp -s "$dir/s_checkpoint.csv" "$dir/s_checkpoint-250.csv"

# --checkpoints-total-limit 2: 500 steps every 100 keep 400 and 500; the ones deleted were
# complete as they went (the kill test, cli_kill_resume, runs the limit under SIGKILL)
"$bin" "${mlp[@]}" --steps 500 --checkpoint-every 100 --checkpoints-total-limit 2 \
    --out "$dir/lim" > /dev/null
check "limit 2 keeps 400 500 (got '$(numbered "$dir/lim")')" test "$(numbered "$dir/lim")" = "400 500"
check "checkpoint = checkpoint-500" same_files "$dir/lim/checkpoint-500" "$dir/lim/checkpoint"

# a time limit writes checkpoint-<the step it stopped at>
"$bin" "${mlp[@]}" --steps 1000000 --checkpoint-every 0 --time-limit 0.01 --out "$dir/t" > /dev/null
s=$(jq .training.step "$dir/t/checkpoint/config.json")
check "--time-limit: checkpoint-$s (got '$(numbered "$dir/t")')" test "$(numbered "$dir/t")" = "$s"

# --- --resume-from: a run to 300 resumed from checkpoint-100 ends bit for bit as a run never
# stopped; its log drops the lines after step 100 and goes on with no step twice
run=(--steps 300 --checkpoint-every 100 --log-every 10 --lr-scheduler cosine --warmup 20)
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/ref" > /dev/null
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/b" > /dev/null
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/b" --resume-from checkpoint-100 > /dev/null 2> "$dir/err"
check "--resume-from checkpoint-100 said so ($(cat "$dir/err"))" grep -q "resuming from $dir/b/checkpoint-100 at step 100 of 300" "$dir/err"
check "resumed from 100: checkpoint-300 = the uninterrupted run's" same_files "$dir/ref/checkpoint-300" "$dir/b/checkpoint-300"
check "resumed from 100: checkpoint = the uninterrupted run's" same_files "$dir/ref/checkpoint" "$dir/b/checkpoint"
check "log.jsonl: steps strictly increasing ($(log_steps "$dir/b/log.jsonl" | tr '\n' ' '))" strictly_increasing "$dir/b/log.jsonl"
check "log.jsonl: steps 10..300, each once" test "$(log_steps "$dir/b/log.jsonl" | tr '\n' ' ')" = "$(seq 10 10 300 | tr '\n' ' ')"
check "log.jsonl: the same losses and learning rates as the uninterrupted run's" \
    test "$(jq -c '[.step, .loss, .lr]' "$dir/b/log.jsonl")" = "$(jq -c '[.step, .loss, .lr]' "$dir/ref/log.jsonl")"
# "3", a bare step, names checkpoint-N too; --resume (the newest) after a kill-like cut: the
# log's lines past the checkpoint (written before a crash) go
head -n 25 "$dir/ref/log.jsonl" > "$dir/b/log.jsonl"   # steps 10..250, as if killed at 255
printf '{"step": 26' >> "$dir/b/log.jsonl"             # and a torn last line
rm -r "$dir/b/checkpoint-300" "$dir/b/checkpoint"
cp -r "$dir/ref/checkpoint-200" "$dir/b/checkpoint"     # the newest: step 200
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/b" --resume > /dev/null 2>&1
check "--resume from the newest (200): log steps 10..300 each once ($(log_steps "$dir/b/log.jsonl" | tr '\n' ' '))" \
    test "$(log_steps "$dir/b/log.jsonl" | tr '\n' ' ')" = "$(seq 10 10 300 | tr '\n' ' ')"
check "--resume: checkpoint-300 = the uninterrupted run's" same_files "$dir/ref/checkpoint-300" "$dir/b/checkpoint-300"

# the learning rate in each log line is the schedule's for that step (cosine, warm-up 20, 300
# steps, lr 1e-3: diffusers' formula, written here), to 1e-12 relative (libm's cos against awk's)
lr_ok() { # lr_ok LOG LR WARMUP STEPS FIRST: lines from step FIRST on
    jq -r '"\(.step) \(.lr)"' "$1" | awk -v lr="$2" -v W="$3" -v N="$4" -v first="$5" '
        $1 >= first { s = $1; p = (s - W) / (N - W > 1 ? N - W : 1)
          want = s < W ? lr * s / W : lr * ((1 + cos(3.141592653589793 * p)) / 2 > 0 ? (1 + cos(3.141592653589793 * p)) / 2 : 0)
          d = $2 - want; if (d < 0) d = -d
          if (d > 1e-12 * lr) { printf "  step %d: lr %.17g, the schedule says %.17g\n", s, $2, want; bad = 1 } }
        END { exit bad }'
}
check "log.jsonl's lr follows the cosine schedule" lr_ok "$dir/ref/log.jsonl" 1e-3 20 300 0

# --- 2. what --resume may change: --lr and --steps apply (config.json and the log record them)
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/c" > /dev/null
"$bin" "${mlp[@]}" --out "$dir/c" --resume-from checkpoint-200 --lr 5e-4 --steps 400 \
    --log-every 10 --checkpoint-every 50 --threads 1 --time-limit 60 > /dev/null 2> "$dir/err" || { echo "  $(cat "$dir/err")"; }
check "--lr 5e-4 --steps 400 on resume: config.json records them ($(jq -c '.training | {lr, steps}' "$dir/c/checkpoint/config.json"))" \
    jq -e '.training | .lr == 5e-4 and .steps == 400 and .step == 400' "$dir/c/checkpoint/config.json" > /dev/null
check "the log after step 200 follows lr 5e-4 over 400 steps" lr_ok "$dir/c/log.jsonl" 5e-4 20 400 210
check "the log up to step 200 kept lr 1e-3 over 300 steps" \
    bash -c "jq -c 'select(.step <= 200) | [.step, .lr]' '$dir/c/log.jsonl' | cmp -s - <(jq -c 'select(.step <= 200) | [.step, .lr]' '$dir/ref/log.jsonl')"
check "log steps strictly increasing after the change" strictly_increasing "$dir/c/log.jsonl"
# --checkpoint-every 50 from step 200 (300 is the first run's)
check "checkpoints of the resumed run: 100 200 250 300 350 400 (got '$(numbered "$dir/c")')" test "$(numbered "$dir/c")" = "100 200 250 300 350 400"
# sessions.jsonl: one line per start with the settings each applied, the first run's and then
# the resume's (--lr, --steps, --checkpoint-every, --threads, --time-limit changed)
lines_hold "sessions.jsonl records the first run's settings and the resume's" "$dir/c/sessions.jsonl" \
    "length == 2 and
     (.[0] | .step == 0 and .resumed_from == null and .steps == 300 and .lr == 1e-3 and
             .checkpoint_every == 100 and .log_every == 10 and .time_limit_min == null and
             .threads >= 1) and
     (.[1] | .step == 200 and .resumed_from == \"$dir/c/checkpoint-200\" and .steps == 400 and
             .lr == 5e-4 and .checkpoint_every == 50 and .log_every == 10 and
             .time_limit_min == 60 and .threads == 1 and .precision == \"fp32\")"
# the flags that fix the run: the same value is accepted (data are loaded again with it)...
check "--resume with the run's own --batch, --seed, --hidden, --lr-scheduler" \
    "$bin" "${mlp[@]}" --out "$dir/c" --resume --batch 32 --hidden 32 --lr-scheduler cosine --warmup 20 2> /dev/null
# ...another is refused naming each flag, and nothing in the run folder changes
before=$(snapshot "$dir/c")
expect_error "error: --resume cannot change these flags: --schedule cosine (the run has linear); --T 500 (the run has 1000); --prediction v (the run has epsilon); --batch 64 (the run has 32); these are fixed" \
    "$bin" "${mlp[@]}" --out "$dir/c" --resume --batch 64 --schedule cosine --T 500 --prediction v
for f in "--hidden 64" "--layers 2" "--loss vlb" "--var beta-tilde" "--grad-accum 2" \
         "--lr-scheduler linear" "--warmup 5" "--ema 0.99" "--clip 0.5" "--conditional" \
         "--t-sampling importance" "--no-normalize" "--weight-decay 0.01" "--hflip"; do
    # shellcheck disable=SC2086
    expect_error "error: --resume cannot change this flag: ${f%% *} " "$bin" "${mlp[@]}" --out "$dir/c" --resume $f
done
# another --seed draws other built-in data: refused by the data check, which names the flags
expect_error "these data differ; give the run's --data, --n-data and --seed" "$bin" "${mlp[@]}" \
    --out "$dir/c" --resume --seed 4
check "refused resumes left the run folder as it was" test "$before" = "$(snapshot "$dir/c")"
# --init-from cannot go with --resume-from
expect_error "--resume-from with --init-from" "$bin" "${mlp[@]}" --init-from "$dir/c" --resume-from checkpoint-100 --out "$dir/c"

# a missing checkpoint: one clear error listing what exists; nothing touched
before=$(snapshot "$dir/a")
expect_error "--resume-from checkpoint-700: $dir/a/checkpoint-700 is not a checkpoint (no config.json there); $dir/a has checkpoint-100, checkpoint-200, checkpoint-250" \
    "$bin" "${mlp[@]}" --out "$dir/a" --resume-from checkpoint-700
expect_error "has checkpoint-100, checkpoint-200, checkpoint-250" "$bin" "${mlp[@]}" --out "$dir/a" --resume-from 7
expect_error "not a checkpoint of the run in $dir/a" "$bin" "${mlp[@]}" --out "$dir/a" --resume-from "$dir/lim/checkpoint-400"
check "refused --resume-from left the folder as it was" test "$before" = "$(snapshot "$dir/a")"
expect_error "no checkpoint here" "$bin" "${mlp[@]}" --out "$dir/none" --resume
check "a --resume of a missing folder does not make it" test ! -e "$dir/none"

# a run folder of the single-checkpoint layout (before numbered checkpoints): --resume goes on,
# keeping its checkpoint as checkpoint-<step>, and ends as the run never stopped
"$bin" "${mlp[@]}" "${run[@]}" --steps 300 --out "$dir/old" > /dev/null
rm -r "$dir/old/checkpoint" "$dir/old/checkpoint-300"
mv "$dir/old/checkpoint-200" "$dir/old/checkpoint"; rm -r "$dir/old/checkpoint-100"
"$bin" "${mlp[@]}" "${run[@]}" --out "$dir/old" --resume > /dev/null 2>&1
check "the old layout resumed: checkpoint-200 kept, 300 written (got '$(numbered "$dir/old")')" test "$(numbered "$dir/old")" = "200 300"
check "the old layout resumed: checkpoint-300 = the uninterrupted run's" same_files "$dir/ref/checkpoint-300" "$dir/old/checkpoint-300"

# --- 3. a sibling folder never stands in for a missing checkpoint: runs/a (no checkpoint) and
# runs/a.old (a complete run); runs/b missing and runs/b.old there
mkdir -p "$dir/runs/a"
echo '{"step": 10, "loss": 1}' > "$dir/runs/a/log.jsonl"
"$bin" "${mlp[@]}" --steps 50 --out "$dir/runs/a.old" > /dev/null
cp -r "$dir/runs/a.old" "$dir/runs/b.old"
before=$(snapshot "$dir/runs")
expect_error "$dir/runs/a: no checkpoint here" "$bin" sample --model "$dir/runs/a" --out "$dir/x.csv"
expect_error "$dir/runs/a: no checkpoint here" "$bin" "${mlp[@]}" --steps 100 --out "$dir/runs/a" --resume
expect_error "$dir/runs/b: no checkpoint here" "$bin" sample --model "$dir/runs/b" --out "$dir/x.csv"
expect_error "$dir/runs/b: no checkpoint here" "$bin" "${mlp[@]}" --steps 100 --out "$dir/runs/b" --resume
expect_error "$dir/runs/a/checkpoint: no checkpoint here" "$bin" sample --model "$dir/runs/a/checkpoint" --out "$dir/x.csv"
check "runs/ as it was (runs/b not made, runs/a.old untouched)" test "$before" = "$(snapshot "$dir/runs")"

# --- 4. previews: DIR/previews/step-N.png every N steps from the EMA weights, from the same
# noise each time: a run resumed from checkpoint-100 draws step 200's and 300's bytes for bytes
# as the run never stopped; previews change nothing in the training
pv=(--steps 300 --checkpoint-every 100 --log-every 0)
"$bin" "${mlp[@]}" "${pv[@]}" --preview-every 100 --preview-steps 20 --out "$dir/pv" > /dev/null
"$bin" "${mlp[@]}" "${pv[@]}" --out "$dir/pv0" > /dev/null
check "previews step-100, -200, -300 ($(ls "$dir/pv/previews" 2> /dev/null | tr '\n' ' '))" \
    test "$(ls "$dir/pv/previews" 2> /dev/null | tr '\n' ' ')" = "step-100.png step-200.png step-300.png "
check "previews leave the training as it was (checkpoint-300 = a run without previews)" \
    same_files "$dir/pv0/checkpoint-300" "$dir/pv/checkpoint-300"
check "the preview of step 100 differs from step 300's" bash -c "! cmp -s '$dir/pv/previews/step-100.png' '$dir/pv/previews/step-300.png'"
cp -r "$dir/pv/previews" "$dir/pv_first"
"$bin" "${mlp[@]}" "${pv[@]}" --preview-every 100 --preview-steps 20 --out "$dir/pv" --resume-from checkpoint-100 2> /dev/null > /dev/null
for n in 200 300; do
    check "the resumed run's preview of step $n = the first run's (the same noise)" \
        cmp -s "$dir/pv_first/step-$n.png" "$dir/pv/previews/step-$n.png"
done
# an image run: a grid of 64 samples, 8 x 8 cells of 28 x 28 pixels at scale 2 with a 2-pixel
# border: 8 x 56 + 9 x 2 = 466 pixels square
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", $3 * 256 + $4, $7 * 256 + $8 }'; }
if [ -d /usr/share/datasets/fashion-mnist ]; then
    "$bin" train --data fashion-mnist-test --model "$(dirname "$0")/sanitizers/small-unet-28.json" \
        --batch 4 --steps 2 --preview-every 2 --preview-steps 3 --log-every 0 --quiet \
        --out "$dir/img" > /dev/null
    check "image preview: a 466x466 grid (got $(png_size "$dir/img/previews/step-2.png" 2> /dev/null))" \
        test "$(png_size "$dir/img/previews/step-2.png" 2> /dev/null)" = 466x466
else
    check "/usr/share/datasets/fashion-mnist is missing: install dataset-fashion-mnist" false
fi
# refused before the run folder is made
printf '0.5\n1.5\n-0.3\n2.0\n0.1\n' > "$dir/one.csv"
for bad in "--preview-steps goes with --preview-every|--preview-steps 10" \
           "--preview-steps must be in 1..100000 (got 0)|--preview-every 10 --preview-steps 0" \
           "--preview-steps 2000 is more than the schedule's T = 1000|--preview-every 10 --preview-steps 2000" \
           "a learned schedule is sampled from a saved checkpoint|--preview-every 10 --schedule learned --loss vdm-continuous" \
           "these data have 1 dimension|--preview-every 10 --data $dir/one.csv"; do
    # shellcheck disable=SC2086
    expect_error "^error: .*${bad%%|*}" "$bin" "${mlp[@]}" --steps 20 ${bad#*|} --out "$dir/pnew"
    check "${bad#*|}: no run folder made" test ! -e "$dir/pnew"
done

# --- 5. bad values: one "error:" line, a non-zero exit, no run folder made, an existing one
# untouched
refused() { # refused NEEDLE ARGS...
    local needle=$1; shift
    expect_error "$needle" "$bin" "${mlp[@]}" "$@" --out "$dir/new"
    check "$*: one line ($(cat "$dir/err"))" test "$(wc -l < "$dir/err")" -eq 1
    check "$*: no run folder made" test ! -e "$dir/new"
    local before
    before=$(snapshot "$dir/a")
    "$bin" "${mlp[@]}" "$@" --out "$dir/a" > /dev/null 2>&1
    check "$*: refused for an existing run folder (exit $?)" test $? -ne 0
    check "$*: the existing run folder untouched" test "$before" = "$(snapshot "$dir/a")"
}
refused "--checkpoints-total-limit must be at least 1 (got 0" --steps 20 --checkpoints-total-limit 0
refused "--checkpoints-total-limit: '-2' is not a non-negative integer" --steps 20 --checkpoints-total-limit -2
refused "--time-limit must be more than 0" --steps 20 --time-limit 0
refused "gradient accumulation 3 does not divide the batch 32" --steps 20 --grad-accum 3
refused "decays over steps - warmup = 20 - 20 = 0 steps" --steps 20 --warmup 20 --lr-scheduler linear
refused "= -5 steps" --steps 20 --warmup 25 --lr-scheduler cosine
refused "--steps: '-3' is not a non-negative integer" --steps -3
finish
