#!/usr/bin/env bash
# A full disk during a checkpoint: training writes its run folder onto a 600 KiB tmpfs, room for
# one checkpoint of this small MLP (~390 KB) but not for the second beside it. The write must
# fail with a clear error, leave the previous checkpoint byte for byte intact, and leave no
# partial files; with room made, --resume continues to the same end as an uninterrupted run.
# Samples written to the full disk fail the same way. The tmpfs is mounted in a private mount
# namespace (unshare), or directly when root; where neither works the test reports a skip (77),
# which ctest lists as "Not Run" and scripts/test.sh counts as a failure.
set -u
bin=$1
if [ -z "${DM_IN_NAMESPACE:-}" ]; then
    if unshare -rm true 2> /dev/null; then
        DM_IN_NAMESPACE=1 exec unshare -rm bash "$0" "$@"
    elif [ "$(id -u)" -ne 0 ]; then
        echo "not run: cannot mount a tmpfs (no user namespaces, not root);" \
             "scripts/test.sh counts this as a failure"
        exit 77
    fi
fi
dir=$(mktemp -d /tmp/dm_full_XXXXXX)
disk=$dir/disk
mkdir -p "$disk"
if ! mount -t tmpfs -o size=600k dm_full_disk "$disk" 2> "$dir/mount.err"; then
    echo "not run: cannot mount a tmpfs: $(cat "$dir/mount.err");" \
         "scripts/test.sh counts this as a failure"
    rm -rf "$dir"
    exit 77
fi
trap 'umount "$disk" 2> /dev/null; rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

train=(train --data moons --n-data 2000 --batch 64 --hidden 64 --seed 5 --log-every 0 --quiet)
"$bin" "${train[@]}" --steps 20 --out "$dir/ref20" > /dev/null || fail "reference run to 20"
"$bin" "${train[@]}" --steps 40 --out "$dir/ref40" > /dev/null || fail "reference run to 40"

if "$bin" "${train[@]}" --steps 40 --checkpoint-every 20 --out "$disk/run" > /dev/null \
       2> "$dir/err"; then
    fail "training onto a full disk reported success"
fi
cat "$dir/err"
grep -q "No space left on device" "$dir/err" || fail "the error does not say the disk is full"
grep -q "previous one is intact" "$dir/err" || fail "the error does not say the old checkpoint stands"
for f in model.safetensors train_state.safetensors; do
    cmp -s "$dir/ref20/checkpoint/$f" "$disk/run/checkpoint/$f" ||
        fail "$f of step 20 is not intact after the failed write"
done
# the run folder's empty lock file (a second trainer is refused while one runs) is no leftover
[ -f "$disk/run/.lock" ] && [ ! -s "$disk/run/.lock" ] || fail "the run folder's lock file is missing or not empty"
# checkpoint-20 and checkpoint (the newest, the same files) are the run's, and sessions.jsonl
# (a line per start); nothing else
leftovers=$(ls -A "$disk/run" | grep -v -x -e checkpoint -e checkpoint-20 -e .lock -e sessions.jsonl || true)
[ -z "$leftovers" ] || fail "partial files left on the full disk: $leftovers"
"$bin" sample --model "$disk/run" --n 4 --out "$dir/s.csv" --quiet > /dev/null ||
    fail "the step-20 checkpoint does not load"

# samples too large for the disk: an error and no partial file
if "$bin" sample --model "$disk/run" --n 100000 --steps 10 --out "$disk/s.npy" --quiet \
       > /dev/null 2> "$dir/err"; then
    fail "writing samples onto a full disk reported success"
fi
grep -q "No space left on device" "$dir/err" || fail "sample: no clear error: $(cat "$dir/err")"
[ -z "$(ls -A "$disk" | grep -v -x run)" ] || fail "sample left a partial file: $(ls -A "$disk")"

mount -o remount,size=4m "$disk" || fail "remount"
"$bin" "${train[@]}" --steps 40 --checkpoint-every 20 --out "$disk/run" --resume > /dev/null ||
    fail "resume after making room"
for f in model.safetensors train_state.safetensors; do
    cmp -s "$dir/ref40/checkpoint/$f" "$disk/run/checkpoint/$f" ||
        fail "$f after the resume differs from the uninterrupted run's"
done
[ $fails -eq 0 ] && echo "full disk: all checks passed"
exit $((fails > 0))
