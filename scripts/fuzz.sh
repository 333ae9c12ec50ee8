#!/usr/bin/env bash
# Runs the libFuzzer target fuzz/fuzz_json_inputs.cpp (every input read as a tune config, a
# Langevin config and a model card; ASan + UBSan) on a corpus seeded with every shipped config
# and card, building it first in build-sanitize/ (scripts/sanitize.sh's build).
#
#   scripts/fuzz.sh [seconds (default 1800)] [more libFuzzer flags]
#
# A finding stops the run and leaves crash-*/leak-*/timeout-* in build-sanitize/fuzz-findings/
# with the input; replay one with build-sanitize/fuzz/fuzz_json_inputs <file>. The corpus
# grows in build-sanitize/fuzz-corpus/ and is reused by the next run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-1800}
shift || true
build="$root/build-sanitize"
if [ ! -x "$build/fuzz/fuzz_json_inputs" ]; then
  IDTUNE_WITH_CLANG=1 IDTUNE_SKIP_BUILD=1 "$root/scripts/setup.sh"
  flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="$flags -fsanitize=fuzzer-no-link" -DIDTUNE_BUILD_FUZZERS=ON \
    -DIDTUNE_BUILD_BENCHMARKS=OFF >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target fuzz_json_inputs
corpus="$build/fuzz-corpus" findings="$build/fuzz-findings"
mkdir -p "$corpus" "$findings"
find "$root/configs" "$root/models" "$root/examples" -name "*.json" -exec cp {} "$corpus/" \;
cp "$root"/fuzz/regressions/* "$corpus/"  # inputs that once failed
export ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
exec "$build/fuzz/fuzz_json_inputs" "$corpus" -artifact_prefix="$findings/" \
  -dict="$root/fuzz/json.dict" -max_total_time="$seconds" -max_len=16384 -timeout=10 \
  -rss_limit_mb=4096 -print_final_stats=1 "$@"
