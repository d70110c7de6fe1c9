#!/usr/bin/env bash
# `mpirun -np N diffusion sample` (issue 18): the ranks split the pipeline's chunks of samples
# (2048 points, 256 images; chunk k from stream seed's k) and rank 0 gathers them, so the files
# equal one process's byte for byte whatever N: points CSV and NPY of an MLP (ancestral and pc,
# whose step size averages over its batch), and the grid, NPY and PNGs of a tiny UNet; the SDE
# samplers (euler-maruyama, adaptive ode-rk45) on both; more ranks than chunks; rank 0 alone writes and prints; a rank that cannot load the model, or loads
# another, stops the job with one message. `eval --metric mmd --model` splits its sampling the
# same way: the report of one process; its other metrics, and other commands, stay one process.
# Needs mpirun (openmpi-bin) and a build with MPI: a failure, not a skip, without them.
set -u
bin=$(realpath "$1") # --wdir below: not relative to here
name=cli_mpi_sample
source "$(dirname "$0")/shell_checks.sh"
source "$(dirname "$0")/mpi_checks.sh"
same() { # same DESCRIPTION FILE1 FILE2: byte for byte
    check "$1" cmp "$2" "$3"
}

# ---- an MLP on moons: 5000 points are 3 chunks (2048, 2048, 904) -----------------------------
check "train an MLP" "$bin" train --data moons --n-data 2000 --hidden 32 --batch 64 --steps 300 \
    --lr 3e-3 --seed 3 --threads 1 --checkpoint-every 0 --log-every 0 --out "$dir/m" --quiet
pts=(--model "$dir/m" --n 5000 --steps 100 --seed 7 --threads 1)
check "1 process" "$bin" sample "${pts[@]}" --out "$dir/one.csv" --quiet
check "1 process: 5000 rows" test "$(wc -l < "$dir/one.csv")" -ge 5000
check "2 ranks" mpi -np 2 "$bin" sample "${pts[@]}" --out "$dir/two.csv"
cp "$dir/out" "$dir/two.out"
check "2 ranks: one summary line, from rank 0 ($(cat "$dir/two.out"))" \
    test "$(grep -c '^drew 5000 samples.* over 2 MPI ranks' "$dir/two.out")" -eq 1
same "2 ranks: the CSV of 1 process" "$dir/one.csv" "$dir/two.csv"
check "3 ranks" mpi -np 3 "$bin" sample "${pts[@]}" --out "$dir/three.csv" --quiet
same "3 ranks: the CSV of 1 process" "$dir/one.csv" "$dir/three.csv"
check "4 ranks for 3 chunks" mpi -np 4 "$bin" sample "${pts[@]}" --out "$dir/four.csv" --quiet
same "4 ranks: the CSV of 1 process" "$dir/one.csv" "$dir/four.csv"
check "2 ranks, 10 points (one chunk)" mpi -np 2 "$bin" sample "${pts[@]}" --n 10 \
    --out "$dir/ten2.csv" --quiet
check "1 process, 10 points" "$bin" sample "${pts[@]}" --n 10 --out "$dir/ten1.csv" --quiet
same "10 points: 2 ranks as 1 process" "$dir/ten1.csv" "$dir/ten2.csv"
# pc: the corrector's step averages norms over its batch, so a chunk must be drawn whole
pc=(--sampler pc --steps 30 --n 4500 --seed 9)
check "pc: 1 process" "$bin" sample "${pts[@]}" "${pc[@]}" --out "$dir/pc1.npy" --quiet
check "pc: 2 ranks" mpi -np 2 "$bin" sample "${pts[@]}" "${pc[@]}" --out "$dir/pc2.npy" --quiet
same "pc: 2 ranks' NPY as 1 process's" "$dir/pc1.npy" "$dir/pc2.npy"
# threads do not change the bits either (each row's arithmetic is the same on any thread)
check "1 process, 2 threads" "$bin" sample "${pts[@]}" --threads 2 --out "$dir/t2.csv" --quiet
same "2 threads as 1" "$dir/one.csv" "$dir/t2.csv"
check "2 ranks of 2 threads" mpi -np 2 "$bin" sample "${pts[@]}" --threads 2 \
    --out "$dir/two_t2.csv" --quiet
