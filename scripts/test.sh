#!/usr/bin/env bash
# Sets up (packages + Release build, see setup.sh) and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --build build -j "$(nproc)" --target idtune_tests
ctest --test-dir build --output-on-failure -j "$(nproc)"
