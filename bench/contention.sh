#!/usr/bin/env bash
# A fair share under CPU contention (docs/benchmarks.md#cpu-contention): sample-steps/s of
# `idtune tune` on the shipped default config, alone and beside one busy process
# (`yes > /dev/null`), with the thread count fixed (IDTUNE_NUM_THREADS=1 or 2) and chosen by
# idtune (unset: the fair share). Run it on an otherwise idle machine.
#
#   bench/contention.sh [iterations (default 8)] [batch (default 8)]
#
# Each figure is the median of the per-iteration rates after the first two iterations.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
idtune="$root/build/idtune"
iterations=${1:-8}
batch=${2:-8}
work=$(mktemp -d)
hog=
cleanup() { [ -n "$hog" ] && kill "$hog" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

rate() {  # rate <name> [VAR=value ...]: median sample-steps/s of one short tune
  local name=$1
  shift
  env "$@" "$idtune" tune --config "$root/configs/fashion_brightness.json" \
    --set iterations="$iterations" --set batch="$batch" --set output.run_dir="$work/$name" \
    --set output.grids=false --set output.log_every=0 >"$work/$name.log" 2>&1
  python3 -c "
import json, statistics, sys
rates = [json.loads(l)['sample_steps_per_s'] for l in open(sys.argv[1])][2:]
print(f'{statistics.median(rates):.1f}')" "$work/$name/metrics.jsonl"
}

alone_fair=$(rate alone_fair)
alone_1=$(rate alone_1 IDTUNE_NUM_THREADS=1)
alone_2=$(rate alone_2 IDTUNE_NUM_THREADS=2)
yes >/dev/null &
hog=$!
busy_fair=$(rate busy_fair)
busy_1=$(rate busy_1 IDTUNE_NUM_THREADS=1)
busy_2=$(rate busy_2 IDTUNE_NUM_THREADS=2)
kill "$hog"
hog=

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "sample-steps/s of idtune tune (configs/fashion_brightness.json, batch $batch, $iterations iterations)"
echo "| threads | alone | beside one busy process |"
echo "| --- | --- | --- |"
echo "| 1 (IDTUNE_NUM_THREADS=1) | $alone_1 | $busy_1 |"
echo "| 2 (IDTUNE_NUM_THREADS=2) | $alone_2 | $busy_2 |"
echo "| fair share (default) | $alone_fair | $busy_fair |"
echo "beside a busy process: fair share / 1 thread = $(ratio "$busy_fair" "$busy_1") (target >= 0.8);"
echo "  2 threads / 1 thread = $(ratio "$busy_2" "$busy_1")"
echo "alone: fair share / 2 threads = $(ratio "$alone_fair" "$alone_2") (target >= 1, within noise)"
