#!/usr/bin/env bash
# The layers of docs/architecture.md, checked on the sources: each folder under src/ includes
# only the internal headers of the layers below it (and its own); the CLI includes only the
# public diffusion.h and its own headers. A new upward include fails here until the build
# enforces the layers itself (issue 17).
# Usage: tests/layers.sh SOURCE_DIR
set -u
src=${1:?usage: layers.sh SOURCE_DIR}/src
declare -A allowed=(
    [core]="core"
    [io]="core io"
    [data]="core io data"
    [nn]="core nn"
    [eval]="core eval"
    [models]="core io nn models"
    [diffusion]="core io data nn eval models diffusion"
    [cli]=""
)
fails=0 checked=0
for layer in "${!allowed[@]}"; do
    [ -d "$src/$layer" ] || { echo "FAIL: no folder src/$layer"; fails=$((fails + 1)); continue; }
    for f in "$src/$layer"/*.[ch]; do
        rel=${f#"$src"/}
        while IFS= read -r header; do
            checked=$((checked + 1))
            dir=${header%%/*}
            [ "$dir" = "$header" ] && continue # a header of the same folder, or diffusion.h
            case " ${allowed[$layer]} " in *" $dir "*) continue ;; esac
            echo "FAIL: $rel includes $header: $layer may include only ${allowed[$layer]:-diffusion.h and its own headers}"
            fails=$((fails + 1))
        done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
    done
done
# every folder of src/ has a place in the table
for d in "$src"/*/; do
    d=$(basename "$d")
    [ -n "${allowed[$d]+set}" ] || { echo "FAIL: src/$d is in no layer of tests/layers.sh"; fails=$((fails + 1)); }
done
echo "$checked includes checked, $fails upward"
[ "$checked" -gt 100 ] && [ $fails -eq 0 ]
