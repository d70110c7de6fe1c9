#!/usr/bin/env bash
# Data-parallel training over MPI (`mpirun -np 2 diffusion train`, issue 18): 2 ranks equal one
# process with the same batch to float rounding (the 2-D MLP, and a tiny UNet on 8x8 images),
# and reproduce themselves bit for bit; rank 0 alone writes and prints; a run saved by 2 ranks
# resumes on 1 and the other way round; a batch that does not split over the ranks, ranks given
# different flags or run from different builds each get one clear error and nothing on disk; a
# rank killed mid-run ends the job non-zero with the last checkpoint intact. Needs mpirun
# (openmpi-bin) and a build with MPI: a failure, not a skip, without them.
set -u
bin=$1
name=cli_mpi_train
source "$(dirname "$0")/shell_checks.sh"
compare="python3 $(dirname "$0")/st_compare.py"
source "$(dirname "$0")/mpi_checks.sh"
step_of() { jq -r .training.step "$1/checkpoint/config.json" 2> /dev/null; }

# ---- the 2-D MLP: 2 ranks against 1 process, and against themselves ---------------------------
mlp=(--data moons --n-data 2000 --hidden 32 --batch 32 --steps 60 --lr 3e-3 --warmup 5 --seed 3
     --threads 1 --checkpoint-every 0 --log-every 10)
check "1 process" "$bin" train "${mlp[@]}" --out "$dir/one" --quiet
check "2 ranks" mpi -np 2 "$bin" train "${mlp[@]}" --out "$dir/two"
cp "$dir/out" "$dir/two.out"
check "2 ranks: one summary line, from rank 0 ($(cat "$dir/two.out"))" \
    test "$(grep -c '^trained 60 steps' "$dir/two.out")" -eq 1
check "2 ranks: says so" grep -q "data-parallel over 2 ranks" "$dir/two.out"
check "2 ranks: one log, written once (6 lines)" test "$(wc -l < "$dir/two/log.jsonl")" -eq 6
check "2 ranks again" mpi -np 2 "$bin" train "${mlp[@]}" --out "$dir/two_again" --quiet
for f in train_state.safetensors model.safetensors; do
    check "2 ranks twice: $f bit for bit" $compare "$dir/two/checkpoint/$f" \
        "$dir/two_again/checkpoint/$f"
    # the same draws, sums in another order: 1e-7 relative a step (tests/test_trainer_parallel.c)
    check "2 ranks against 1 process: $f" $compare "$dir/two/checkpoint/$f" \
        "$dir/one/checkpoint/$f" --tol 1e-5
done

# continuous-time training (--sde ve, its sigma_max from the data) splits the same way
check "--sde ve: 1 process" "$bin" train "${mlp[@]}" --sde ve --out "$dir/ve1" --quiet
check "--sde ve: 2 ranks" mpi -np 2 "$bin" train "${mlp[@]}" --sde ve --out "$dir/ve2" --quiet
check "--sde ve: the same sigma_max" test "$(jq .sde.sigma_max "$dir/ve1/checkpoint/config.json")" \
    = "$(jq .sde.sigma_max "$dir/ve2/checkpoint/config.json")"
check "--sde ve: 2 ranks against 1 process" $compare "$dir/ve2/checkpoint/train_state.safetensors" \
    "$dir/ve1/checkpoint/train_state.safetensors" --tol 1e-5

# ---- resume with another rank count -----------------------------------------------------------
check "2 ranks, first 30 steps" mpi -np 2 "$bin" train "${mlp[@]}" --steps 30 --out "$dir/r21" --quiet
check "then 1 process to 60" "$bin" train "${mlp[@]}" --resume --out "$dir/r21" --quiet
check "1 process, first 30 steps" "$bin" train "${mlp[@]}" --steps 30 --out "$dir/r12" --quiet
check "then 2 ranks to 60" mpi -np 2 "$bin" train "${mlp[@]}" --resume --out "$dir/r12" --quiet
for run in r21 r12; do
    check "$run: at step 60 ($(step_of "$dir/$run"))" test "$(step_of "$dir/$run")" = 60
    check "$run: equals 2 ranks throughout" $compare "$dir/$run/checkpoint/train_state.safetensors" \
        "$dir/two/checkpoint/train_state.safetensors" --tol 1e-5
done

# ---- a tiny UNet on 8x8 images (--ema 0: the saved weights are the trained ones) -------------
tiny_image_npy "$dir/img.npy"
unet=(--model tiny --data "$dir/img.npy" --batch 8 --steps 12 --T 50 --lr 1e-3 --warmup 0
      --ema 0 --hflip --seed 2 --threads 1 --checkpoint-every 0 --log-every 0)
