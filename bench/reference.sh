# Sourced by the bench/compare_*.sh scripts: arguments [build/diffusion] [threads], the PyTorch
# reference in ../shared/bench, a scratch folder $tmp, and py ARGS... which runs one reference
# case and prints its RESULT JSON line.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/diffusion}
threads=${2:-2}
ref=$here/../shared/bench/bench_ref.py
[ -f "$ref" ] || { echo "error: $ref not found (the PyTorch reference lives in ../shared/bench)" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || {
    echo "error: PyTorch missing: apt-get install python3-torch python3-numpy libopenblas0-openmp" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py() { /usr/bin/python3 "$ref" --threads "$threads" "$@" | sed -n "s/^RESULT //p" | tail -n 1; }
