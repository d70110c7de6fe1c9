#!/usr/bin/env bash
# SIGKILL at random moments of a training run that checkpoints every 10 steps: after every kill
# the latest complete checkpoint must load and sample, and the run resumed again and again must
# end with the same bytes (weights, optimiser state, EMA, loss history) as a run never
# interrupted (same thread count).
set -u
bin=$1
dir=$(mktemp -d /tmp/dm_kill_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

train=(train --data moons --n-data 2000 --steps 3000 --batch 64 --hidden 64 --seed 3
       --checkpoint-every 10 --log-every 0 --quiet)
"$bin" "${train[@]}" --out "$dir/ref" > /dev/null || fail "uninterrupted run"

# Kill delays from a fixed seed, so a failure can be replayed; each in [0.02, 0.5) s.
RANDOM=7
kills=0 attempts=0 resume=()
while [ $attempts -lt 60 ]; do
    attempts=$((attempts + 1))
    "$bin" "${train[@]}" --out "$dir/run" "${resume[@]}" > /dev/null 2> "$dir/err" &
    pid=$!
    sleep "0.$(printf '%03d' $((20 + RANDOM % 480)))"
    if ! kill -0 $pid 2> /dev/null; then
        wait $pid || { fail "a run ended with an error:"; cat "$dir/err"; }
        break
    fi
    kill -KILL $pid
    wait $pid 2> /dev/null
    kills=$((kills + 1))
    # A kill before the first checkpoint leaves nothing to resume from: start afresh.
    if [ ! -e "$dir/run/checkpoint" ] && [ ! -e "$dir/run/checkpoint.old" ]; then
        resume=()
        continue
    fi
    resume=(--resume)
    # what a user would do next with the run's checkpoint: sample from it
    if ! "$bin" sample --model "$dir/run" --n 4 --steps 5 --out "$dir/s.csv" --quiet > /dev/null \
         2> "$dir/err"; then
        fail "after kill $kills the checkpoint does not load:"
        cat "$dir/err"
    fi
done
echo "killed $kills times in $attempts attempts"
[ $kills -ge 3 ] || fail "fewer than 3 kills landed; the test did not exercise anything"
for f in model.safetensors train_state.safetensors; do
    cmp -s "$dir/ref/checkpoint/$f" "$dir/run/checkpoint/$f" ||
        fail "$f of the interrupted run differs from the uninterrupted run's"
done
leftovers=$(ls -A "$dir/run" | grep -v -x -e checkpoint -e loss.png || true)
[ -z "$leftovers" ] || fail "temporary files left beside the checkpoint: $leftovers"
[ $fails -eq 0 ] && echo "kill/resume: all checks passed"
exit $((fails > 0))
