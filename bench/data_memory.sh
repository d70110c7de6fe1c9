#!/usr/bin/env bash
# Peak memory of training on an image set larger than the model (issue 18): generates a folder
# of N 64x64 RGB PNGs (default 20000; python3's standard library only), then with a small
# 64x64 UNet at batch 16:
#   1. `diffusion train` on the folder with no cache: decodes it into the uint8 cache (the
#      build time is the CLI's own "image cache: decoded ..." note) and trains a few steps;
#   2. the same again: the cache is reused (memory-mapped), a few steps;
#   3. the same on a folder of 64 of the images: what does not depend on the set's size;
#   4. optionally a second binary (an older build whose trainer held the set as float32,
#      twice) on the same folder, for the comparison.
# Each run's peak RSS comes from /usr/bin/time -v. Writes out/data_memory.md (or --out DIR).
# Usage: bench/data_memory.sh [--out DIR] [--n N] [build/diffusion] [baseline/diffusion]
# Takes about 2 minutes on a 2-core machine for N = 20000 (the baseline run adds about 1 more).
set -euo pipefail
out=out n=20000
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --n) n=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- "${args[@]+"${args[@]}"}"
bin=${1:-build/diffusion}
base=${2:-}
[ -x "$bin" ] || { echo "error: $bin is not an executable (build first)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time (Debian package time) is needed" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/dm_data_memory_XXXXXX")
trap 'rm -rf "$work"' EXIT
threads=$(nproc)

# N PNGs: colour gradients plus noise, so they compress and decode more like photos than pure
# noise would (stdlib zlib; 8-bit RGB)
t0=$(date +%s.%N)
python3 - "$work/images" "$n" <<'PY'
import os, random, struct, sys, zlib
folder, n = sys.argv[1], int(sys.argv[2])
os.makedirs(folder)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
rng = random.Random(18)
# 64 base images (gradient + noise, slow Python), each image one of them under one of 256
# brightness shifts (bytes.translate runs at C speed), so 20000 images take seconds
bases = []
for k in range(64):
    r, g, b = rng.randrange(192), rng.randrange(192), rng.randrange(192)
    px = bytearray(64 * 192)
    for y in range(64):
        for x in range(64):
            o = y * 192 + 3 * x
            px[o] = r + (x >> 1) + rng.randrange(32) & 255
            px[o + 1] = g + (y >> 1) + rng.randrange(32) & 255
            px[o + 2] = b + rng.randrange(32) & 255
    bases.append(bytes(px))
shifts = [bytes((v + s) & 255 for v in range(256)) for s in range(256)]
ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
for i in range(n):
    px = bases[rng.randrange(64)].translate(shifts[rng.randrange(256)])
    raw = b"".join(b"\0" + px[y * 192:(y + 1) * 192] for y in range(64))  # filter 0 per row
    png = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    with open(os.path.join(folder, "%06d.png" % i), "wb") as f:
        f.write(png)
PY
gen_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
folder_mb=$(du -sm "$work/images" | cut -f1)

cat > "$work/unet64.json" <<'JSON'
{"sample_size": 64, "in_channels": 3, "out_channels": 3, "block_out_channels": [32, 64],
 "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
 "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 8}
JSON
train=(train --model "$work/unet64.json" --batch 16 --steps 3
       --T 100 --log-every 0 --checkpoint-every 1000 --threads "$threads")

# run LABEL BINARY: trains; prints the label, the peak RSS (MiB, /usr/bin/time), the largest
# anonymous and file-backed RSS seen (MiB, /proc/PID/status every 0.2 s: the file part holds
# the libraries and the mapped cache, clean pages the kernel can drop) and the wall time
run() {
    local label=$1 b=$2
    /usr/bin/time -v "$b" "${train[@]}" --data "${data:-$work/images}" --out "$work/run_$label" \
        > "$work/$label.out" 2> "$work/$label.err" &
    local tpid=$! anon=0 file=0 child a f
    while kill -0 "$tpid" 2> /dev/null; do
        child=$(pgrep -P "$tpid" | head -n 1 || true)
        if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
            a=$(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$child/status" 2> /dev/null || true)
            f=$(sed -n 's/^RssFile:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$child/status" 2> /dev/null || true)
            [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
            [ -n "$f" ] && [ "$f" -gt "$file" ] && file=$f
        fi
        sleep 0.2
    done
    wait "$tpid" || { echo "error: $label run failed:"; cat "$work/$label.err"; exit 1; } >&2
    rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/$label.err")
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$label.err")
    echo "$label $((rss_kb / 1024)) $((anon / 1024)) $((file / 1024)) $wall"
}
build=$(run build "$bin")
note=$(grep "image cache: decoded" "$work/build.err" || true)
[ -n "$note" ] || { echo "error: the first run did not build the cache" >&2; exit 1; }
build_s=$(echo "$note" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
hit=$(run hit "$bin")
if grep -q "image cache: decoded" "$work/hit.err"; then
    echo "error: the second run rebuilt the cache" >&2; exit 1
fi
cache_mb=$(du -m "$work"/images/.diffusion-cache/*.u8 | cut -f1)
# the same run on a folder of 64 of the images: the memory that does not depend on the set
mkdir "$work/small"
cp $(ls "$work"/images/*.png | head -n 64) "$work/small/"
small=$(data="$work/small" run small "$bin")
baseline=
if [ -n "$base" ]; then
    rm -rf "$work/images/.diffusion-cache" # the older build decodes the folder itself
    baseline=$(run baseline "$base")
fi
float_mb=$(( n * 64 * 64 * 3 * 4 / 1048576 ))
u8_mb=$(( n * 64 * 64 * 3 / 1048576 ))

report="$out/data_memory.md"
{
    echo "# Training memory on a large image folder (issue 18)"
    echo
    echo "Written by \`bench/data_memory.sh --n $n $*\` on $(date -u +%Y-%m-%d), $(nproc) cores," \
         "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)."
    echo
    echo "Data: $n PNGs of 64x64 RGB ($folder_mb MiB on disk, generated in $gen_s s);" \
         "as uint8 $u8_mb MiB, as float32 $float_mb MiB. Model: a 2-level 64x64 UNet" \
         "(32, 64 channels), batch 16, 3 steps, $threads threads."
    echo
    echo "| run | peak RSS (MiB) | largest anonymous RSS (MiB) | largest file-backed RSS (MiB) | wall time |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    read -r _ rss anon file wall <<< "$build"; echo "| first run: decode into the cache ($cache_mb MiB) + 3 steps | $rss | $anon | $file | $wall |"
    read -r _ rss anon file wall <<< "$hit"; echo "| later run: cache memory-mapped + 3 steps | $rss | $anon | $file | $wall |"
    read -r _ rss anon file wall <<< "$small"; echo "| the same on 64 of the images (model, optimiser, batches, libraries) | $rss | $anon | $file | $wall |"
    if [ -n "$baseline" ]; then
        read -r _ rss anon file wall <<< "$baseline"
        echo "| baseline ($base): float32 set + the trainer's float32 copy + 3 steps | $rss | $anon | $file | $wall |"
    fi
    echo
    echo "Cache build: $build_s s for $n images (the CLI's note: \`${note#*image cache: }\`)."
} > "$report"
cat "$report"