same "2 ranks of 2 threads as 1 process of 1" "$dir/one.csv" "$dir/two_t2.csv"

# ---- rank 0 alone writes: each rank in its own folder, the same relative paths ---------------
mkdir -p "$dir/w0" "$dir/w1"
check "2 ranks, own folders" mpi -np 1 --wdir "$dir/w0" "$bin" sample "${pts[@]}" --out s.csv \
    --plot s.png --strip strip.png --quiet : -np 1 --wdir "$dir/w1" "$bin" sample "${pts[@]}" \
    --out s.csv --plot s.png --strip strip.png --quiet
same "  ...rank 0 wrote the CSV of 1 process" "$dir/one.csv" "$dir/w0/s.csv"
check "  ...and its plot and strip" test -s "$dir/w0/s.png" -a -s "$dir/w0/strip.png"
check "  ...rank 1 wrote nothing ($(ls "$dir/w1"))" test -z "$(ls -A "$dir/w1")"

# ---- a tiny UNet on 8x8 images: 300 images are 2 chunks (256, 44) ------------------------------
tiny_image_npy "$dir/img.npy"
check "train a tiny UNet" "$bin" train --model tiny --data "$dir/img.npy" --batch 8 --steps 12 \
    --T 50 --lr 1e-3 --warmup 0 --seed 2 --threads 1 --checkpoint-every 0 --log-every 0 \
    --out "$dir/u" --quiet
img=(--model "$dir/u" --n 300 --steps 5 --seed 4 --threads 1 --quiet)
check "UNet: 1 process" "$bin" sample "${img[@]}" --grid "$dir/g1.png" --npy "$dir/i1.npy" \
    --each "$dir/e1" --strip "$dir/s1.png"
check "UNet: 2 ranks" mpi -np 2 "$bin" sample "${img[@]}" --grid "$dir/g2.png" \
    --npy "$dir/i2.npy" --each "$dir/e2" --strip "$dir/s2.png"
same "UNet: 2 ranks' NPY as 1 process's" "$dir/i1.npy" "$dir/i2.npy"
same "UNet: the grid" "$dir/g1.png" "$dir/g2.png"
same "UNet: the strip" "$dir/s1.png" "$dir/s2.png"
check "UNet: every PNG" diff -r "$dir/e1" "$dir/e2"
check "UNet: 300 PNGs" test "$(ls "$dir/e2" | wc -l)" -eq 300
check "UNet: 2 ranks of 2 threads" mpi -np 2 "$bin" sample "${img[@]}" --threads 2 \
    --grid "$dir/g3.png" --npy "$dir/i3.npy"
same "UNet: 2 ranks of 2 threads as 1 process of 1" "$dir/i1.npy" "$dir/i3.npy"

# ---- --sde-sampler: dm_pipeline_sde_sample draws the same chunks from the same streams ---------
# (RK45's steps adapt to each chunk, so its counts are the chunks' sums on any number of ranks)
sde_pts=(--model "$dir/m" --n 5000 --seed 5 --threads 1 --json)
for s in euler-maruyama ode-rk45; do
    check "sde $s: 1 process" "$bin" sample "${sde_pts[@]}" --sde-sampler $s --steps 20 \
        --out "$dir/sde1_$s.csv"
    cp "$dir/out" "$dir/sde1_$s.json"
    check "sde $s: 2 ranks" mpi -np 2 "$bin" sample "${sde_pts[@]}" --sde-sampler $s --steps 20 \
        --out "$dir/sde2_$s.csv"
    cp "$dir/out" "$dir/sde2_$s.json"
    same "sde $s: 2 ranks' CSV as 1 process's" "$dir/sde1_$s.csv" "$dir/sde2_$s.csv"
    check "sde $s: one report, with 1 process's network evaluations ($(cat "$dir/sde2_$s.json"))" \
        test "$(grep -c . "$dir/sde2_$s.json")" -eq 1 -a \
        "$(jq .network_evaluations "$dir/sde1_$s.json")" = \
        "$(jq .network_evaluations "$dir/sde2_$s.json")"
