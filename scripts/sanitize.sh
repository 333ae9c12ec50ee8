#!/usr/bin/env bash
# The library, the CLI and the tests built with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer (any report stops the process: the test fails), in build-sanitize/,
# then the test suite run on it. The same build carries libFuzzer's coverage instrumentation,
# so that scripts/fuzz.sh reuses it. docs/reliability.md#sanitizers gives the last results.
#
#   scripts/sanitize.sh [ctest arguments, e.g. -R Json]
#
# Left out of this run, with the reason: the tests that build a separate project against the
# installed library (find_package; it would need the sanitizer flags too) and the export checks
# of scripts/families/ (Python only, nothing of ours is instrumented there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
IDTUNE_WITH_CLANG=1 IDTUNE_SKIP_BUILD=1 scripts/setup.sh
build="$root/build-sanitize"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$flags -fsanitize=fuzzer-no-link" -DIDTUNE_BUILD_FUZZERS=ON \
  -DIDTUNE_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target idtune_tests fuzz_json_inputs
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
IDTUNE_NUM_THREADS=1 ctest --test-dir "$build" --output-on-failure -j "$(nproc)" \
  -E 'Embedding.FindPackage|Export.EveryFamily' "$@"
