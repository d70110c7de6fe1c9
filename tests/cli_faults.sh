#!/usr/bin/env bash
# Numerical and memory faults from the command line: a NaN injected into one step (stop with
# the step named and the last checkpoint intact, or skip it when asked), and batches or models
# too large for the machine (a clear message before any step, not a crash).
set -u
bin=$1
dir=$(mktemp -d /tmp/dm_faults_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_error() { # expect_error PATTERN DESCRIPTION: the last command failed with PATTERN in err
    grep -q -- "$1" "$dir/err" || fail "$2: $(cat "$dir/err")"
}

train=(train --data moons --n-data 2000 --batch 64 --hidden 64 --seed 9 --quiet)

# --- a NaN at step 57 stops the run; the checkpoint of step 40 stays as it was
"$bin" "${train[@]}" --steps 40 --out "$dir/ref40" > /dev/null || fail "reference run"
if "$bin" "${train[@]}" --steps 100 --checkpoint-every 20 --inject-nan-step 57 \
       --out "$dir/stop" > /dev/null 2> "$dir/err"; then
    fail "a NaN loss did not stop the run"
fi
cat "$dir/err"
expect_error "step 57: the loss is not finite" "the message does not name the step"
expect_error "checkpoint of step 40" "the message does not point at the last checkpoint"
cmp -s "$dir/ref40/checkpoint/model.safetensors" "$dir/stop/checkpoint/model.safetensors" ||
    fail "the step-40 checkpoint changed"
"$bin" "${train[@]}" --steps 100 --checkpoint-every 20 --out "$dir/stop" --resume > /dev/null ||
    fail "resuming after the NaN stop"

# --- the same with --skip-nonfinite: one step skipped, the run finishes, the log stays JSON
"$bin" "${train[@]}" --steps 100 --log-every 1 --inject-nan-step 57 --skip-nonfinite --json \
    --out "$dir/skip" > "$dir/skip.json" 2> "$dir/err" || fail "the skipping run failed"
expect_error "warning: step 57" "no warning for the skipped step"
grep -q '"skipped_steps":1' "$dir/skip.json" || fail "skipped_steps: $(cat "$dir/skip.json")"
grep -q '"step": 57, "loss": null' "$dir/skip/log.jsonl" || fail "the log's step 57 is not null"
grep -qi 'nan' "$dir/skip/log.jsonl" && fail "NaN written into log.jsonl"
"$bin" sample --model "$dir/skip" --n 100 --out "$dir/s.csv" --quiet > /dev/null ||
    fail "sampling the skipping run's checkpoint"
grep -qi 'nan' "$dir/s.csv" && fail "non-finite samples"

# --- memory: refused before the first step, with the figures
if "$bin" train --data moons --hidden 65536 --steps 1 --out "$dir/big" --quiet \
       > /dev/null 2> "$dir/err"; then
    fail "an MLP of 10^10 parameters was accepted"
fi
expect_error "parameters: needs .* GiB of memory but .* GiB is available" "huge MLP"
if [ -d /usr/share/datasets/fashion-mnist ]; then
    if "$bin" train --data fashion-mnist --model unet-28 --batch 20000 --steps 1 \
           --out "$dir/big" --quiet > /dev/null 2> "$dir/err"; then
        fail "unet-28 at batch 20000 (~340 GiB) was accepted"
    fi
    expect_error "UNet activations for batch 20000: needs" "unet-28 at batch 20000"
else
    fail "unet-28 case: /usr/share/datasets/fashion-mnist is missing: install the Debian" \
         "package dataset-fashion-mnist (scripts/install-deps.sh does)"
fi
# an address-space limit (not under AddressSanitizer, which needs terabytes of it)
# (the probe's own sanitizer failure to start goes to stderr, not to a CI report file)
if (ulimit -v 2000000; ASAN_OPTIONS=log_path=stderr "$bin" --help > /dev/null 2>&1); then
    if (ulimit -v 2000000; "$bin" train --data moons --hidden 8192 --layers 4 --batch 4096 \
            --steps 1 --out "$dir/big" --quiet > /dev/null 2> "$dir/err"); then
        fail "a 2 GB address-space limit did not stop an MLP needing ~5 GB"
    fi
    expect_error "available (ulimit -v)" "ulimit -v"
elif grep -qa __asan_init "$bin"; then
    echo "not run: the ulimit -v case (an AddressSanitizer binary cannot start under it)"
else
    fail "the binary does not start under ulimit -v 2000000 (2 GB), and it is no sanitizer build"
fi

# --- a checkpoint, checkpoint.tmp or checkpoint.old that is a symbolic link to a folder outside
# the run: training removed config.json, model.safetensors and train_state.safetensors there;
# now only the link goes
mkdir -p "$dir/victim"
for f in config.json model.safetensors train_state.safetensors; do echo sentinel > "$dir/victim/$f"; done
for link in checkpoint checkpoint.tmp checkpoint.old; do
    mkdir -p "$dir/links_$link"
    ln -s "$dir/victim" "$dir/links_$link/$link"
    "$bin" "${train[@]}" --steps 20 --checkpoint-every 10 --out "$dir/links_$link" > /dev/null \
        2> "$dir/err" || fail "training with $link as a link: $(cat "$dir/err")"
    for f in config.json model.safetensors train_state.safetensors; do
        [ "$(cat "$dir/victim/$f" 2> /dev/null)" = sentinel ] ||
            fail "$link as a link: $dir/victim/$f outside the run folder was removed"
        echo sentinel > "$dir/victim/$f"
    done
done
[ $fails -eq 0 ] && echo "faults: all checks passed"
exit $((fails > 0))
