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
expect() { # expect DESCRIPTION AWK-CONDITION NAME=FILE:JQ-FILTER...: each a number, the condition true
    local what=$1 cond=$2 v x; shift 2
    local vars=() got=""
    checks=$((checks + 1))
    for v in "$@"; do
        local spec=${v#*=}
        x=$(jq -r "${spec#*:}" "${spec%%:*}" 2> /dev/null); x=${x%%$'\n'*}
        got="$got ${v%%=*}=$x"
        if ! [[ $x =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]]; then
            echo "FAIL: $what: ${spec#*:} of ${spec%%:*} is '$x', not a number"; fails=$((fails + 1)); return
        fi
        vars+=(-v "${v%%=*}=$x")
    done
    if ! awk "${vars[@]}" "BEGIN { exit !($cond) }"; then
        echo "FAIL: $what: $cond does not hold for$got"; fails=$((fails + 1))
    fi
}

for c in train sample eval demo bench; do
    check "$c --help" bash -c "'$bin' $c --help | grep -q usage"
done

check "train" "$bin" train --data moons --n-data 5000 --steps 300 --batch 128 --hidden 64 \
    --out "$dir/run" --checkpoint-every 100 --quiet --json > "$dir/train.json"
# the epsilon-prediction loss starts near 1 (the mean square of the noise; 0.28 after 300 steps when
# written): below 0.6 the network has learned
expect "train --json: 300 steps, none skipped, the loss below 0.6" "s == 300 && r == 300 && k == 0 && l < 0.6" \
    s="$dir/train.json:.steps" r="$dir/train.json:.steps_this_run" k="$dir/train.json:.skipped_steps" \
    l="$dir/train.json:.loss_last100"
check "checkpoint files" test -f "$dir/run/checkpoint/config.json" -a \
    -f "$dir/run/checkpoint/model.safetensors" -a -f "$dir/run/checkpoint/train_state.safetensors"
check "loss plot" test -s "$dir/run/loss.png"
check "resume to 400" "$bin" train --data moons --n-data 5000 --steps 400 --batch 128 --hidden 64 \
    --out "$dir/run" --resume --quiet --json > "$dir/resume.json"
expect "resume: to step 400, 100 steps in this run, the loss below 0.6" "s == 400 && r == 100 && l < 0.6" \
    s="$dir/resume.json:.steps" r="$dir/resume.json:.steps_this_run" l="$dir/resume.json:.loss_last100"

check "sample" "$bin" sample --model "$dir/run" --n 500 --out "$dir/s.csv" --plot "$dir/s.png" \
    --data moons --strip "$dir/strip.png" --quiet
check "samples: 500 rows" test "$(wc -l < "$dir/s.csv")" -eq 500
check "scatter and strip written" test -s "$dir/s.png" -a -s "$dir/strip.png"
check "sample npy" "$bin" sample --model "$dir/run/checkpoint" --n 100 --out "$dir/s.npy" --quiet
check "npy size" test "$(stat -c %s "$dir/s.npy")" -eq $((128 + 100 * 2 * 4))

check "eval --samples" "$bin" eval --samples "$dir/s.csv" --data moons --n 500 --json > "$dir/e.json"
# A Gaussian with the samples' mean and standard deviations is a wrong model of the moons that
# the mean and spread cannot tell apart: the trained model's samples must score closer than it
# on both distances (when written: MMD 0.082 against 0.123, SWD 0.24 against 0.31, floors 0.027
# and 0.063), and it must score above 3x the floor of two draws of the data (4.6x and 5.0x).
awk -F, '{ sx += $1; sy += $2; sxx += $1 * $1; syy += $2 * $2; n++ } END {
    mx = sx / n; my = sy / n; vx = sqrt(sxx / n - mx * mx); vy = sqrt(syy / n - my * my); srand(2)
    for (i = 0; i < n; i++) { u = 1 - rand(); v = 6.28318531 * rand(); r = sqrt(-2 * log(u))
                              printf "%.6f,%.6f\n", mx + vx * r * cos(v), my + vy * r * sin(v) } }' \
    "$dir/s.csv" > "$dir/gauss.csv"
check "eval --samples of a Gaussian" "$bin" eval --samples "$dir/gauss.csv" --data moons --n 500 \
    --json > "$dir/g.json"
expect "eval --samples: 500 points" "n == 500" n="$dir/e.json:.n"
expect "the model's samples closer to the moons than a Gaussian (MMD and SWD)" "m < gm && s < gs" \
    m="$dir/e.json:.mmd" gm="$dir/g.json:.mmd" s="$dir/e.json:.swd" gs="$dir/g.json:.swd"
expect "the Gaussian above 3x the floor (MMD and SWD)" "gm > 3 * f && gs > 3 * sf" \
    gm="$dir/g.json:.mmd" f="$dir/g.json:.mmd_floor" gs="$dir/g.json:.swd" sf="$dir/g.json:.swd_floor"
check "eval --model" "$bin" eval --model "$dir/run" --data moons --n 300 --json > "$dir/e2.json"
expect "eval --model: 300 points, closer than the Gaussian of 500" "n == 300 && m < gm" \
    n="$dir/e2.json:.n" m="$dir/e2.json:.mmd" gm="$dir/g.json:.mmd"
check "eval table" bash -c "'$bin' eval --samples '$dir/s.csv' --data moons --n 500 | grep -q 'sliced Wasserstein'"

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
