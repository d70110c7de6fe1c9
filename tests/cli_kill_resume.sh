#!/usr/bin/env bash
# SIGKILL at random moments of training runs (an MLP, a small UNet) that checkpoint every few
# steps, keeping the newest two checkpoint-N folders: after every kill the latest complete checkpoint must load and sample, and the run
# resumed again and again must end with the same bytes (weights, optimiser state, EMA, loss
# history) as a run never interrupted (same thread count).
set -u
bin=$1
dir=$(mktemp -d /tmp/dm_kill_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# kill_loop NAME MIN_MS SPAN_MS FILES -- TRAIN_ARGS...: kills after MIN_MS + [0, SPAN_MS) ms
kill_loop() {
    local name=$1 min=$2 span=$3 files=$4
    shift 5
    local train=("$@")
    "$bin" "${train[@]}" --out "$dir/$name-ref" > /dev/null || fail "$name: uninterrupted run"
    local kills=0 attempts=0 resume=() pid ms finished=0
    while [ $attempts -lt 60 ]; do
        attempts=$((attempts + 1))
        "$bin" "${train[@]}" --out "$dir/$name" "${resume[@]}" > /dev/null 2> "$dir/err" &
        pid=$!
        ms=$((min + RANDOM % span))
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
        if ! kill -0 $pid 2> /dev/null; then
            wait $pid || { fail "$name: a run ended with an error:"; cat "$dir/err"; }
            finished=1
            break
        fi
        kill -KILL $pid
        wait $pid 2> /dev/null
        kills=$((kills + 1))
        # A kill before the first checkpoint leaves nothing to resume from: start afresh.
        if [ ! -e "$dir/$name/checkpoint" ] && [ ! -e "$dir/$name/checkpoint.old" ]; then
            resume=()
            continue
        fi
        resume=(--resume)
        [ -n "${DM_TEST_VERBOSE:-}" ] && echo "$name: kill $kills after $ms ms: $(cat "$dir/$name"/checkpoint*/config.json | tr -d ' \t\n' | grep -o '"step":[0-9]*' | head -1)"
        # what a user would do next with the run's checkpoint: sample from it
        if ! "$bin" sample --model "$dir/$name" --n 2 --steps 3 --out "$dir/s.npy" --quiet \
             > /dev/null 2> "$dir/err"; then
            fail "$name: after kill $kills the checkpoint does not load:"
            cat "$dir/err"
        fi
    done
    # a slow build (sanitizers) may use up the attempts first: finish without a kill
    if [ $finished -eq 0 ]; then
        "$bin" "${train[@]}" --out "$dir/$name" "${resume[@]}" > /dev/null 2> "$dir/err" ||
            { fail "$name: the final resume failed:"; cat "$dir/err"; }
    fi
    echo "$name: killed $kills times in $attempts attempts"
    [ $kills -ge 3 ] || fail "$name: fewer than 3 kills landed; nothing was exercised"
    for f in $files; do
        cmp -s "$dir/$name-ref/checkpoint/$f" "$dir/$name/checkpoint/$f" ||
            fail "$name: $f of the interrupted run differs from the uninterrupted run's"
    done
    local leftovers
    # .lock: the run folder's empty lock file (a second trainer is refused while one runs);
    # checkpoint: the link to the newest checkpoint-N; --checkpoints-total-limit 2 keeps two;
    # sessions.jsonl: a line per start
    leftovers=$(ls -A "$dir/$name" | grep -v -x -E -e 'checkpoint(-[0-9]+)?' -e loss.png -e .lock -e sessions.jsonl || true)
    [ -z "$leftovers" ] || fail "$name: temporary files left beside the checkpoints: $leftovers"
    local kept
    kept=$(ls "$dir/$name" | grep -c -x -E 'checkpoint-[0-9]+')
    [ "$kept" -le 2 ] || fail "$name: $kept numbered checkpoints kept; the limit is 2: $(ls "$dir/$name")"
}

# Kill delays from fixed seeds, so a failure can be replayed (DM_TEST_VERBOSE=1 lists them).
RANDOM=7
kill_loop mlp 20 480 "model.safetensors train_state.safetensors" -- \
    train --data moons --n-data 2000 --steps 3000 --batch 64 --hidden 64 --seed 3 \
    --checkpoint-every 10 --checkpoints-total-limit 2 --log-every 0 --quiet
# A UNet checkpoint also holds a diffusers folder (unet/, scheduler/): its files too must
# survive, and its stale temporaries be cleared.
if [ -d /usr/share/datasets/fashion-mnist ]; then
    RANDOM=11
    kill_loop unet 300 1700 \
        "unet/diffusion_pytorch_model.safetensors train_state.safetensors" -- \
        train --data fashion-mnist-test --model "$(dirname "$0")/sanitizers/small-unet-28.json" \
        --batch 8 --steps 250 --seed 3 --checkpoint-every 5 --checkpoints-total-limit 2 \
        --log-every 0 --quiet
else
    fail "unet: /usr/share/datasets/fashion-mnist is missing: install the Debian package" \
         "dataset-fashion-mnist (scripts/install-deps.sh does)"
fi
[ $fails -eq 0 ] && echo "kill/resume: all checks passed"
exit $((fails > 0))
