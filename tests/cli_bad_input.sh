#!/usr/bin/env bash
# Bad input: each gets one clear message on stderr, a non-zero exit, and nothing half-written.
set -u
bin=$1
name=cli_bad
source "$(dirname "$0")/shell_checks.sh"

expect_error "unknown command" "$bin" frobnicate
expect_error "unknown option '--stepz'" "$bin" train --stepz 10
expect_error "is not a non-negative integer" "$bin" train --steps ten
# negative counts and periods, and more threads than OpenMP should start, are refused
tiny=(--data moons --n-data 200 --steps 2 --batch 8 --hidden 8 --quiet) # quick if accepted
expect_error "'-1' is not a non-negative integer" "$bin" train "${tiny[@]}" --checkpoint-every -1 --out "$dir/x"
expect_error "'-5' is not an integer in 0..1024" "$bin" train "${tiny[@]}" --threads -5 --out "$dir/x"
expect_error "'100000' is not an integer in 0..1024" "$bin" sample --model x --threads 100000
expect_error "'-1' is not a non-negative integer" "$bin" train "${tiny[@]}" --log-every -1 --out "$dir/x"
expect_error "'-2' is not a non-negative integer" "$bin" sample --model x --corrector-steps -2
expect_error "'-3' is not a non-negative integer" "$bin" eval --model x --t-draws -3
expect_error "'-1e3' is not a non-negative integer" "$bin" train --steps -1e3 --hidden 8 --quiet --out "$dir/x"
checks=$((checks + 1))
if [ -e "$dir/x" ]; then echo "FAIL: a refused flag left $dir/x"; fails=$((fails + 1)); fi
expect_error "needs a value" "$bin" train --steps
expect_error "not a built-in set" "$bin" train --data nosuchset --out "$dir/x"
expect_error "nope.csv" "$bin" train --data "$dir/nope.csv" --out "$dir/x"
printf 'x,y\n1,2\n3,4\n5,abc\n' > "$dir/bad.csv"
expect_error ":4" "$bin" train --data "$dir/bad.csv" --out "$dir/x"
printf '1,2\n3,nan\n' > "$dir/nan.csv"
expect_error "NaN" "$bin" train --data "$dir/nan.csv" --out "$dir/x"
printf '1,2\n3,4,5\n' > "$dir/ragged.csv"
expect_error "columns" "$bin" train --data "$dir/ragged.csv" --out "$dir/x"
expect_error "schedule" "$bin" train --schedule quadratic --out "$dir/x"
expect_error "beta" "$bin" train --beta-end 1.5 --steps 1 --out "$dir/x"
expect_error "batch" "$bin" train --batch 0 --out "$dir/x"
expect_error "no checkpoint" "$bin" sample --model "$dir/none"
expect_error "--model DIR is required" "$bin" sample
expect_error "beta, beta-tilde, learned" "$bin" sample --model x --var huge
expect_error "exactly one" "$bin" eval
expect_error "--precision is fp32 or bf16" "$bin" train --precision fp16 --out "$dir/x"
expect_error "--conv is auto or im2col" "$bin" bench unet --conv winograd

# ANSI escapes in a file name, in a file's contents and in an argument reach the terminal as
# \x1b text, never as the escape byte (which could recolour, clear or retitle it)
esc=$'\e'
no_raw_escape() { # no_raw_escape WHAT: the last command's stderr holds \x1b text and no ESC byte
    checks=$((checks + 1))
    if grep -q "$esc" "$dir/err" || ! grep -qF '\x1b' "$dir/err"; then
        echo "FAIL: $1: stderr: $(cat -v "$dir/err")"; fails=$((fails + 1))
    fi
}
expect_error 'x1b\[2Jmissing.csv: cannot open' "$bin" train --data "$dir/${esc}[2Jmissing.csv" --out "$dir/x"
no_raw_escape "a file name"
printf 'x,y\n1,2\n3,%s[31mab\n' "$esc" > "$dir/esc.csv"
expect_error "esc.csv:3: '.x1b\[31mab' is not a number" "$bin" train --data "$dir/esc.csv" --out "$dir/x"
no_raw_escape "a CSV field"
expect_error "unknown option '--st.x1b\[1meps'" "$bin" train "--st${esc}[1meps"
no_raw_escape "an option"
expect_error "'.x1b\]0;title.x07' is not a non-negative integer" "$bin" train --steps "${esc}]0;title"$'\a'
no_raw_escape "an option's value"

# a real checkpoint, then damaged copies of it
"$bin" train --data moons --n-data 2000 --steps 5 --batch 32 --hidden 16 --out "$dir/run" --quiet \
    > /dev/null || { echo "FAIL: could not train the fixture run"; exit 1; }