weights=checkpoint/unet/diffusion_pytorch_model.safetensors
check "UNet: 1 process" "$bin" train "${unet[@]}" --out "$dir/u1" --quiet
check "UNet: 2 ranks" mpi -np 2 "$bin" train "${unet[@]}" --out "$dir/u2" --quiet
check "UNet: 2 ranks again" mpi -np 2 "$bin" train "${unet[@]}" --out "$dir/u2b" --quiet
check "UNet: 2 ranks twice bit for bit" $compare "$dir/u2/$weights" "$dir/u2b/$weights"
# attention key biases left out: their gradient is rounding noise (tests/test_trainer.c)
check "UNet: 2 ranks against 1 process" $compare "$dir/u2/$weights" "$dir/u1/$weights" \
    --tol 1e-4 --exclude to_k.bias

# ---- bad input: one clear message, nothing on disk --------------------------------------------
expect_error "batch 31 does not split over 2 ranks" mpi -np 2 "$bin" train "${mlp[@]}" --batch 31 \
    --out "$dir/bad"
cp "$dir/err" "$dir/bad.err"
check "  ...said once ($(cat "$dir/bad.err"))" test "$(grep -c "does not split" "$dir/bad.err")" -eq 1
check "  ...and no run folder" test ! -e "$dir/bad"
expect_error "3 ranks for a batch of 2" mpi -np 3 "$bin" train "${mlp[@]}" --batch 2 --out "$dir/bad"
# resuming a run of batch 33 on 2 ranks: refused, the checkpoint untouched
check "a run of batch 33" "$bin" train "${mlp[@]}" --batch 33 --steps 5 --out "$dir/odd" --quiet
sum_before=$(cat "$dir/odd/checkpoint/"* | md5sum)
expect_error "batch 33 does not split over 2 ranks" mpi -np 2 "$bin" train "${mlp[@]}" --resume \
    --steps 10 --out "$dir/odd"
check "  ...its checkpoint untouched" test "$(cat "$dir/odd/checkpoint/"* | md5sum)" = "$sum_before"
expect_error "rank 1 was given other arguments than rank 0" \
    mpi -np 1 "$bin" train "${mlp[@]}" --out "$dir/bad" : -np 1 "$bin" train "${mlp[@]}" --hflip \
    --out "$dir/bad"
check "  ...and no run folder" test ! -e "$dir/bad"
cp "$bin" "$dir/other_build"
printf '\0' >> "$dir/other_build" # the same version, another file
expect_error "rank 1 runs another executable than rank 0" \
    mpi -np 1 "$bin" train "${mlp[@]}" --out "$dir/bad" : -np 1 "$dir/other_build" train \
    "${mlp[@]}" --out "$dir/bad"
check "  ...and no run folder" test ! -e "$dir/bad"

# ---- the weights checked the same on every rank (a debugging aid) -----------------------------
check "DIFFUSION_MPI_CHECK=10" env DIFFUSION_MPI_CHECK=10 ASAN_OPTIONS=$noleak mpirun \
    --oversubscribe -x DIFFUSION_MPI_CHECK -np 2 "$bin" train "${mlp[@]}" --out "$dir/chk" --quiet
expect_error "DIFFUSION_MPI_CHECK must be a number" env DIFFUSION_MPI_CHECK=x \
    ASAN_OPTIONS=$noleak mpirun --oversubscribe -x DIFFUSION_MPI_CHECK -np 2 "$bin" train "${mlp[@]}" --out "$dir/bad"

# ---- a rank killed mid-run: the job ends non-zero, the last checkpoint is intact --------------
ASAN_OPTIONS=$noleak mpirun --oversubscribe -np 2 "$bin" train "${mlp[@]}" --steps 100000000 --checkpoint-every 50 \
    --out "$dir/k" > "$dir/k.out" 2> "$dir/k.err" &
job=$!
for _ in $(seq 300); do [ -f "$dir/k/checkpoint/config.json" ] && break; sleep 0.1; done
sleep 0.5
victim=
for p in $(pgrep -P $job); do
    tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$p
done
check "found rank 1's process (children of mpirun: $(pgrep -P $job | tr '\n' ' '))" test -n "$victim"
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
check "a rank killed: the job exits non-zero (got $rc)" test $rc -ne 0
check "  ...saying a rank died ($(head -c 600 "$dir/k.err"))" grep -q "rank 1.*signal 9" "$dir/k.err"
s=$(step_of "$dir/k")
check "  ...a checkpoint of some steps ($s)" awk -v s="$s" 'BEGIN { exit !(s ~ /^[0-9]+$/ && s >= 50) }'
check "  ...that samples" "$bin" sample --model "$dir/k" --n 10 --out "$dir/k.csv" --quiet
check "  ...and resumes on 2 ranks" mpi -np 2 "$bin" train "${mlp[@]}" --resume \
    --steps $((s + 10)) --out "$dir/k" --quiet
check "  ...to step $((s + 10))" test "$(step_of "$dir/k")" = $((s + 10))

finish
