#!/usr/bin/env bash
# Image evaluation from the command line. A small evaluation classifier is trained for 300 steps
# on Fashion-MNIST's train split; sets built from the test split (tests/cli_eval_images.sh writes
# them with perl, Debian's perl-base) must then be told apart: real images labelled with their
# classes score a high accuracy, the same images each labelled with the next class a low one; a
# shifted and a blurred copy score a worse FID-FMNIST and lower precision/recall than the real
# images and than the floor (as many real training images). A conditional UNet trained for 2
# steps ignores its labels, so its samples must fail the accuracy check; the guidance sweep's
# rows must be the single runs at each scale; misuse gets one clear message.
set -u
bin=$1
name=cli_eval_images
fmnist=/usr/share/datasets/fashion-mnist
source "$(dirname "$0")/shell_checks.sh"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
    if [ ! -f "$fmnist/$f" ]; then
        echo "FAIL: cli_eval_images: $fmnist/$f is missing: install the Debian package" \
             "dataset-fashion-mnist (scripts/install-deps.sh does)"
        exit 1
    fi
done
ok() { # ok DESCRIPTION COMMAND...: must succeed; stdout in $dir/out
    local what=$1; shift
    checks=$((checks + 1))
    if ! "$@" > "$dir/out" 2> "$dir/err"; then
        echo "FAIL: $what: $(cat "$dir/err")"; fails=$((fails + 1))
    fi
}
val() { # val JQ-FILTER [FILE]: one number from a JSON output ($dir/out by default)
    jq -r "$1" "${2:-$dir/out}" 2> /dev/null
}
expect() { # expect DESCRIPTION AWK-CONDITION NAME=VALUE...: every value a number, the condition true
    local what=$1 cond=$2 v; shift 2
    local vars=()
    checks=$((checks + 1))
    for v in "$@"; do
        if ! [[ ${v#*=} =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]]; then
            echo "FAIL: $what: ${v%%=*} is '${v#*=}', not a number"; fails=$((fails + 1)); return
        fi
        vars+=(-v "$v")
    done
    if ! awk "${vars[@]}" "BEGIN { exit !($cond) }"; then
        echo "FAIL: $what: $cond does not hold for $*"; fails=$((fails + 1))
    fi
}

# The sets, uint8 NPY files of the test split (Fashion-MNIST's IDX layout: a 16-byte header, then
# 28x28 bytes an image; labels after an 8-byte header): real.npy, 500 images of the first 5,000
# in class order 0, 1, ..., 9, 0, ... (the labels eval --class all gives); relabelled.npy, the
# same images moved up one place, so each is labelled with the next class; shifted.npy, moved 6
# pixels right and 6 down; blurred.npy, a 5x5 box blur; reference.npy, images 5,000..9,999.
perl - "$fmnist" "$dir" <<'PERL' || { echo "FAIL: making the image sets"; exit 1; }
use strict; use warnings;
my ($src, $dir) = @ARGV;
sub slurp { open(my $h, '-|', 'gzip', '-dc', $_[0]) or die "$_[0]: $!"; binmode $h; local $/;
            my $d = <$h>; close $h or die "$_[0]: gzip failed"; return $d; }
my $img = slurp("$src/t10k-images-idx3-ubyte.gz"), my $lab = slurp("$src/t10k-labels-idx1-ubyte.gz");
die "short test split" if length($img) != 16 + 10000 * 784 || length($lab) != 8 + 10000;
sub image { return substr($img, 16 + $_[0] * 784, 784); }
sub npy { # npy FILE, IMAGES...: uint8 (n, 28, 28), the header padded to 64 bytes
    my ($file, @imgs) = @_;
    my $d = "{'descr': '|u1', 'fortran_order': False, 'shape': (" . @imgs . ", 28, 28), }";
    $d .= ' ' x (64 - (10 + length($d) + 1) % 64) . "\n";
    open(my $h, '>', $file) or die "$file: $!"; binmode $h;
    print $h "\x93NUMPY\x01\x00", pack('v', length $d), $d, @imgs; close $h or die "$file: $!";
}
my @by_class; push @{$by_class[ord(substr($lab, 8 + $_, 1))]}, $_ for 0 .. 4999;
my @real = map { image($by_class[$_ % 10][int($_ / 10)]) } 0 .. 499;
sub shifted { my $o = "\0" x 784;
              substr($o, $_ * 28 + 6, 22) = substr($_[0], ($_ - 6) * 28, 22) for 6 .. 27;
              return $o; }
sub blurred { my @s = unpack('C*', $_[0]); my @o;
    for my $r (0 .. 27) { for my $c (0 .. 27) { my ($sum, $k) = (0, 0);
        for my $y ($r - 2 .. $r + 2) { for my $x ($c - 2 .. $c + 2) {
            next if $y < 0 || $y > 27 || $x < 0 || $x > 27; $sum += $s[$y * 28 + $x]; $k++; } }
        push @o, int($sum / $k + 0.5); } }
    return pack('C*', @o); }
npy("$dir/real.npy", @real);
npy("$dir/relabelled.npy", @real[1 .. 499], $real[0]);
npy("$dir/shifted.npy", map { shifted($_) } @real);
npy("$dir/blurred.npy", map { blurred($_) } @real);
npy("$dir/reference.npy", map { image($_) } 5000 .. 9999);
PERL

cat > "$dir/clf.json" <<'JSON'
{"sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
 "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
 "layers_per_block": 1, "norm_num_groups": 4, "classifier_classes": 10}
JSON
ok "an evaluation classifier" "$bin" train-classifier --model "$dir/clf.json" --data fashion-mnist \
    --steps 300 --batch 32 --lr 2e-3 --out "$dir/clf" --quiet

judge() { # judge SET METRIC [OPTIONS...]: eval of $dir/SET.npy against reference.npy into $dir/SET.json
    local set=$1 metric=$2; shift 2
    ok "eval --metric $metric of $set" "$bin" eval --metric "$metric" --classifier "$dir/clf" \
        --samples "$dir/$set.npy" --data "$dir/reference.npy" --json "$@"
    cp "$dir/out" "$dir/$set.json"
}
judge real accuracy --class all
judge relabelled accuracy --class all
# Accuracy, when written: real 0.63, the floor (500 training images) 0.62, relabelled 0.01.
# Bounds: 0.5 and 0.25, more than 5 standard errors (sqrt(0.25 / 500) = 0.022) from each.
expect "real images with their labels: accuracy > 0.5" "a > 0.5" a="$(val '.rows[0].accuracy' "$dir/real.json")"
expect "the floor's real images with their labels: accuracy > 0.5" "a > 0.5" \
    a="$(val .floor.accuracy "$dir/real.json")"
expect "the same images labelled with the next class: accuracy < 0.25" "a < 0.25" \
    a="$(val '.rows[0].accuracy' "$dir/relabelled.json")"
judge shifted prec-recall
judge blurred fid
# FID-FMNIST, when written: real 0.011, floor 0.050, blurred 1.16, shifted 15.2. Two real sets
# of 500 differ by up to 5x between themselves (real against floor), so a distorted set must
# score above 5x the worse of them.
real_fid=$(val '.rows[0].fid_fmnist' "$dir/real.json")
floor_fid=$(val .floor.fid_fmnist "$dir/real.json")
for set in shifted blurred; do
    expect "$set images: FID-FMNIST above 5x both real sets" "f > 5 * r && f > 5 * fl" \
        f="$(val '.rows[0].fid_fmnist' "$dir/$set.json")" r="$real_fid" fl="$floor_fid"
done
# Precision and recall, when written: real 0.954 / 0.914, floor 0.948 / 0.948, shifted 0.61 / 0.22,
# blurred 0.90 / 0.80. Real sets must lie on each other's manifold (> 0.8); the shifted set below
# the real one by 5 standard errors (0.11), the blurred set's recall by 3 (0.066).
expect "real images: precision and recall > 0.8" "p > 0.8 && r > 0.8" \
    p="$(val '.rows[0].precision' "$dir/real.json")" r="$(val '.rows[0].recall' "$dir/real.json")"
for m in precision recall; do
    expect "shifted images: $m below the real images' by 0.11" "s < r - 0.11" \
        s="$(val ".rows[0].$m" "$dir/shifted.json")" r="$(val ".rows[0].$m" "$dir/real.json")"
done
expect "blurred images: recall below the real images' by 0.066" "s < r - 0.066" \
    s="$(val '.rows[0].recall' "$dir/blurred.json")" r="$(val '.rows[0].recall' "$dir/real.json")"

small=$(dirname "$0")/sanitizers/small-unet-28.json
ok "a conditional UNet" "$bin" train --data fashion-mnist-test --model "$small" --conditional \
    --steps 2 --batch 4 --out "$dir/unet" --quiet
# --class all at n = 250: columns in groups of the 10 classes around a square grid (sqrt(250) =
# 15.8 -> 2 groups, 20 columns, 13 rows), not 10 columns of 25 rows; width / height from the PNG
ok "a grid of every class" "$bin" sample --model "$dir/unet" --class all --n 250 --steps 2 \
    --grid "$dir/all.png" --json --quiet
png_size() { # width / height from the PNG's IHDR (two big-endian 32-bit numbers at byte 16)
    od -An -tu1 -j16 -N8 "$1" |
        awk '{print ($1*2^24 + $2*2^16 + $3*2^8 + $4) / ($5*2^24 + $6*2^16 + $7*2^8 + $8)}'
}
expect "--class all: 20 columns, the grid about square" "c == 20 && r > 1.3 && r < 1.8" \
    c="$(val .grid_columns)" r="$(png_size "$dir/all.png")"
ok "a noisy classifier" "$bin" train-classifier --data fashion-mnist-test --noisy \
    --like "$dir/unet" --steps 2 --batch 4 --out "$dir/noisy" --quiet
# two steps of training leave the label embedding at its random start: the samples ignore their
# label, and a class-blind set scores about chance (0.1; 0.3 is 4.5 standard errors above at n = 40)
model=(--classifier "$dir/clf" --model "$dir/unet" --n 40 --steps 2 --data "$dir/reference.npy")
ok "accuracy of drawn samples" "$bin" eval --metric accuracy "${model[@]}" --json
expect "a model that ignores the label: accuracy < 0.3" "a < 0.3" a="$(val '.rows[0].accuracy')"
# the sweep's rows are the single runs at each scale, with the same seed: bit for bit
ok "a guidance sweep" "$bin" eval --metric guidance "${model[@]}" --guide-classifier "$dir/noisy" \
    --scales 0,2 --gammas 0,3 --plot "$dir/g.png" --json
cp "$dir/out" "$dir/sweep.json"
checks=$((checks + 1))
rows=$(jq -c '[.rows[] | [.guidance, .scale]]' "$dir/sweep.json")
if [ "$rows" != '[["classifier-free",0],["classifier-free",2],["classifier",0],["classifier",3]]' ]; then
    echo "FAIL: the sweep's rows are $rows"; fails=$((fails + 1))
fi
for r in 0 1; do
    w=$(val ".rows[$r].scale" "$dir/sweep.json")
    ok "samples at w = $w" "$bin" eval --metric fid "${model[@]}" --guidance "$w" --json
    for m in accuracy fid_fmnist precision recall; do
        expect "the sweep's row w = $w: $m as a single run" "s == o" \
            s="$(val ".rows[$r].$m" "$dir/sweep.json")" o="$(val ".rows[0].$m")"
    done
done
expect "guidance w = 2 changes the samples (FID)" "a != b" \
    a="$(val '.rows[0].fid_fmnist' "$dir/sweep.json")" b="$(val '.rows[1].fid_fmnist' "$dir/sweep.json")"
expect "classifier guidance gamma = 3 changes the samples (FID)" "a != b" \
    a="$(val '.rows[2].fid_fmnist' "$dir/sweep.json")" b="$(val '.rows[3].fid_fmnist' "$dir/sweep.json")"
for f in g.png g-classifier.png; do
    checks=$((checks + 1))
    [ -s "$dir/$f" ] || { echo "FAIL: $f not written"; fails=$((fails + 1)); }
done

same=(--classifier "$dir/clf" --samples "$dir/real.npy" --data "$dir/reference.npy")
expect_error "outside 0..9" "$bin" eval --metric accuracy "${same[@]}" --class 10
expect_error "has no labels" "$bin" eval --metric accuracy --classifier "$dir/clf" \
    --data "$dir/real.npy"
expect_error "trained on clean images" "$bin" eval --metric guidance --classifier "$dir/clf" \
    --model "$dir/unet" --guide-classifier "$dir/clf" --n 20 --data "$dir/reference.npy"
expect_error "exactly one of --model" "$bin" eval --metric fid --classifier "$dir/clf" \
    --data "$dir/reference.npy"
expect_error "not a classifier" "$bin" eval --metric fid --classifier "$dir/unet/checkpoint" \
    --samples "$dir/real.npy"
finish
