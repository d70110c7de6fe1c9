#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, builds, runs ctest. A test ctest skipped
# (exit 77: the machine cannot run it, e.g. cli_full_disk with no tmpfs mount) fails the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# one test at a time: each test runs OpenMP threads of its own, and oversubscribed spinning
# threads would slow the suite several-fold
cd build
log=$(mktemp /tmp/dm_ctest_XXXXXX)
trap 'rm -f "$log"' EXIT
status=0
ctest --output-on-failure 2>&1 | tee "$log" || status=1
# ctest counts a skip as passed; it lists skipped tests under "The following tests did not run:"
skipped=$(sed -n '/^The following tests did not run:/,/^$/p' "$log" |
          grep -E '^[[:space:]]+[0-9]+ - ' || true)
if [ -n "$skipped" ]; then
    echo "FAIL: ctest did not run these tests; a skip counts as a failure (see each test's" \
         "message in Testing/Temporary/LastTest.log):"
    echo "$skipped"
    status=1
fi
exit $status
