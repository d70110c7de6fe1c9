#!/usr/bin/env bash
# The whole test suite: installs missing dependencies, builds, runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# one test at a time: each test runs OpenMP threads of its own, and oversubscribed spinning
# threads would slow the suite several-fold
cd build && ctest --output-on-failure
