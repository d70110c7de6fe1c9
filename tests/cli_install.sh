#!/usr/bin/env bash
# Install and embed: installs the build folder of the given diffusion binary to a temporary
# prefix (cmake --install --prefix), checks the layout (both libraries and the soname, the
# header, diffusion.pc, the CMake package, the binary, the man page, the bash completion), then
# builds examples/ against the installed tree twice, with pkg-config (examples/Makefile, and the
# README's two cc lines) and with find_package (examples/CMakeLists.txt), each with the shared and
# the static library, and runs them: sample_checkpoint on a small model that the installed
# `diffusion` trains first, train_toy, and the C++ consumer, whose dm_version() must match
# `diffusion --version`.
# Anything missing fails the test (no skips). Usage: cli_install.sh path/to/build/diffusion
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
[ $# -eq 1 ] && [ -x "$1" ] || fail "usage: cli_install.sh path/to/build/diffusion"
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
build=$(dirname "$bin")
root=$(cd "$(dirname "$0")/.." && pwd)
cache=$build/CMakeCache.txt
[ -f "$cache" ] || fail "$build is not a CMake build folder (no CMakeCache.txt)"
cached() { sed -n "/^$1:/{s/^[^=]*=//p;q}" "$cache"; }
for tool in cmake pkg-config make nm objdump ldd c++; do
    command -v "$tool" > /dev/null || fail "$tool is not installed (scripts/install-deps.sh)"
done
cc=$(cached CMAKE_C_COMPILER)
[ -n "$cc" ] || cc=cc

work=$(mktemp -d /tmp/dm_install_XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
log=$work/log
# as the other tests: few threads, no spinning (a busy machine slows spinning threads badly)
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
unset DESTDIR
run() { # run DESCRIPTION COMMAND...: the command's output goes to the log, shown on failure
    local what=$1; shift
    if ! "$@" > "$log" 2>&1; then
        cat "$log" >&2
        fail "$what: '$*' failed"
    fi
}

loads() { # loads PROGRAM REGEX: ldd lists a library that matches (no pipe into grep -q: with
    # pipefail, ldd killed by SIGPIPE would fail the pipeline after a match)
    local libs
    libs=$(ldd "$1") || fail "ldd $1 failed"
    grep -q -- "$2" <<< "$libs"
}

run "install" cmake --install "$build" --prefix "$prefix"

# ---- the layout (GNUInstallDirs places, as configured in the build folder)
libdir=$prefix/$(cached CMAKE_INSTALL_LIBDIR)
includedir=$prefix/$(cached CMAKE_INSTALL_INCLUDEDIR)
bindir=$prefix/$(cached CMAKE_INSTALL_BINDIR)
# (MANDIR and DATADIR are cached empty unless set: then they follow DATAROOTDIR)
datarootdir=$(cached CMAKE_INSTALL_DATAROOTDIR)
mandir=$(cached CMAKE_INSTALL_MANDIR)
mandir=$prefix/${mandir:-${datarootdir:-share}/man}
datadir=$(cached CMAKE_INSTALL_DATADIR)
datadir=$prefix/${datadir:-${datarootdir:-share}}
version=$("$bin" --version | sed -n 's/^diffusion\.c //p')
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "diffusion --version printed '$("$bin" --version)'"
major=${version%%.*}
for f in "$bindir/diffusion" "$libdir/libdiffusion.so.$version" "$libdir/libdiffusion.so.$major" \
         "$libdir/libdiffusion.so" "$libdir/libdiffusion.a" "$includedir/diffusion.h" \
         "$libdir/pkgconfig/diffusion.pc" "$libdir/cmake/diffusion/diffusionConfig.cmake" \
         "$libdir/cmake/diffusion/diffusionConfigVersion.cmake" "$mandir/man1/diffusion.1" \
         "$datadir/bash-completion/completions/diffusion"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
soname=$(objdump -p "$libdir/libdiffusion.so" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = "libdiffusion.so.$major" ] || fail "soname '$soname', expected libdiffusion.so.$major"
# the installed library exports exactly what the installed header declares
run "exported symbols of the installed library" bash "$root/tests/lib_symbols.sh" \
    "$libdir/libdiffusion.so" "$includedir/diffusion.h" "$cc"

# ---- the binary, the man page and the completion
for args in "--version" "sample --version" "train --version" "bench unet --version"; do
    # shellcheck disable=SC2086
    out=$("$bindir/diffusion" $args) || fail "diffusion $args failed"
    [ "$out" = "diffusion.c $version" ] || fail "diffusion $args printed '$out'"
done
grep -q '^\.TH DIFFUSION 1 .*"diffusion\.c '"$version"'"' "$mandir/man1/diffusion.1" ||
    fail "the man page's .TH line does not name diffusion.c $version (docs/diffusion.1)"
grep -q '^\.SH SYNOPSIS' "$mandir/man1/diffusion.1" || fail "the man page has no SYNOPSIS"
if command -v groff > /dev/null; then
    warnings=$(groff -man -Tutf8 -ww -z "$mandir/man1/diffusion.1" 2>&1)
    [ -z "$warnings" ] || fail "groff warns about the man page: $warnings"
fi
completion=$(PATH="$bindir:$PATH" bash -c '
    source "$1" || exit 1
    complete -p diffusion > /dev/null || exit 1
    c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _diffusion; echo "${COMPREPLY[*]}"; }
    c diffusion tr; c diffusion sample --sam; c diffusion train --schedule co' _ \
    "$datadir/bash-completion/completions/diffusion") || fail "the bash completion does not load"
[ "$completion" = $'train train-classifier\n--sampler\ncosine' ] ||
    fail "the bash completion completed: $(echo "$completion" | tr '\n' '|')"

# ---- a small model, trained by the installed binary
run "training a small model" "$bindir/diffusion" train --data moons --n-data 2000 --steps 50 \
    --hidden 32 --batch 64 --out "$work/run" --quiet
[ -f "$work/run/checkpoint/config.json" ] || fail "diffusion train wrote no checkpoint"

check_examples() { # check_examples HOW DIR: run the examples built in DIR
    local how=$1 dir=$2 p
    for p in sample_checkpoint train_toy train_toy_static cpp_consumer; do
        [ -x "$dir/$p" ] || fail "$how: $p was not built"
    done
    # the shared-library programs run with the installed library, the static one with none
    for p in sample_checkpoint train_toy cpp_consumer; do
        loads "$dir/$p" "libdiffusion\.so\.$major => $libdir/libdiffusion\.so\.$major" ||
            fail "$how: $p does not load $libdir/libdiffusion.so.$major: $(ldd "$dir/$p" | grep diffusion)"
    done
    ! loads "$dir/train_toy_static" libdiffusion ||
        fail "$how: train_toy_static loads a shared libdiffusion"
    run "$how: sample_checkpoint" "$dir/sample_checkpoint" "$work/run" 200 20
    grep -q "^drew 200 samples of 2 values" "$log" || { cat "$log"; fail "$how: sample_checkpoint: no summary"; }
    grep -q "^x\[1\]: mean" "$log" || { cat "$log"; fail "$how: sample_checkpoint: no statistics"; }
    run "$how: train_toy" "$dir/train_toy" moons 200
    grep -q "libdiffusion $version: 200 steps on moons: loss" "$log" || { cat "$log"; fail "$how: train_toy"; }
    run "$how: train_toy_static" "$dir/train_toy_static" spiral 100 "$work/toy-$how"
    [ -f "$work/toy-$how/config.json" ] || fail "$how: train_toy_static saved no checkpoint"
    # its checkpoint samples with the installed CLI
    run "$how: sampling train_toy's checkpoint" "$bindir/diffusion" sample --model "$work/toy-$how" \
        --n 100 --steps 10 --out "$work/toy-$how.csv" --quiet
    run "$how: cpp_consumer" "$dir/cpp_consumer"
    grep -q "^libdiffusion $version (header $version)$" "$log" ||
        { cat "$log"; fail "$how: cpp_consumer's dm_version() does not match diffusion --version ($version)"; }
}

# ---- with pkg-config (shared, and static with --static)
export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
[ "$(pkg-config --modversion diffusion)" = "$version" ] || fail "pkg-config --modversion diffusion"
[ "$(pkg-config --variable=libdir diffusion)" = "$libdir" ] || fail "diffusion.pc's libdir is not $libdir"
mkdir "$work/pc"
run "pkg-config build of examples/Makefile" make -C "$work/pc" -f "$root/examples/Makefile" CC="$cc"
check_examples pkg-config "$work/pc"

# the README's own link lines ("Library": the shared and the static library), as they are written
mapfile -t lines < <(sed -n '/^## Library/,/^## /p' "$root/README.md" | grep '^cc -std=c11 prog\.c ')
[ ${#lines[@]} -eq 2 ] || fail "README.md, Library: expected two 'cc -std=c11 prog.c' lines, found ${#lines[@]}"
for i in 0 1; do
    mkdir "$work/readme$i"
    cp "$root/examples/train_toy.c" "$work/readme$i/prog.c"
    (cd "$work/readme$i" && bash -c "${lines[$i]}") > "$log" 2>&1 ||
        { cat "$log" >&2; fail "README.md's line '${lines[$i]}' failed"; }
    run "README.md's line '${lines[$i]}': the program" "$work/readme$i/a.out" moons 50
done
loads "$work/readme0/a.out" "$libdir/libdiffusion\.so\.$major" ||
    fail "README.md's first cc line does not link the installed shared library"
! loads "$work/readme1/a.out" libdiffusion ||
    fail "README.md's second cc line does not link the static library"

# ---- with find_package (diffusion::diffusion and diffusion::diffusion_static)
run "find_package configure of examples/CMakeLists.txt" cmake -S "$root/examples" -B "$work/cm" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release
run "find_package build" cmake --build "$work/cm" -j2
check_examples find_package "$work/cm"

echo "ok: installed diffusion.c $version to a temporary prefix; the examples built with pkg-config and with find_package ran"
