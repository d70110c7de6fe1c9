#!/usr/bin/env bash
# Image evaluation from the command line, small: a classifier and a small conditional UNet
# trained for a few steps on the Fashion-MNIST test split, then eval --metric accuracy, fid,
# prec-recall and guidance. Identical sample and reference sets must give FID 0 and precision
# and recall 1; the guidance table must have a row per scale and its plots must exist.
set -u
bin=$1
name=cli_eval_images
source "$(dirname "$0")/shell_checks.sh"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "cli_eval_images: dataset-fashion-mnist not installed; skipped"; exit 77
fi
ok() { # ok DESCRIPTION COMMAND...: must succeed; stdout in $dir/out
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $what: $(cat "$dir/err")"; fails=$((fails + 1))
    fi
}
num() { # num KEY: a number from the JSON line in $dir/out
    grep -o "\"$1\":[-0-9.e+]*" "$dir/out" | head -1 | cut -d: -f2
}
expect() { # expect DESCRIPTION AWK-CONDITION-ON-x VALUE
    checks=$((checks + 1))
    if [ -z "$3" ] || ! awk -v x="$3" "BEGIN { exit !($2) }"; then
        echo "FAIL: $1 (got '$3')"; fails=$((fails + 1))
    fi
}
small=$(dirname "$0")/sanitizers/small-unet-28.json
ok "a classifier" "$bin" train-classifier --data fashion-mnist-test --steps 3 --batch 8 \
    --out "$dir/clf" --quiet
ok "a conditional UNet" "$bin" train --data fashion-mnist-test --model "$small" --conditional \
    --steps 2 --batch 4 --out "$dir/unet" --quiet
ok "a noisy classifier" "$bin" train-classifier --data fashion-mnist-test --noisy \
    --like "$dir/unet" --steps 2 --batch 4 --out "$dir/noisy" --quiet
ok "reference images" "$bin" sample --model "$dir/unet" --n 40 --steps 2 --class all \
    --npy "$dir/ref.npy" --grid "$dir/ref.png" --quiet
same=(--classifier "$dir/clf" --samples "$dir/ref.npy" --data "$dir/ref.npy"
      --real-data "$dir/ref.npy" --json)
ok "fid of a set against itself" "$bin" eval --metric fid "${same[@]}"
expect "FID of identical sets is 0" "x < 1e-6 && x > -1e-6" "$(num fid_fmnist)"
ok "precision and recall of a set against itself" "$bin" eval --metric prec-recall "${same[@]}"
expect "precision of identical sets is 1" "x == 1" "$(num precision)"
expect "recall of identical sets is 1" "x == 1" "$(num recall)"
ok "accuracy of drawn samples" "$bin" eval --metric accuracy --classifier "$dir/clf" \
    --model "$dir/unet" --n 20 --steps 2 --data "$dir/ref.npy" --real-data "$dir/ref.npy" --json
expect "an accuracy in [0, 1]" "x >= 0 && x <= 1" "$(num accuracy)"
ok "a guidance sweep" "$bin" eval --metric guidance --classifier "$dir/clf" --model "$dir/unet" \
    --guide-classifier "$dir/noisy" --n 20 --steps 2 --scales 0,2 --gammas 0,3 \
    --data "$dir/ref.npy" --real-data "$dir/ref.npy" --plot "$dir/g.png" --json
expect "four rows" "x == 4" "$(grep -o '"guidance":' "$dir/out" | wc -l)"
for f in g.png g-classifier.png; do
    checks=$((checks + 1))
    [ -s "$dir/$f" ] || { echo "FAIL: $f not written"; fails=$((fails + 1)); }
done
ok "accuracy of samples drawn for every class" "$bin" eval --metric accuracy "${same[@]}" \
    --class all
expect "an accuracy in [0, 1]" "x >= 0 && x <= 1" "$(num accuracy)"
expect_error "outside 0..9" "$bin" eval --metric accuracy "${same[@]}" --class 10
expect_error "has no labels" "$bin" eval --metric accuracy --classifier "$dir/clf" \
    --data "$dir/ref.npy"
expect_error "trained on clean images" "$bin" eval --metric guidance --classifier "$dir/clf" \
    --model "$dir/unet" --guide-classifier "$dir/clf" --n 20 --data "$dir/ref.npy"
expect_error "exactly one of --model" "$bin" eval --metric fid --classifier "$dir/clf" \
    --data "$dir/ref.npy"
expect_error "not a classifier" "$bin" eval --metric fid --classifier "$dir/unet/checkpoint" \
    --samples "$dir/ref.npy"
finish