ck="$dir/run/checkpoint"
cp -r "$ck" "$dir/trunc"
head -c 500 "$ck/model.safetensors" > "$dir/trunc/model.safetensors"
expect_error "model.safetensors" "$bin" sample --model "$dir/trunc" --out "$dir/t.csv"
cp -r "$ck" "$dir/arch"
sed -i 's/"hidden":[[:space:]]*16/"hidden": 32/' "$dir/arch/config.json"
expect_error "holds 2946 parameters (10 tensors), the model its config describes has 7426" \
    "$bin" sample --model "$dir/arch" --out "$dir/t.csv"
# configs describing models far larger than their weights (conditioning.num_classes 999999:
# 16 M more parameters; hidden 4000: 48 M) are refused before the model is allocated
cp -r "$ck" "$dir/wide"
sed -i 's/"hidden":[[:space:]]*16/"hidden": 4000/' "$dir/wide/config.json"
cp -r "$ck" "$dir/classes"
sed -i '1s/^{/{"conditioning": {"num_classes": 999999, "p_uncond": 0.1},/' "$dir/classes/config.json"
# (16 M = 1,000,000 embeddings (999999 + the null label) x hidden 16, on top of the 2946)
expect_error "holds 2946 parameters (10 tensors), the model its config describes has 16002946: refused before creating the model" \
    "$bin" sample --model "$dir/classes" --n 5 --out "$dir/t.csv"
expect_error "holds 2946 parameters (10 tensors), the model its config describes has 48544002: refused before creating the model" \
    "$bin" sample --model "$dir/wide" --n 5 --out "$dir/t.csv"
cp -r "$ck" "$dir/badjson"
echo '{"format": "diffusion.c checkpoint", "model": ' > "$dir/badjson/config.json"
expect_error "invalid JSON" "$bin" sample --model "$dir/badjson" --out "$dir/t.csv"
checks=$((checks + 1))
if [ -e "$dir/t.csv" ]; then echo "FAIL: a failed sample left t.csv"; fails=$((fails + 1)); fi
# a normalisation that de-normalises to Inf (std 1e300, mean 1e308) or collapses every sample
# onto the mean (std 0): refused on load, not written out as Inf or identical samples
for spoil in 'std:1e300, 1' 'mean:1e308, 0' 'std:0, 1' 'std:-1, 1'; do
    key=${spoil%%:*} values=${spoil#*:}
    rm -rf "$dir/norm"; cp -r "$ck" "$dir/norm"
    sed -i -E "s/(\"$key\":[[:space:]]*)\[[^]]*\]/\1[$values]/" "$dir/norm/config.json"
    expect_error "normalization.$key\[0\]\" = .* is outside" \
        "$bin" sample --model "$dir/norm" --n 5 --out "$dir/t.csv"
done
checks=$((checks + 1))
if [ -e "$dir/t.csv" ]; then echo "FAIL: a refused normalisation left t.csv"; fails=$((fails + 1)); fi

# a FIFO named model.safetensors (sample blocked on it forever): refused, within 30 s
cp -r "$ck" "$dir/fifo"
rm "$dir/fifo/model.safetensors"
mkfifo "$dir/fifo/model.safetensors"
expect_error "model.safetensors: not a regular file (a FIFO)" \
    timeout 30 "$bin" sample --model "$dir/fifo" --n 5 --out "$dir/t.csv"

# resuming with other data is refused; the checkpoint stays as it was
before=$(md5sum "$ck/model.safetensors")
expect_error "data" "$bin" train --data swissroll --n-data 2000 --steps 10 --out "$dir/run" --resume
checks=$((checks + 1))
[ "$before" = "$(md5sum "$ck/model.safetensors")" ] || { echo "FAIL: checkpoint changed"; fails=$((fails + 1)); }

# eval's lists are never cut short: a 601-character step count (zero-padded 5) was truncated to
# 511 zeros; 40 items were more than the table holds; an empty item was skipped
long_steps="$(printf '0%.0s' $(seq 600))5"
checks=$((checks + 1))
out=$("$bin" eval --model "$ck" --metric steps --samplers ddim --steps-list "$long_steps" --n 200 \
      --json 2> "$dir/err")
if ! grep -q '"steps":5,' <<< "$out"; then
    echo "FAIL: --steps-list of 601 characters: $out $(cat "$dir/err")"; fails=$((fails + 1))
fi
expect_error "at most 32 comma-separated items" \
    "$bin" eval --model "$ck" --metric steps --samplers ddim --steps-list "$(seq -s, 1 40)" --n 200
expect_error "an empty item in '5,,10'" \
    "$bin" eval --model "$ck" --metric steps --samplers ddim --steps-list 5,,10 --n 200

# an unwritable output
expect_error "samples.csv\|/proc" "$bin" sample --model "$ck" --n 5 --out /proc/samples.csv

finish
