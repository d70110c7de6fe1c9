#!/usr/bin/env bash
# How many threads a command runs and where: by default every CPU of the process's affinity mask
# (taskset, a batch system or mpirun set it), OMP_NUM_THREADS when set, --threads when given,
# the node's CPUs shared out among MPI ranks the launcher left unbound; the threads are pinned one
# per CPU only when they fill the mask exactly (or DIFFUSION_PIN_THREADS=1), never onto a subset,
# so two jobs on one machine do not crowd onto the same first CPUs.
set -u
bin=$1
name=cli_threads
source "$(dirname "$0")/shell_checks.sh"
check() { # check DESCRIPTION EXPECTED ACTUAL
    checks=$((checks + 1))
    if [ "$2" != "$3" ]; then echo "FAIL: $1: expected $2, got $3"; fails=$((fails + 1)); fi
}
command -v taskset > /dev/null || { echo "FAIL: taskset (util-linux) is missing"; exit 1; }
threads() { # threads [ENV=V...] -- [ARGS...]: the thread count a command reports
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$bin" bench unet --model tiny --iters 1 --warmup 0 --batch 2 \
        --infer-batch 2 --sgemm-n 64 --json "$@" | jq -r .threads
}
cpus=$(nproc) # the CPUs of this process's mask

check "default: every CPU of the mask" "$cpus" "$(threads -- )"
check "a mask of one CPU (taskset -c 0)" 1 "$(taskset -c 0 "$bin" bench unet --model tiny \
      --iters 1 --warmup 0 --batch 2 --infer-batch 2 --sgemm-n 64 --json | jq -r .threads)"
check "OMP_NUM_THREADS=3 is honoured" 3 "$(threads OMP_NUM_THREADS=3 -- )"
check "--threads 3 wins over OMP_NUM_THREADS=1" 3 "$(threads OMP_NUM_THREADS=1 -- --threads 3)"
if [ "$cpus" -ge 2 ]; then
    check "two unbound MPI ranks on the node share its CPUs" $((cpus / 2)) \
          "$(threads OMPI_COMM_WORLD_LOCAL_SIZE=2 -- )"
fi

# Placement, read from /proc while a training run works: Cpus_allowed_list of each computing
# thread.
placement() { # placement [ENV=V...] -- ARGS...: each thread's allowed CPUs, sorted, one per line
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$bin" train --data moons --n-data 2000 --hidden 256 --batch 256 \
        --steps 1000000 --checkpoint-every 0 --out "$dir/run" --quiet "$@" > /dev/null 2>&1 &
    local pid=$!
    # the threads are placed before training starts, which writes the log's first line
    for _ in $(seq 600); do
        [ -s "$dir/run/log.jsonl" ] && break
        kill -0 $pid 2> /dev/null || break
        sleep 0.1
    done
    local list
    # the computing threads: not the CLI's own that sleeps in sigwait for Ctrl-C (system call
    # 128, rt_sigtimedwait; interrupt.c), which is not pinned
    list=$(for t in /proc/$pid/task/*; do
               [ "$(cut -d' ' -f1 "$t/syscall" 2> /dev/null)" = 128 ] && continue
               sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$t/status"; done | sort)
    kill -KILL $pid; wait $pid 2> /dev/null
    rm -rf "$dir/run"
    echo "$list"
}
all=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
if [ "$cpus" -ge 2 ]; then
    # threads filling the mask: one CPU each, so no thread is allowed the whole mask
    pinned=$(placement -- --threads "$cpus")
    check "threads filling the mask: one computing thread per CPU" "$cpus" "$(grep -c . <<< "$pinned")"
    check "threads filling the mask are pinned one per CPU" 0 "$(grep -cx -- "$all" <<< "$pinned")"
    unpinned=$(placement DIFFUSION_PIN_THREADS=0 -- --threads "$cpus")
    check "DIFFUSION_PIN_THREADS=0 leaves every thread the whole mask" \
          "$(wc -l <<< "$unpinned")" "$(grep -cx -- "$all" <<< "$unpinned")"
fi
if [ "$cpus" -ge 3 ]; then
    fewer=$(placement -- --threads 2)
    check "fewer threads than CPUs are not pinned" "$(wc -l <<< "$fewer")" \
          "$(grep -cx -- "$all" <<< "$fewer")"
fi
finish
