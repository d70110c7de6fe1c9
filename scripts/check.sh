#!/usr/bin/env bash
# The reliability checks CI runs after the test suite (docs/reliability.md):
#   sanitize  the whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#   valgrind  a train / resume / sample / eval round trip under memcheck (MLP and UNet)
#   fuzz      every parser's libFuzzer harness for a short bounded time (scripts/fuzz.sh)
#   noplot    the library built without its plot component (-DDM_PLOT=OFF): no cairo linked,
#             plots refused with a message, training and sampling as before
# Usage: scripts/check.sh [sanitize|valgrind|fuzz|noplot]...   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh checks
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(sanitize valgrind fuzz noplot)
jobs=$(nproc)

sanitize() {
    echo "== the test suite under AddressSanitizer + UndefinedBehaviorSanitizer"
    cmake -S . -B build-asan -DDM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
    cmake --build build-asan -j"$jobs" > /dev/null
    # Reports go to files as well as stderr: a sanitizer error inside a command a CLI test
    # expects to fail would otherwise pass as that expected failure.
    local logs=$root/build-asan/sanitizer-logs
    rm -rf "$logs" && mkdir -p "$logs"
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$logs/asan"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
    export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
    local status=0
    (cd build-asan && ctest --output-on-failure) || status=1
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    # a report file may also hold only statistics; an error has one of these lines
    if grep -l -E "ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" \
           "$logs"/* > /dev/null 2>&1; then
        echo "sanitizer reports:"
        cat "$logs"/*
        status=1
    fi
    return $status
}

valgrind_round_trip() {
    echo "== a round trip under valgrind memcheck"
    # Portable code (no -march=native): valgrind does not emulate AVX-512, and OpenBLAS is
    # pinned to its AVX2 kernels for the same reason.
    cmake -S . -B build-valgrind -DDM_NATIVE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
    cmake --build build-valgrind -j"$jobs" --target diffusion > /dev/null
    local bin=$root/build-valgrind/diffusion dir
    dir=$(mktemp -d /tmp/dm_valgrind_XXXXXX)
    local vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
              --show-leak-kinds=definite --suppressions="$root/tests/sanitizers/valgrind.supp")
    local status=0 n=0
    run() { # run DESCRIPTION ARGS...: one command under memcheck
        local what=$1; shift
        n=$((n + 1))
        if OPENBLAS_CORETYPE=Haswell OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive \
           "${vg[@]}" "$bin" "$@" > "$dir/out" 2>&1; then
            echo "ok: $what"
        else
            echo "FAIL: $what"; cat "$dir/out"; status=1
        fi
    }
    local mlp=(--data moons --n-data 500 --batch 32 --hidden 32 --out "$dir/mlp" --quiet)
    run "train the MLP with checkpoints" train "${mlp[@]}" --steps 20 --checkpoint-every 10
    run "resume it" train "${mlp[@]}" --steps 30 --resume
    run "sample: ancestral, strided, plots" sample --model "$dir/mlp" --n 50 --steps 20 \
        --out "$dir/s.csv" --plot "$dir/s.png" --strip "$dir/strip.png" --data moons --quiet
    run "sample: ddim to npy" sample --model "$dir/mlp" --n 20 --sampler ddim --steps 10 \
        --out "$dir/s.npy" --quiet
    run "eval the samples" eval --samples "$dir/s.csv" --data moons --n 50
    run "eval the bound" eval --metric nll --model "$dir/mlp" --data moons --n 50 --t-draws 2
    run "train a conditional MLP" train "${mlp[@]/$dir\/mlp/$dir/cmlp}" --steps 20 --conditional
    run "sample it with classifier-free guidance" sample --model "$dir/cmlp" --n 20 --class 1 \
        --guidance 2 --sampler dpmpp-2m --steps 10 --out "$dir/c.csv" --quiet
    if [ -d /usr/share/datasets/fashion-mnist ]; then
        # a small UNet of the same kinds of blocks as unet-28 (attention included): memcheck
        # runs unet-28 itself ~100x slower than native, minutes a step
        local unet=(--data fashion-mnist-test --model "$root/tests/sanitizers/small-unet-28.json"
                    --batch 2 --out "$dir/unet" --quiet)
        run "train a UNet" train "${unet[@]}" --steps 2 --log-every 1
        run "resume it" train "${unet[@]}" --steps 3 --resume
        run "sample the UNet: grid and npy" sample --model "$dir/unet" --n 2 --steps 3 \
            --grid "$dir/g.png" --npy "$dir/g.npy" --quiet
        run "its bound on the test split" eval --metric nll --model "$dir/unet" --n 4 --t-draws 1
        run "a conditional UNet" train "${unet[@]/$dir\/unet/$dir/cunet}" --steps 2 --conditional
        run "a noisy classifier on its schedule" train-classifier --data fashion-mnist-test \
            --noisy --like "$dir/cunet" --steps 2 --batch 2 --out "$dir/clf" --quiet
        run "sample with both guidances" sample --model "$dir/cunet" --n 2 --steps 3 \
            --class all --guidance 2 --guide-classifier "$dir/clf" --grid "$dir/cg.png" --quiet
        local pipes=$root/tests/fixtures/diffusers-pipelines
        run "a diffusers DDIMPipeline folder with its scheduler" sample --model "$pipes/ddim-trailing" \
            --n 1 --steps 3 --grid "$dir/d.png" --quiet
        run "a sharded bare UNet with a DPM-Solver config" sample --model "$pipes/weights-sharded" \
            --scheduler-config "$root/tests/sanitizers/dpmsolver-scheduler.json" --n 1 --steps 3 \
            --grid "$dir/e.png" --quiet
    else
        echo "FAIL: the UNet commands: /usr/share/datasets/fashion-mnist is missing: install the" \
             "Debian package dataset-fashion-mnist (scripts/install-deps.sh does)"
        status=1
    fi
    rm -rf "$dir"
    echo "valgrind: $n commands"
    return $status
}

without_plots() {
    echo "== the library without plots (-DDM_PLOT=OFF)"
    cmake -S . -B build-noplot -DDM_PLOT=OFF -DCMAKE_BUILD_TYPE=Release > /dev/null
    cmake --build build-noplot -j"$jobs" --target diffusion diffusion_shared > /dev/null
    local bin=$root/build-noplot/diffusion dir status=0
    dir=$(mktemp -d /tmp/dm_noplot_XXXXXX)
    ok() { echo "ok: $1"; }
    bad() { echo "FAIL: $1"; status=1; }
    if readelf -d build-noplot/libdiffusion.so | grep -q 'NEEDED.*cairo'; then
        bad "libdiffusion.so still needs cairo"
    else
        ok "libdiffusion.so needs no cairo"
    fi
    if "$bin" train --data moons --n-data 2000 --hidden 32 --steps 200 --out "$dir/run" \
           > "$dir/out" 2> "$dir/err" && [ ! -e "$dir/run/loss.png" ] &&
       grep -q "built without plots" "$dir/err"; then
        ok "train runs and says why there is no loss.png"
    else
        bad "train without plots: $(cat "$dir/out" "$dir/err" | tail -3)"
    fi
    if "$bin" sample --model "$dir/run" --n 100 --out "$dir/s.csv" --quiet &&
       [ "$(wc -l < "$dir/s.csv")" -ge 100 ]; then
        ok "sample writes its CSV"
    else
        bad "sample without plots"
    fi
    if "$bin" sample --model "$dir/run" --n 100 --out "$dir/s.csv" --plot "$dir/s.png" \
           --quiet 2> "$dir/err"; then
        bad "--plot succeeded without plots"
    elif grep -q "built without plots" "$dir/err"; then
        ok "--plot is refused with the reason"
    else
        bad "--plot failed without the reason: $(cat "$dir/err")"
    fi
    rm -rf "$dir"
    return $status
}

status=0
for part in "${parts[@]}"; do
    case $part in
        sanitize) sanitize || status=1 ;;
        valgrind) valgrind_round_trip || status=1 ;;
        fuzz) bash scripts/fuzz.sh || status=1 ;;
        noplot) without_plots || status=1 ;;
        *) echo "unknown part: $part (sanitize, valgrind, fuzz, noplot)" >&2; exit 2 ;;
    esac
done
[ $status -eq 0 ] && echo "check: all passed" || echo "check: FAILED"
exit $status
