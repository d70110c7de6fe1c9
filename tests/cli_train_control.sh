#!/usr/bin/env bash
# Controlling a long training run from outside: --time-limit stops it on time with a checkpoint
# that resumes; Ctrl-C (SIGINT) saves, says "interrupted" and exits with 130; with stderr not a
# terminal (nohup, batch jobs) progress comes as plain lines (every 10 s; here every 0.3 s
# through DIFFUSION_PROGRESS_SECONDS) instead of nothing; a second trainer on a run folder in use
# is refused.
set -u
bin=$1
name=cli_train_control
source "$(dirname "$0")/shell_checks.sh"
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@"; then echo "FAIL: $what"; fails=$((fails + 1)); fi
}
step_of() { jq -r .training.step "$1/checkpoint/config.json" 2> /dev/null; }
mlp=(--data moons --n-data 2000 --hidden 32 --batch 32 --steps 1000000 --checkpoint-every 0)

# --time-limit: 0.02 minutes of a million steps
start=$(date +%s%N)
"$bin" train "${mlp[@]}" --out "$dir/t" --time-limit 0.02 --quiet > "$dir/out" 2> "$dir/err"
rc=$?
took=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
check "--time-limit: exit 0 ($rc; $(cat "$dir/err"))" test $rc -eq 0
check "--time-limit: says it stopped ($(cat "$dir/out"))" grep -q "stopped at the time limit" "$dir/out"
s1=$(step_of "$dir/t")
check "--time-limit: a checkpoint of some steps, not all (step '$s1')" \
    awk -v s="$s1" 'BEGIN { exit !(s ~ /^[0-9]+$/ && s > 0 && s < 1000000) }'
check "--time-limit: stopped within 20 s of its 1.2 s (took $took s)" awk -v t="$took" 'BEGIN { exit !(t < 20) }'
"$bin" train "${mlp[@]}" --out "$dir/t" --resume --time-limit 0.01 --quiet > /dev/null 2>&1
s2=$(step_of "$dir/t")
check "--resume continues after the time limit ($s1 -> $s2)" \
    awk -v a="$s1" -v b="$s2" 'BEGIN { exit !(b ~ /^[0-9]+$/ && b > a) }'
expect_error "--time-limit" "$bin" train "${mlp[@]}" --out "$dir/bad" --time-limit -1

# Ctrl-C: SIGINT once training runs (a background job of a script starts with SIGINT ignored,
# so one sent before the trainer catches it would be lost)
started() { # started FILE PID: waits up to 60 s for a progress line in FILE
    for _ in $(seq 600); do
        grep -q '^train: ' "$1" 2> /dev/null && return 0
        kill -0 "$2" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}
DIFFUSION_PROGRESS_SECONDS=0.2 "$bin" train "${mlp[@]}" --out "$dir/c" > "$dir/out" 2> "$dir/err" &
pid=$!
check "Ctrl-C: the run started ($(head -c 300 "$dir/err"))" started "$dir/err" $pid
# No signal handler may run on a computing thread (oneDNN's JIT GEMM before 3.11 corrupts the
# heap then, oneDNN issue #4845): every thread of the trainer blocks SIGINT (bit 2 of SigBlk)
# but the one that waits for it in sigwait (system call 128, rt_sigtimedwait)
threads=0 open=0 waiting=0
for task in /proc/$pid/task/*; do
    mask=$(awk '/^SigBlk:/ { print $2 }' "$task/status" 2> /dev/null)
    [ -n "$mask" ] || continue
    threads=$((threads + 1))
    if (( (16#$mask & 2) == 0 )); then
        open=$((open + 1))
        [ "$(cut -d' ' -f1 "$task/syscall" 2> /dev/null)" = 128 ] && waiting=$((waiting + 1))
    fi
done
check "Ctrl-C: SIGINT reaches only the thread waiting for it ($open of $threads threads take it, $waiting of them in sigwait)" \
    test "$threads" -ge 3 -a "$open" -eq 1 -a "$waiting" -eq 1
kill -INT $pid
wait $pid
rc=$?
check "Ctrl-C: exit 130 (got $rc)" test $rc -eq 130
check "Ctrl-C: says interrupted ($(cat "$dir/err"))" grep -q "interrupted" "$dir/err"
check "Ctrl-C: the checkpoint samples" "$bin" sample --model "$dir/c" --n 10 --out "$dir/s.csv" --quiet \
    > /dev/null
# a run folder in use is refused to a second trainer, and free again once the first has ended
DIFFUSION_PROGRESS_SECONDS=0.2 "$bin" train "${mlp[@]}" --out "$dir/l" > /dev/null 2> "$dir/err" &
pid=$!
check "the first run started ($(head -c 300 "$dir/err"))" started "$dir/err" $pid
expect_error "in use by another training run" "$bin" train "${mlp[@]}" --out "$dir/l" --steps 10
kill -INT $pid; wait $pid
check "the folder is free after the first run ended" "$bin" train "${mlp[@]}" --out "$dir/l" \
    --resume --time-limit 0.005 --quiet > /dev/null
# plain progress lines when stderr is a file
DIFFUSION_PROGRESS_SECONDS=0.3 "$bin" train "${mlp[@]}" --out "$dir/p" --time-limit 0.03 \
    > /dev/null 2> "$dir/err"
check "plain progress lines on a non-terminal stderr ($(head -c 300 "$dir/err"))" \
    grep -qE '^train: [0-9]+/1000000 steps, [0-9.]+ steps/s, loss [0-9.]+, elapsed' "$dir/err"
check "no terminal escapes in them" bash -c "! grep -q $'\033' '$dir/err'"
finish
