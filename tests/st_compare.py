#!/usr/bin/env python3
"""Compares the float32 tensors of two safetensors files (the Python standard library only).

usage: st_compare.py A B [--tol X] [--exclude SUBSTRING]...

Both files must hold the same tensor names, dtypes and shapes. With --tol 0 (the default) the
tensors' bytes must be equal; otherwise in each tensor the largest |a - b|, relative to the
tensor's largest |b|, must be <= X (a tensor of zeros: its largest |a|). Prints one line with the
worst tensor and its figure; exits 0 when within, 1 when not, 2 on unreadable files. --exclude leaves out tensors
whose name contains SUBSTRING (attention key biases, whose gradient is rounding noise)."""
import array
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        begin, end = t["data_offsets"]
        tensors[name] = (t["dtype"], tuple(t["shape"]), data[begin:end])
    return tensors


def main(argv):
    args, tol, exclude = [], 0.0, []
    i = 0
    while i < len(argv):
        if argv[i] == "--tol":
            tol = float(argv[i + 1])
            i += 2
        elif argv[i] == "--exclude":
            exclude.append(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        a, b = read(args[0]), read(args[1])
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f"st_compare: {e}", file=sys.stderr)
        return 2
    if sorted(a) != sorted(b):
        print(f"st_compare: the tensor names differ: {sorted(set(a) ^ set(b))[:5]}")
        return 1
    names = [n for n in sorted(a) if not any(x in n for x in exclude)]
    worst, worst_name = 0.0, ""
    for name in names:
        (da, sa, ba), (db, sb, bb) = a[name], b[name]
        if da != db or sa != sb:
            print(f"st_compare: {name}: {da}{list(sa)} against {db}{list(sb)}")
            return 1
        if tol == 0 or da != "F32":
            if ba != bb:
                print(f"st_compare: {name} ({da}) differs bit for bit")
                return 1
            continue
        va, vb = array.array("f"), array.array("f")
        va.frombytes(ba)
        vb.frombytes(bb)
        scale = max((abs(y) for y in vb), default=0.0) or max((abs(x) for x in va), default=0.0)
        diff = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
        if diff != diff:  # NaN
            diff = float("inf")
        rel = diff / scale if scale > 0 else diff
        if rel >= worst:
            worst, worst_name = rel, name
    if tol == 0:
        print(f"identical: {len(names)} tensors")
        return 0
    print(f"largest difference {worst:.2e} of a tensor's largest value ({worst_name or 'none'}); "
          f"tolerance {tol:g}")
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
