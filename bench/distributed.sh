#!/usr/bin/env bash
# Data-parallel overhead on one machine (docs/benchmarks.md#data-parallel): θ-updates/s of the
# shipped default config (configs/fashion_brightness.json) as 2 ranks × 1 thread
# (`idtune tune --nproc 2`, Gloo on loopback) against 1 rank × 2 threads, run in alternation,
# and the share of an iteration the ranks spend in the gradient's all-reduce (metrics.jsonl's
# allreduce_s, waiting for the slower rank included). Run it on an otherwise idle machine.
#
#   bench/distributed.sh [pairs (default 3)] [iterations (default 12)] [precision (default bf16)]
#
# Each run's figure is the median over iterations 3… of 1 / (iteration wall time).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
idtune="$root/build/idtune"
pairs=${1:-3}
iterations=${2:-12}
precision=${3:-bf16}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tune() {  # tune <name> [flags...]: one short run; prints "updates/s allreduce-share"
  local name=$1
  shift
  "$idtune" tune --config "$root/configs/fashion_brightness.json" --set iterations="$iterations" \
    --set precision="$precision" --set output.run_dir="$work/$name" --set output.grids=false \
    --set output.log_every=0 --set output.checkpoint_every=0 "$@" >"$work/$name.log" 2>&1
  python3 -c "
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
walls = [l['wall_time_s'] for l in lines]
steps = [b - a for a, b in zip(walls, walls[1:])][2:]
share = [l['allreduce_s'] / s for l, s in zip(lines[3:], steps) if l['allreduce_s'] is not None]
print(f'{1 / statistics.median(steps):.3f} {statistics.median(share) if share else 0:.4f}')
" "$work/$name/metrics.jsonl"
}

echo "pair  2x1 updates/s  1x2 updates/s  ratio  all-reduce share (2x1)"
for i in $(seq "$pairs"); do
  read -r two share < <(tune "ranks_$i" --nproc 2)
  read -r one _ < <(IDTUNE_NUM_THREADS=2 tune "threads_$i")
  python3 -c "import sys; t, o, s = map(float, sys.argv[1:]); print(f'{$i:>4}  {t:>13.3f}  {o:>13.3f}  {t / o:5.2f}  {100 * s:5.2f} %')" \
    "$two" "$one" "$share"
done
