#!/usr/bin/env bash
# The public API comes in parts (include/diffusion/*.h; include/diffusion.h includes them all).
# Each part compiles on its own, as C11 and as C++ (each includes what it needs and has its
# extern "C" block), without a warning; and diffusion.h includes every part there is.
# Usage: headers.sh SOURCE_DIR [C compiler] [C++ compiler]
set -u
src=${1:?usage: headers.sh SOURCE_DIR [CC] [CXX]}
cc=${2:-cc}
cxx=${3:-c++}
inc=$src/include
fails=0 checks=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if ! out=$("$@" 2>&1) || [ -n "$out" ]; then
        echo "FAIL: $what"; [ -n "$out" ] && echo "$out" | head -20; fails=$((fails + 1))
    fi
}
parts=("$inc"/diffusion/*.h)
[ -f "${parts[0]}" ] || { echo "FAIL: no component headers in $inc/diffusion"; exit 1; }
for h in "${parts[@]}"; do
    name=diffusion/$(basename "$h")
    check "$name alone, as C11" \
        bash -c "printf '#include \"%s\"\n' '$name' | '$cc' -std=c11 -Wall -Wextra -fsyntax-only -x c -I '$inc' -"
    if command -v "$cxx" > /dev/null; then
        check "$name alone, as C++" \
            bash -c "printf '#include \"%s\"\n' '$name' | '$cxx' -Wall -Wextra -fsyntax-only -x c++ -I '$inc' -"
    fi
    check "diffusion.h includes $name" grep -q "^#include \"$name\"" "$inc/diffusion.h"
done
echo "$checks checks, $fails failed"
[ $fails -eq 0 ]
