#!/usr/bin/env bash
# Sets up (packages + Release build, see setup.sh) and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --build build -j "$(nproc)" --target idtune_tests
# One test per core, each single-threaded: two 2-thread OpenMP processes on 2 cores spin against
# each other (the suite took 224 s that way, 37 s like this).
IDTUNE_NUM_THREADS=1 ctest --test-dir build --output-on-failure -j "$(nproc)"
