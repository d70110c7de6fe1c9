#!/usr/bin/env bash
# The command line end to end: train, resume, sample, eval with --json, and the files they write.
set -u
bin=$1
dir=$(mktemp -d /tmp/dm_cli_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0; checks=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@"; then echo "FAIL: $what"; fails=$((fails + 1)); fi
}

for c in train sample eval demo bench; do
    check "$c --help" bash -c "'$bin' $c --help | grep -q usage"
done

check "train" "$bin" train --data moons --n-data 5000 --steps 300 --batch 128 --hidden 64 \
    --out "$dir/run" --checkpoint-every 100 --quiet --json > "$dir/train.json"
check "train --json has steps" grep -q '"steps":300' "$dir/train.json"
check "checkpoint files" test -f "$dir/run/checkpoint/config.json" -a \
    -f "$dir/run/checkpoint/model.safetensors" -a -f "$dir/run/checkpoint/train_state.safetensors"
check "loss plot" test -s "$dir/run/loss.png"
check "resume to 400" "$bin" train --data moons --n-data 5000 --steps 400 --batch 128 --hidden 64 \
    --out "$dir/run" --resume --quiet --json > "$dir/resume.json"
check "resume ran 100 steps" grep -q '"steps_this_run":100' "$dir/resume.json"

check "sample" "$bin" sample --model "$dir/run" --n 500 --out "$dir/s.csv" --plot "$dir/s.png" \
    --data moons --strip "$dir/strip.png" --quiet
check "samples: 500 rows" test "$(wc -l < "$dir/s.csv")" -eq 500
check "scatter and strip written" test -s "$dir/s.png" -a -s "$dir/strip.png"
check "sample npy" "$bin" sample --model "$dir/run/checkpoint" --n 100 --out "$dir/s.npy" --quiet
check "npy size" test "$(stat -c %s "$dir/s.npy")" -eq $((128 + 100 * 2 * 4))

check "eval --samples" "$bin" eval --samples "$dir/s.csv" --data moons --n 500 --json > "$dir/e.json"
check "eval json fields" grep -q '"mmd_floor"' "$dir/e.json"
check "eval --model" "$bin" eval --model "$dir/run" --data moons --n 300 > "$dir/e.txt"
check "eval table" grep -q "sliced Wasserstein" "$dir/e.txt"

# same seed, same samples
"$bin" sample --model "$dir/run" --n 50 --seed 3 --out "$dir/a.csv" --quiet
"$bin" sample --model "$dir/run" --n 50 --seed 3 --out "$dir/b.csv" --quiet
check "sampling reproducible" cmp -s "$dir/a.csv" "$dir/b.csv"

# user data from a CSV file, 3-D
awk 'BEGIN { srand(1); print "x,y,z"; for (i = 0; i < 2000; i++) print rand(), 2*rand(), rand()-5 }' > "$dir/d3.csv"
check "train on 3-D csv" "$bin" train --data "$dir/d3.csv" --steps 50 --batch 64 --hidden 32 \
    --out "$dir/run3" --quiet
check "sample 3-D" "$bin" sample --model "$dir/run3" --n 10 --out "$dir/s3.csv" --quiet
check "3 columns" test "$(head -1 "$dir/s3.csv" | tr ',' '\n' | wc -l)" -eq 3

check "no temporary files left" test -z "$(find "$dir" -name '*.tmp*')"
echo "$((checks - fails)) passed, $fails failed"
[ $fails -eq 0 ]
