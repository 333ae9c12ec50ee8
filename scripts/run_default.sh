#!/usr/bin/env bash
# The main job: sets up (packages + Release build, see setup.sh), then tunes the shipped
# Fashion-MNIST score model towards brighter images with a KL to the pretrained model
# (configs/fashion_brightness.json), and plots reward and KL against iterations.
# Extra arguments go to `idtune tune` (e.g. --set iterations=40, or --resume after Ctrl-C);
# without --resume an earlier run directory is moved aside, not overwritten.
# Writes runs/fashion_brightness/: samples/before.png, samples/after.png (same noise),
# tuned.pt + tuned.json, metrics.jsonl, curves.png.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
run_dir=runs/fashion_brightness
if [[ -d $run_dir && " $* " != *" --resume "* ]]; then  # keep an earlier run, start afresh
  mv "$run_dir" "$run_dir.$(date -r "$run_dir" +%Y%m%d-%H%M%S)"
  echo "main job: moved the earlier run aside to $run_dir.<its time>"
fi
start=$(date +%s)
build/idtune tune --config configs/fashion_brightness.json --set output.run_dir="$run_dir" "$@"
/usr/bin/python3 scripts/plot_metrics.py "$run_dir"
echo "main job: tuned in $(($(date +%s) - start)) s; see $run_dir/samples/{before,after}.png," \
  "$run_dir/curves.png and $run_dir/tuned.pt"