done
sde_img=(--model "$dir/u" --n 300 --seed 4 --threads 1 --quiet --sde-sampler euler-maruyama
         --steps 3)
check "UNet sde: 1 process" "$bin" sample "${sde_img[@]}" --grid "$dir/sg1.png" --npy "$dir/si1.npy"
check "UNet sde: 3 ranks" mpi -np 3 "$bin" sample "${sde_img[@]}" --grid "$dir/sg3.png" \
    --npy "$dir/si3.npy"
same "UNet sde: 3 ranks' NPY as 1 process's" "$dir/si1.npy" "$dir/si3.npy"
same "UNet sde: the grid" "$dir/sg1.png" "$dir/sg3.png"

# ---- failures: one message, nothing written ----------------------------------------------------
mkdir -p "$dir/f0" "$dir/f1"
cp -r "$dir/m" "$dir/f0/model"
expect_error "rank 1: error: .*model" mpi -np 1 --wdir "$dir/f0" "$bin" sample --model model \
    --n 10 --out s.csv : -np 1 --wdir "$dir/f1" "$bin" sample --model model --n 10 --out s.csv
cp "$dir/err" "$dir/f.err"
check "  ...and rank 0 says the job stopped ($(cat "$dir/f.err"))" \
    grep -q "1 of the job's 2 ranks could not start sampling" "$dir/f.err"
check "  ...nothing written" test ! -e "$dir/f0/s.csv"
check "another model" "$bin" train --data moons --n-data 2000 --hidden 32 --batch 64 --steps 30 \
    --seed 4 --threads 1 --checkpoint-every 0 --log-every 0 --out "$dir/f1/model" --quiet
expect_error "rank 1 loaded another model than rank 0" mpi -np 1 --wdir "$dir/f0" "$bin" sample \
    --model model --n 10 --out s.csv : -np 1 --wdir "$dir/f1" "$bin" sample --model model \
    --n 10 --out s.csv
check "  ...nothing written" test ! -e "$dir/f0/s.csv" -a ! -e "$dir/f1/s.csv"
# sampling itself fails on every rank (both chunks overflow): one message, from rank 0
expect_error "sampling produced NaN or Inf" mpi -np 2 "$bin" sample "${pts[@]}" --n 3000 \
    --sampler langevin --langevin-delta 1e30 --steps 5 --out "$dir/nan.csv"
check "  ...said once" test "$(grep -c "NaN or Inf" "$dir/err")" -eq 1
check "  ...nothing written" test ! -e "$dir/nan.csv"

# ---- eval --metric mmd --model: the ranks draw, rank 0 judges -------------------------------
ev=(--metric mmd --model "$dir/m" --data moons --n 5000 --seed 7 --threads 1 --json)
check "eval: 1 process" "$bin" eval "${ev[@]}"
cp "$dir/out" "$dir/ev1.json"
holds "eval: a report" "$dir/ev1.json" '.n == 5000 and (.mmd | finite) and (.swd | finite)'
check "eval: 2 ranks" mpi -np 2 "$bin" eval "${ev[@]}"
cp "$dir/out" "$dir/ev2.json"
same "eval: 2 ranks report what 1 process does" "$dir/ev1.json" "$dir/ev2.json"
check "eval: 3 ranks" mpi -np 3 "$bin" eval "${ev[@]}"
cp "$dir/out" "$dir/ev3.json"
same "eval: 3 ranks too" "$dir/ev1.json" "$dir/ev3.json"
expect_error "eval splits only the drawing of --model's samples for --metric mmd" \
    mpi -np 2 "$bin" eval --metric nll --model "$dir/m" --n 10
check "  ...said once" test "$(grep -c "splits only" "$dir/err")" -eq 1
expect_error "eval splits only" mpi -np 2 "$bin" eval --samples "$dir/one.csv" --n 10
expect_error "only 'diffusion train', 'diffusion sample' and 'diffusion eval --metric mmd --model' run over MPI" \
    mpi -np 2 "$bin" demo --out "$dir/demo"
check "  ...and no demo folder" test ! -e "$dir/demo"

finish
