#!/usr/bin/env bash
# The shared library exports the public API and nothing else: the dm_* symbols that
# libdiffusion.so defines and exports (nm -D --defined-only) must be exactly the functions and
# variables that the public header declares, both ways, and it may export no other symbol
# (but the toolchain's own, listed below). A declaration without DM_API, a public function that
# is not defined, or an internal function that leaks out fails the test with its name.
# Usage: lib_symbols.sh LIBDIFFUSION.so include/diffusion.h [C compiler]
set -euo pipefail
lib=${1:?usage: lib_symbols.sh LIB.so HEADER [CC]}
header=${2:?usage: lib_symbols.sh LIB.so HEADER [CC]}
cc=${3:-cc}
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -f "$lib" ] || fail "no shared library at $lib"
[ -f "$header" ] || fail "no header at $header"
command -v nm > /dev/null || fail "nm (binutils) is not installed"
work=$(mktemp -d /tmp/dm_symbols_XXXXXX)
trap 'rm -rf "$work"' EXIT

# What the library exports: every defined dynamic symbol (functions T, data D/B/R, ...).
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u > "$work/exported"
[ -s "$work/exported" ] || fail "nm found no exported symbols in $lib"

# What the header declares: preprocessed (comments and macros gone, attributes dropped), then
# every top-level statement that is not a typedef, with the body of each struct/enum removed; the
# declared name is the identifier before the first '(' (a function) or '[' or the ';' (a variable).
printf '#include "%s"\n' "$(cd "$(dirname "$header")" && pwd)/$(basename "$header")" |
    "$cc" -E -P -x c -D'__attribute__(x)=' - > "$work/pre.c" ||
    fail "could not preprocess $header with $cc"
tr '\n' ' ' < "$work/pre.c" |
    # remove innermost { ... } until none is left
    sed -e ':a' -e 's/{[^{}]*}/ /g' -e 'ta' |
    tr ';' '\n' |
    sed -e 's/^ *//' -e 's/ *$//' |
    grep -v -E '^(typedef|$)' |
    grep -v -E '^(struct|enum|union) [A-Za-z_0-9]+$' |
    sed -E -e 's/^extern +//' \
           -e 's/^([^([]*[^A-Za-z_0-9([])([A-Za-z_][A-Za-z_0-9]*) *[([].*/\2/' \
           -e 's/^.*[^A-Za-z_0-9]([A-Za-z_][A-Za-z_0-9]*)$/\1/' |
    grep '^dm_' | sort -u > "$work/declared" || true
n_declared=$(wc -l < "$work/declared")
[ "$n_declared" -ge 50 ] || fail "found only $n_declared declarations in $header: the parser is broken"

status=0
grep '^dm_' "$work/exported" > "$work/exported_dm" || true
missing=$(comm -23 "$work/declared" "$work/exported_dm")
if [ -n "$missing" ]; then
    echo "FAIL: declared in $(basename "$header") but not exported by $(basename "$lib")" \
         "(no DM_API on the declaration, or not defined in the library):" >&2
    echo "$missing" | sed 's/^/  /' >&2
    status=1
fi
extra=$(comm -13 "$work/declared" "$work/exported_dm")
if [ -n "$extra" ]; then
    echo "FAIL: exported by $(basename "$lib") but not declared in $(basename "$header")" \
         "(an internal function with default visibility):" >&2
    echo "$extra" | sed 's/^/  /' >&2
    status=1
fi
# Other exported symbols: only the toolchain's. GCC's named OpenMP critical sections
# (.gomp_critical_user_NAME) are common symbols every object of a process must share, so they
# stay global whatever the visibility; _init, _fini and the section markers come with any
# shared object; a sanitizer build adds its runtime's hooks.
others=$(grep -v '^dm_' "$work/exported" |
         grep -v -E '^(\.gomp_critical_user_.*|_init|_fini|_edata|_end|__bss_start|__(asan|ubsan|lsan|sanitizer|odr_asan)[_.].*)$' || true)
if [ -n "$others" ]; then
    echo "FAIL: $(basename "$lib") exports symbols outside the dm_ namespace:" >&2
    echo "$others" | sed 's/^/  /' >&2
    status=1
fi
[ $status -eq 0 ] && echo "ok: $(basename "$lib") exports exactly the $n_declared functions and variables of $(basename "$header")"
exit $status
