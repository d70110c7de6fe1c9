# Sourced by the tests/cli_mpi_*.sh scripts after shell_checks.sh (with `name` and `bin` set):
# their check (the command succeeds; its output in $dir/out and $dir/err), mpi (mpirun with
# --oversubscribe), tiny_image_npy (a seeded 8x8 image set), and the requirements: mpirun and
# a diffusion built with MPI, a failure (not a skip) without them.
if ! command -v mpirun > /dev/null; then
    echo "FAIL: $name: mpirun is missing: install openmpi-bin and libopenmpi-dev" \
         "(scripts/install-deps.sh does) and rebuild"
    exit 1
fi
if ! ldd "$bin" | grep -q libmpi; then
    echo "FAIL: $name: $bin was built without MPI (cmake did not find it: install" \
         "libopenmpi-dev, reconfigure with -DDM_MPI=ON)"
    exit 1
fi
# CI runs as root; more ranks than cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under scripts/check.sh's AddressSanitizer build, no leak report for the ranks: Open MPI keeps
# what MPI_Init allocates past MPI_Finalize, in plugins it unloads (no frames to suppress by);
# memory errors are still caught, and test_trainer_parallel checks the library's side for leaks.
noleak="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi() { ASAN_OPTIONS=$noleak mpirun --oversubscribe "$@"; }
tiny_image_npy() { # tiny_image_npy FILE: 24 random uint8 images of 8x8, as NPY (seeded)
    python3 - "$1" <<'PY'
import random, sys
random.seed(5)
n, h, w = 24, 8, 8
head = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (n, h, w)
head += " " * (63 - (10 + len(head)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head.encode())
    f.write(bytes(random.randrange(256) for _ in range(n * h * w)))
PY
}
